# edgeskip board image for the ODROID-XU4 (the paper's board; 32-bit armv7 hard-float, target odroid-xu4).
# IREE publishes no armv7 wheel, so the IREE runtime and its Python bindings are built from source:
# the same source snapshot, compiler, flags and CMake options as the armhf runtime that `make test`
# builds and runs (tests/tools/build_armhf_runtime.sh; tests/test_docker.py checks they agree).
# local-sync only: IREE's local-task driver does not compile for 32-bit ARM.
#
# The source is the vendored snapshot (../shared/vendor, IREE b48a5955, the one the tests prove),
# passed as a named build context:
#
#   docker buildx build --platform linux/arm/v7 --build-context vendor=../shared/vendor \
#       -f docker/runtime-armhf.Dockerfile -t edgeskip-runtime:armhf .
#
# Proven here (cross-compiled with Debian bookworm's arm-linux-gnueabihf GCC 12, run under qemu-arm): the
# C runtime and iree-run-module with these options run edgeskip's odroid-xu4 bundles and match the host
# bundle, and the Python bindings with the same options (plus the 32-bit patch applied below) and
# ml_dtypes 0.5.4 serve a bundle with `edgeskip-runtime serve` (tests/test_board_runtime.py). This image
# builds natively instead of cross, with PyPI's numpy built from source (no armv7 wheel; slow).

FROM arm32v7/python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ ninja-build \
    && rm -rf /var/lib/apt/lists/*
# IREE needs cmake >= 3.26 (bookworm has 3.25); ml_dtypes (imported by iree.runtime) has no armv7 wheel.
RUN pip install "cmake>=3.26,<4" numpy "nanobind==2.9.0" PyYAML "ml_dtypes==0.5.4"
COPY --from=vendor iree-runtime-src-b48a5955.tar.gz /tmp/
COPY tests/tools/patches/iree-python-bindings-32bit-dlpack.patch /tmp/
RUN mkdir /src && tar xzf /tmp/iree-runtime-src-b48a5955.tar.gz -C /src \
    && apt-get update && apt-get install -y --no-install-recommends patch && rm -rf /var/lib/apt/lists/* \
    && patch -d /src/iree-runtime-src -p1 < /tmp/iree-python-bindings-32bit-dlpack.patch
ENV CFLAGS="-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard" CXXFLAGS="-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard"
RUN cmake -G Ninja -S /src/iree-runtime-src -B /iree-build \
        -DCMAKE_BUILD_TYPE=Release \
        -DIREE_BUILD_COMPILER=OFF -DIREE_BUILD_TESTS=OFF -DIREE_BUILD_SAMPLES=OFF \
        -DIREE_BUILD_BENCHMARKS=OFF \
        -DIREE_ENABLE_LIBBACKTRACE=OFF -DIREE_ENABLE_WERROR_FLAG=OFF -DIREE_ERROR_ON_MISSING_SUBMODULES=OFF \
        -DIREE_HAL_DRIVER_DEFAULTS=OFF -DIREE_HAL_DRIVER_LOCAL_SYNC=ON -DIREE_HAL_DRIVER_LOCAL_TASK=OFF \
        -DIREE_HAL_EXECUTABLE_LOADER_DEFAULTS=OFF -DIREE_HAL_EXECUTABLE_LOADER_EMBEDDED_ELF=ON \
        -DIREE_HAL_EXECUTABLE_PLUGIN_DEFAULTS=OFF \
        -DIREE_BUILD_PYTHON_BINDINGS=ON -DPython3_EXECUTABLE="$(command -v python3)" \
        -DIREE_USE_SYSTEM_DEPS=ON -DIREE_ENABLE_CPUINFO=OFF -Dnanobind_DIR="$(python3 -m nanobind --cmake_dir)" \
    && cmake --build /iree-build \
    && cmake --install /iree-build --component IreePythonPackage-runtime --prefix /iree-install
# Install the built package with the metadata of the wheel it replaces, so `pip show iree-base-runtime`
# and `edgeskip board-check` report 3.13.0 like on the other boards (the compiler's version; the
# snapshot's bytecode and HAL module versions are the same, ../shared/vendor/README.md).
RUN site="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && cp -r /iree-install/python_packages/iree_runtime/iree "$site/" \
    && mkdir -p "$site/iree_base_runtime-3.13.0.dist-info" \
    && printf 'Metadata-Version: 2.1\nName: iree-base-runtime\nVersion: 3.13.0\nSummary: IREE runtime built from source (b48a5955)\n' \
        > "$site/iree_base_runtime-3.13.0.dist-info/METADATA" \
    && echo edgeskip-docker > "$site/iree_base_runtime-3.13.0.dist-info/INSTALLER" \
    && : > "$site/iree_base_runtime-3.13.0.dist-info/RECORD" \
    && python3 -c "import iree.runtime as r; print(r.query_available_drivers())"

FROM arm32v7/python:3.11-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /usr/local/lib/python3.11/site-packages /usr/local/lib/python3.11/site-packages
WORKDIR /src
COPY runtime ./runtime
RUN pip install ./runtime && edgeskip-runtime --help >/dev/null

EXPOSE 8000
CMD ["edgeskip-runtime", "serve", "/opt/edgeskip/current", "--host", "0.0.0.0", "--port", "8000"]
