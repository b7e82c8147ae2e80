#!/bin/sh
# The Odroid XU4's (armhf) IREE runtime, built from the vendored IREE source with Debian's cross compiler,
# for the armv7 emulation tests. The build follows ../shared/vendor/README.md, and
# docker/runtime-armhf.Dockerfile follows it: local-sync only (local-task does not compile for 32-bit ARM),
# the embedded-ELF loader, no compiler. Two outputs, each cached (rebuilt only when missing):
#   1. a *stock* `iree-run-module` (.cache/iree-armhf/bin): the source unchanged;
#   2. the board's Python (.cache/armhf-python): Debian bookworm's armhf python3.11 and numpy unpacked into a
#      sysroot (`apt-get download` + `dpkg -x`), IREE's Python bindings cross-built against its headers with
#      nanobind from PyPI, and ml_dtypes (which iree.runtime imports; no armv7 wheel exists) cross-built from
#      its PyPI sdist. The bindings need one patch for 32-bit hosts (tests/tools/patches/, see
#      docs/iree-32bit-arm-bugs.md); it touches nothing iree-run-module uses.
# Installs the Debian packages it needs when run as root; otherwise says what to install.
# Usage: tests/tools/build_armhf_runtime.sh [PYTHON]   (PYTHON: the venv's python, for cmake and downloads)
set -eu
PY=${1:-.venv/bin/python}
DEST=${EDGESKIP_ARMHF_DIR:-.cache/iree-armhf}
PYDEST=${EDGESKIP_ARMHF_PY_DIR:-.cache/armhf-python}
SRC_TAR=${EDGESKIP_IREE_SRC:-$(ls ../shared/vendor/iree-runtime-src-*.tar.gz 2>/dev/null | head -n 1)}
NANOBIND=2.9.0  # the version IREE's CMake pins
ML_DTYPES=0.5.4  # the newest that runs with bookworm's numpy 1.24 and has every type iree.runtime maps
DEBS="libc6 libgcc-s1 libstdc++6 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libpython3.11-dev
 libexpat1 zlib1g libffi8 libbz2-1.0 liblzma5 libuuid1 libssl3 libcrypt1 libsqlite3-0 libncursesw6 libtinfo6
 libreadline8 libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1
 python3-numpy libblas3 liblapack3 libgfortran5"

want_tool=yes
want_py=yes
[ -x "$DEST/bin/iree-run-module" ] && want_tool=no
[ -x "$PYDEST/sysroot/usr/bin/python3.11" ] && [ -d "$PYDEST/site/iree/runtime" ] && want_py=no
if [ $want_tool = no ] && [ $want_py = no ]; then
	echo "armhf runtime: found iree-run-module in $DEST/bin and the board Python in $PYDEST"
	exit 0
fi
if [ -z "$SRC_TAR" ] || [ ! -f "$SRC_TAR" ]; then
	echo "armhf runtime: the vendored IREE runtime source (../shared/vendor/iree-runtime-src-*.tar.gz," \
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

WORK=$(pwd)/.cache/iree-armhf-build
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
SYSROOT=$WORK/sysroot

