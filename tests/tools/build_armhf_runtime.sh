#!/bin/sh
# Builds a *stock* armhf `iree-run-module` (the Odroid XU4's runtime) from the vendored IREE source,
# with Debian's cross compiler, for the armv7 emulation tests. The build follows
# ../shared/vendor/README.md and docker/runtime-armhf.Dockerfile: local-sync only (local-task does not
# compile for 32-bit ARM), the embedded-ELF loader, no compiler. Cached: does nothing when the binary
# is there. Installs the Debian packages it needs when run as root; otherwise says what to install.
# Usage: tests/tools/build_armhf_runtime.sh [PYTHON]   (PYTHON: the venv's python, for cmake from PyPI)
set -eu
PY=${1:-.venv/bin/python}
DEST=${EDGESKIP_ARMHF_DIR:-.cache/iree-armhf}
SRC_TAR=${EDGESKIP_IREE_SRC:-$(ls ../shared/vendor/iree-runtime-src-*.tar.gz 2>/dev/null | head -n 1)}

if [ -x "$DEST/bin/iree-run-module" ]; then
	echo "armhf iree-run-module: found in $DEST/bin"
	exit 0
fi
if [ -z "$SRC_TAR" ] || [ ! -f "$SRC_TAR" ]; then
	echo "armhf iree-run-module: the vendored IREE runtime source (../shared/vendor/iree-runtime-src-*.tar.gz," \
	     "or EDGESKIP_IREE_SRC) is missing; the armv7 tests will be skipped"
	exit 0
fi

PKGS="gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static ninja-build"
if ! command -v arm-linux-gnueabihf-g++ >/dev/null 2>&1 || ! command -v qemu-arm-static >/dev/null 2>&1 \
   || ! command -v ninja >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		echo "armhf toolchain: installing $PKGS"
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PKGS >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PKGS >/dev/null; }
	else
		echo "armhf toolchain is missing; the armv7 tests will be skipped. Install it with:"
		echo "  sudo apt-get install $PKGS"
		exit 0
	fi
fi

# IREE needs cmake >= 3.26 (Debian bookworm has 3.25): take it from PyPI into the venv.
CMAKE=$(dirname "$PY")/cmake
if ! "$CMAKE" --version >/dev/null 2>&1; then
	"$PY" -m pip install --quiet "cmake>=3.26,<4"
fi

WORK=.cache/iree-armhf-build
rm -rf "$WORK"
mkdir -p "$WORK"
echo "armhf iree-run-module: building from $SRC_TAR (about a minute on 2 cores)"
tar xzf "$SRC_TAR" -C "$WORK"
SRC=$(pwd)/$WORK/iree-runtime-src
COMMON="-G Ninja -DCMAKE_BUILD_TYPE=Release -DIREE_BUILD_COMPILER=OFF -DIREE_BUILD_TESTS=OFF
 -DIREE_BUILD_SAMPLES=OFF -DIREE_BUILD_BENCHMARKS=OFF -DIREE_BUILD_PYTHON_BINDINGS=OFF
 -DIREE_ENABLE_LIBBACKTRACE=OFF -DIREE_ENABLE_WERROR_FLAG=OFF -DIREE_ERROR_ON_MISSING_SUBMODULES=OFF"

# 1. The host tools the cross build runs (flatbuffer and data embedding).
# shellcheck disable=SC2086
"$CMAKE" -S "$SRC" -B "$WORK/host" $COMMON -DIREE_HAL_DRIVER_DEFAULTS=OFF >"$WORK/host.log" 2>&1 \
	|| { tail -n 30 "$WORK/host.log"; exit 1; }
"$CMAKE" --build "$WORK/host" --target iree-flatcc-cli iree-c-embed-data >>"$WORK/host.log" 2>&1 \
	|| { tail -n 30 "$WORK/host.log"; exit 1; }

# 2. The armhf runtime: the XU4's ISA (ARMv7-A, NEON-VFPv4, hard float), local-sync only.
cat >"$WORK/armhf.cmake" <<'EOF'
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(CMAKE_C_COMPILER arm-linux-gnueabihf-gcc)
set(CMAKE_CXX_COMPILER arm-linux-gnueabihf-g++)
set(CMAKE_C_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard")
set(CMAKE_CXX_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard")
set(CMAKE_FIND_ROOT_PATH /usr/arm-linux-gnueabihf)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
EOF
# shellcheck disable=SC2086
"$CMAKE" -S "$SRC" -B "$WORK/armhf" $COMMON -DCMAKE_TOOLCHAIN_FILE="$(pwd)/$WORK/armhf.cmake" \
	-DIREE_HOST_BIN_DIR="$(pwd)/$WORK/host/tools" \
	-DIREE_HAL_DRIVER_DEFAULTS=OFF -DIREE_HAL_DRIVER_LOCAL_SYNC=ON -DIREE_HAL_DRIVER_LOCAL_TASK=OFF \
	-DIREE_HAL_EXECUTABLE_LOADER_DEFAULTS=OFF -DIREE_HAL_EXECUTABLE_LOADER_EMBEDDED_ELF=ON \
	-DIREE_HAL_EXECUTABLE_PLUGIN_DEFAULTS=OFF >"$WORK/armhf.log" 2>&1 || { tail -n 30 "$WORK/armhf.log"; exit 1; }
"$CMAKE" --build "$WORK/armhf" --target iree-run-module >>"$WORK/armhf.log" 2>&1 \
	|| { tail -n 30 "$WORK/armhf.log"; exit 1; }

mkdir -p "$DEST/bin"
cp "$WORK/armhf/tools/iree-run-module" "$DEST/bin/iree-run-module.part"
mv "$DEST/bin/iree-run-module.part" "$DEST/bin/iree-run-module"  # atomic: a half-copied binary is never found
rm -rf "$WORK"
echo "armhf iree-run-module: $DEST/bin/iree-run-module"
