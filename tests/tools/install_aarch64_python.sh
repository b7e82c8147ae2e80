#!/bin/sh
# An aarch64 (Raspberry Pi 4/5) Python with the board runtime's dependencies, run under qemu-aarch64, for
# the test that serves an rpi4 bundle with `edgeskip-runtime serve` as the board would:
#   * a sysroot of Debian bookworm's arm64 packages (python3.11 and the libraries it loads), unpacked
#     with `apt-get download` + `dpkg -x` (needs `dpkg --add-architecture arm64`, done here as root);
#   * site-packages from PyPI's aarch64 wheels: numpy, iree-base-runtime==3.13.0 and ml_dtypes.
# Idempotent: does nothing when both are there. Without root it says what it needs.
# Usage: tests/tools/install_aarch64_python.sh [PYTHON]   (PYTHON: the venv's python, for pip download)
set -eu
PY=${1:-.venv/bin/python}
DEST=${EDGESKIP_AARCH64_PY_DIR:-.cache/aarch64-python}
IREE_VERSION=3.13.0
PKGS="libc6 libgcc-s1 libstdc++6 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libexpat1 zlib1g
 libffi8 libbz2-1.0 liblzma5 libuuid1 libssl3 libcrypt1 libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libnsl2
 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1"

if [ -x "$DEST/sysroot/usr/bin/python3.11" ] && [ -d "$DEST/site/iree/runtime" ]; then
	echo "aarch64 python: found in $DEST"
	exit 0
fi
if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
	echo "aarch64 python: qemu-aarch64-static is missing (make aarch64-runtime installs it as root)"
	exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/site"
# shellcheck disable=SC2086
sh tests/tools/unpack_debian_packages.sh arm64 "$TMP/sysroot" $PKGS || {
	# a mirror out of reach or no root: the emulated-board test is skipped, not failed
	echo "aarch64 python: the rpi4 server test will be skipped"
	exit 0
}
echo "aarch64 python: fetching numpy, iree-base-runtime==$IREE_VERSION, ml_dtypes (aarch64 wheels) from PyPI"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_aarch64 \
	--platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 --python-version 3.11 --dest "$TMP/wheels" \
	"numpy>=1.26,<2.3" "iree-base-runtime==$IREE_VERSION" ml_dtypes || {
	echo "aarch64 python: could not download the aarch64 wheels from PyPI; the rpi4 server test will be skipped"
	exit 0
}
for wheel in "$TMP"/wheels/*.whl; do
	"$PY" -m zipfile -e "$wheel" "$TMP/site"
done
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$TMP/sysroot" "$DEST/sysroot"
mv "$TMP/site" "$DEST/site"
echo "aarch64 python: $DEST (run: qemu-aarch64-static -L $DEST/sysroot $DEST/sysroot/usr/bin/python3.11)"