# The board Python's sysroot: Debian's armhf packages, unpacked. Any failure here (no root, a mirror out
# of reach) skips the Python half with a message; the stock iree-run-module is built regardless.
python_sysroot() {
	# shellcheck disable=SC2086
	sh tests/tools/unpack_debian_packages.sh armhf "$SYSROOT" $DEBS || { echo "armhf python: skipped"; return 1; }
	# What the packages' alternatives would have linked (dpkg -x runs no maintainer scripts).
	ln -sf blas/libblas.so.3 "$SYSROOT/usr/lib/arm-linux-gnueabihf/libblas.so.3"
	ln -sf lapack/liblapack.so.3 "$SYSROOT/usr/lib/arm-linux-gnueabihf/liblapack.so.3"
	# nanobind (source-only wheel) and the ml_dtypes sdist from PyPI, checked against PyPI's sha256.
	"$PY" - "$WORK" "$NANOBIND" "$ML_DTYPES" <<'PYEOF' || { echo "armhf python: PyPI unreachable; skipped"; return 1; }
import hashlib, json, sys, tarfile, urllib.request, zipfile
from pathlib import Path
work, nanobind, ml_dtypes = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def fetch(name, filename):  # PyPI's simple index (PEP 691 JSON), which pip's mirrors serve too
    req = urllib.request.Request(f"https://pypi.org/simple/{name}/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    f = next(f for f in json.load(urllib.request.urlopen(req, timeout=60))["files"] if f["filename"] == filename)
    data = urllib.request.urlopen(f["url"], timeout=300).read()
    if hashlib.sha256(data).hexdigest() != f["hashes"]["sha256"]:
        raise SystemExit(f"{filename}: sha256 mismatch")
    (work / filename).write_bytes(data)
    return work / filename
zipfile.ZipFile(fetch("nanobind", f"nanobind-{nanobind}-py3-none-any.whl")).extractall(work / "nanobind")
with tarfile.open(fetch("ml-dtypes", f"ml_dtypes-{ml_dtypes}.tar.gz")) as t:
    t.extractall(work, filter="data")
PYEOF
	# ml_dtypes builds against NumPy 2's C API (it runs on 1.24): the host's NumPy 2 headers with the
	# sizes of the armhf EABI (long, intptr_t 4 bytes; long double = double).
	cp -r "$("$PY" -c 'import numpy; print(numpy.get_include())')" "$WORK/numpy2-include"
	sed -i -e 's/NPY_SIZEOF_LONG 8/NPY_SIZEOF_LONG 4/' -e 's/NPY_SIZEOF_LONGDOUBLE 16/NPY_SIZEOF_LONGDOUBLE 8/' \
		-e 's/NPY_SIZEOF_COMPLEX_LONGDOUBLE 32/NPY_SIZEOF_COMPLEX_LONGDOUBLE 16/' \
		-e 's/NPY_SIZEOF_PY_INTPTR_T 8/NPY_SIZEOF_PY_INTPTR_T 4/' -e 's/NPY_SIZEOF_INTP 8/NPY_SIZEOF_INTP 4/' \
		-e 's/NPY_SIZEOF_UINTP 8/NPY_SIZEOF_UINTP 4/' "$WORK/numpy2-include/numpy/_numpyconfig.h"
	# The target's python, under qemu, for CMake to query (its sysconfig names the sysroot's headers).
	printf '#!/bin/sh\nPYTHONPATH=%s%s exec qemu-arm-static -L %s %s "$@"\n' '${PYTHONPATH:+$PYTHONPATH:}' \
		"$SYSROOT/usr/lib/python3/dist-packages" "$SYSROOT" "$SYSROOT/usr/bin/python3.11" >"$WORK/python3"
	chmod +x "$WORK/python3"
	"$WORK/python3" -c "import numpy" || { echo "armhf python: the unpacked python3.11 does not run; skipped"; return 1; }
}

if [ $want_py = yes ]; then
	python_sysroot || want_py=no
fi

echo "armhf runtime: building from $SRC_TAR (1 to 3 min on 2 cores)"
tar xzf "$SRC_TAR" -C "$WORK"
SRC=$WORK/iree-runtime-src
COMMON="-G Ninja -DCMAKE_BUILD_TYPE=Release -DIREE_BUILD_COMPILER=OFF -DIREE_BUILD_TESTS=OFF
 -DIREE_BUILD_SAMPLES=OFF -DIREE_BUILD_BENCHMARKS=OFF
 -DIREE_ENABLE_LIBBACKTRACE=OFF -DIREE_ENABLE_WERROR_FLAG=OFF -DIREE_ERROR_ON_MISSING_SUBMODULES=OFF"

# 1. The host tools the cross build runs (flatbuffer and data embedding).
# shellcheck disable=SC2086
"$CMAKE" -S "$SRC" -B "$WORK/host" $COMMON -DIREE_BUILD_PYTHON_BINDINGS=OFF -DIREE_HAL_DRIVER_DEFAULTS=OFF \
	>"$WORK/host.log" 2>&1 || { tail -n 30 "$WORK/host.log"; exit 1; }
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
PYOPTS="-DIREE_BUILD_PYTHON_BINDINGS=OFF"
TARGETS="iree-run-module"
if [ $want_py = yes ]; then
	patch -s -d "$SRC" -p1 <tests/tools/patches/iree-python-bindings-32bit-dlpack.patch
	NUMPY1="$SYSROOT/usr/lib/python3/dist-packages/numpy/core/include"
	PYOPTS="-DIREE_BUILD_PYTHON_BINDINGS=ON -DIREE_USE_SYSTEM_DEPS=ON -DIREE_ENABLE_CPUINFO=OFF
	 -Dnanobind_DIR=$WORK/nanobind/nanobind/cmake -DPython3_EXECUTABLE=$WORK/python3 -DPython_EXECUTABLE=$WORK/python3
	 -DPython3_INCLUDE_DIR=$SYSROOT/usr/include/python3.11 -DPython_INCLUDE_DIR=$SYSROOT/usr/include/python3.11
	 -DPython3_NumPy_INCLUDE_DIR=$NUMPY1 -DPython_NumPy_INCLUDE_DIR=$NUMPY1"
	TARGETS="iree-run-module iree_runtime_bindings_python_PyExtRt"
fi
# shellcheck disable=SC2086
"$CMAKE" -S "$SRC" -B "$WORK/armhf" $COMMON -DCMAKE_TOOLCHAIN_FILE="$WORK/armhf.cmake" \
	-DIREE_HOST_BIN_DIR="$WORK/host/tools" \
	-DIREE_HAL_DRIVER_DEFAULTS=OFF -DIREE_HAL_DRIVER_LOCAL_SYNC=ON -DIREE_HAL_DRIVER_LOCAL_TASK=OFF \
	-DIREE_HAL_EXECUTABLE_LOADER_DEFAULTS=OFF -DIREE_HAL_EXECUTABLE_LOADER_EMBEDDED_ELF=ON \
	-DIREE_HAL_EXECUTABLE_PLUGIN_DEFAULTS=OFF $PYOPTS \
	-DCMAKE_C_FLAGS="-isystem $SYSROOT/usr/include" -DCMAKE_CXX_FLAGS="-isystem $SYSROOT/usr/include" \
	>"$WORK/armhf.log" 2>&1 || { tail -n 30 "$WORK/armhf.log"; exit 1; }
# shellcheck disable=SC2086
"$CMAKE" --build "$WORK/armhf" --target $TARGETS >>"$WORK/armhf.log" 2>&1 || { tail -n 30 "$WORK/armhf.log"; exit 1; }

if [ $want_tool = yes ]; then
	mkdir -p "$DEST/bin"
	cp "$WORK/armhf/tools/iree-run-module" "$DEST/bin/iree-run-module.part"
	mv "$DEST/bin/iree-run-module.part" "$DEST/bin/iree-run-module"  # atomic: a half-copied binary is never found
	echo "armhf iree-run-module: $DEST/bin/iree-run-module"
fi
[ $want_py = yes ] || exit 0

# 3. ml_dtypes' extension, cross-built as its CMakeLists.txt builds it (Eigen is header-only).
MLD="$WORK/ml_dtypes-$ML_DTYPES"
arm-linux-gnueabihf-g++ -O2 -std=c++17 -shared -fPIC -DEIGEN_MPL2_ONLY -fvisibility=hidden -ftrapping-math \
	-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard -I"$SYSROOT/usr/include/python3.11" \
	-isystem "$SYSROOT/usr/include" -I"$WORK/numpy2-include" -I"$MLD" -I"$MLD/third_party/eigen" \
	"$MLD/ml_dtypes/_src/dtypes.cc" "$MLD/ml_dtypes/_src/numpy.cc" \
	-o "$MLD/ml_dtypes/_ml_dtypes_ext.cpython-311-arm-linux-gnueabihf.so" >"$WORK/ml_dtypes.log" 2>&1 \
	|| { tail -n 30 "$WORK/ml_dtypes.log"; exit 1; }

# 4. site-packages: the iree package (the source tree's Python files and the built extension, with the
# version file setup.py would generate) and ml_dtypes.
SITE="$WORK/site"
mkdir -p "$SITE"
cp -r "$SRC/runtime/bindings/python/iree" "$SITE/"
mkdir -p "$SITE/iree/_runtime_libs"
cp "$WORK"/armhf/runtime/bindings/python/iree/_runtime_libs/_runtime.*.so "$SITE/iree/_runtime_libs/"
: >"$SITE/iree/_runtime_libs/__init__.py"
REV=$(basename "$SRC_TAR" .tar.gz | sed 's/^iree-runtime-src-//')
printf '# Built from source by tests/tools/build_armhf_runtime.sh.\nPACKAGE_SUFFIX = ""\nVERSION = "3.13.0"\nREVISIONS = {"IREE": "%s"}\n' \
	"$REV" >"$SITE/iree/_runtime_libs/version.py"
cp -r "$MLD/ml_dtypes" "$SITE/"
rm -rf "$SITE/ml_dtypes/tests"
PYTHONPATH="$SITE" "$WORK/python3" -c "import iree.runtime, ml_dtypes" \
	|| { echo "armhf python: the built iree.runtime does not import"; exit 1; }
rm -rf "$PYDEST"
mkdir -p "$PYDEST"
mv "$SYSROOT" "$PYDEST/sysroot"
mv "$SITE" "$PYDEST/site"
echo "armhf python: $PYDEST (qemu-arm-static -L $PYDEST/sysroot $PYDEST/sysroot/usr/bin/python3.11;" \
     "PYTHONPATH=$PYDEST/site:$PYDEST/sysroot/usr/lib/python3/dist-packages)"
