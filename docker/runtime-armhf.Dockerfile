# edgeskip board image for the ODROID-XU4 (the paper's board; 32-bit armv7 hard-float, target odroid-xu4).
# IREE publishes no armv7 wheel, so the IREE runtime and its Python bindings are built from source
# at the same version as the compiler (3.13.0), runtime only: no compiler, only the CPU drivers
# the bundles use (local-sync, local-task).
#
#   docker buildx build --platform linux/arm/v7 -f docker/runtime-armhf.Dockerfile -t edgeskip-runtime:armhf .
#
# Assumption: IREE tags stable releases as vX.Y.Z (v3.13.0). If that tag does not exist, pass the
# release-candidate tag instead: --build-arg IREE_REF=iree-3.13.0rcYYYYMMDD.
ARG IREE_REF=v3.13.0

FROM arm32v7/python:3.11-slim-bookworm AS build
ARG IREE_REF
ENV PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        git ca-certificates cmake ninja-build clang lld \
    && rm -rf /var/lib/apt/lists/*
RUN pip install numpy "nanobind>=2" "PyYAML"
# Only the submodules the runtime needs (no llvm-project: the compiler is off).
RUN git clone --depth 1 --branch "${IREE_REF}" https://github.com/iree-org/iree.git /iree \
    && cd /iree && git -c submodule."third_party/llvm-project".update=none \
        -c submodule."third_party/torch-mlir".update=none -c submodule."third_party/stablehlo".update=none \
        submodule update --init --depth 1 --recursive
RUN cmake -G Ninja -S /iree -B /iree-build \
        -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DIREE_BUILD_COMPILER=OFF \
        -DIREE_BUILD_PYTHON_BINDINGS=ON \
        -DPython3_EXECUTABLE="$(command -v python3)" \
        -DIREE_BUILD_TESTS=OFF -DIREE_BUILD_SAMPLES=OFF \
        -DIREE_HAL_DRIVER_DEFAULTS=OFF \
        -DIREE_HAL_DRIVER_LOCAL_SYNC=ON -DIREE_HAL_DRIVER_LOCAL_TASK=ON \
        -DIREE_HAL_EXECUTABLE_LOADER_DEFAULTS=OFF \
        -DIREE_HAL_EXECUTABLE_LOADER_EMBEDDED_ELF=ON \
        -DIREE_HAL_EXECUTABLE_PLUGIN_DEFAULTS=OFF \
        -DIREE_ENABLE_CPUINFO=ON \
    && cmake --build /iree-build \
    && cmake --install /iree-build --component IreePythonPackage-runtime --prefix /iree-install
# Install the built package with the metadata of the wheel it replaces, so `pip show iree-base-runtime`
# and `edgeskip board-check` report 3.13.0 like on the other boards.
RUN site="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && cp -r /iree-install/python_packages/iree_runtime/iree "$site/" \
    && mkdir -p "$site/iree_base_runtime-3.13.0.dist-info" \
    && printf 'Metadata-Version: 2.1\nName: iree-base-runtime\nVersion: 3.13.0\nSummary: IREE runtime built from source (%s)\n' \
        "${IREE_REF}" > "$site/iree_base_runtime-3.13.0.dist-info/METADATA" \
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
