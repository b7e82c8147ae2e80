# edgeskip toolchain image (x86_64): train, export, compile for any board in targets/, deploy.
# The compiler is cross: `edgeskip compile --target odroid-xu4|rpi4|rpi5|host` all run here.
#
#   docker build -f docker/toolchain.Dockerfile -t edgeskip-toolchain .
#   docker run --rm -v "$PWD/runs:/work/runs" edgeskip-toolchain \
#       edgeskip compile runs/model.onnx --target odroid-xu4 --pareto runs/pareto.json --out runs/bundle-xu4
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# openssh-client: `edgeskip board-check` / `deploy` use the system ssh client.
RUN apt-get update && apt-get install -y --no-install-recommends openssh-client \
    && rm -rf /var/lib/apt/lists/*

# torch first, pinned, from the CPU index: an unpinned torch pulls a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
RUN pip install onnx onnxscript iree-base-compiler==3.13.0 iree-base-runtime==3.13.0

WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeskip ./edgeskip
COPY compiler_passes ./compiler_passes
COPY targets ./targets
COPY runtime ./runtime
RUN pip install ./runtime . && edgeskip targets

WORKDIR /work
CMD ["edgeskip", "--help"]
