#!/bin/sh
# Installs what the aarch64 emulation test needs (toolchain-facts.md, "ARM"): qemu-user and the
# arm64 C/C++ runtime from Debian (root only), and `iree-run-module` taken out of the aarch64
# iree-base-runtime wheel from PyPI. Idempotent: does nothing when everything is there.
# Usage: tests/tools/install_aarch64_runtime.sh [PYTHON]   (PYTHON: the venv's python, for pip)
set -eu
PY=${1:-.venv/bin/python}
DEST=${EDGESKIP_AARCH64_DIR:-.cache/iree-aarch64}
IREE_VERSION=3.13.0

if command -v qemu-aarch64-static >/dev/null 2>&1 && [ -d /usr/aarch64-linux-gnu/lib ] \
   && [ -f /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ]; then
	echo "aarch64 emulation: qemu-aarch64-static and the arm64 sysroot found"
elif [ "$(id -u)" = 0 ]; then
	echo "aarch64 emulation: installing qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross"
	PKGS="qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PKGS >/dev/null 2>&1 || \
	{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PKGS >/dev/null; }
else
	echo "aarch64 emulation is missing; install it with:"
	echo "  sudo apt-get install qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross"
fi

if [ -x "$DEST/bin/iree-run-module" ]; then
	echo "aarch64 iree-run-module: found in $DEST/bin"
	exit 0
fi
echo "aarch64 iree-run-module: fetching iree-base-runtime==$IREE_VERSION (manylinux_2_28_aarch64) from PyPI"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 \
	--python-version 3.11 --dest "$TMP" "iree-base-runtime==$IREE_VERSION"
"$PY" - "$TMP" "$DEST" <<'PYEOF'
import pathlib, stat, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    member = next(n for n in z.namelist() if n.endswith("/_runtime_libs/iree-run-module"))
    out = dest / "bin" / "iree-run-module"
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".part")
    part.write_bytes(z.read(member))
    part.chmod(part.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    part.replace(out)  # atomic: a half-written binary is never found
print(f"aarch64 iree-run-module: {out}")
PYEOF
