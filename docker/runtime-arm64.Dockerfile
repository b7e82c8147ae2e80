# edgeskip board image for 64-bit ARM boards (Raspberry Pi 4/5, target rpi4/rpi5): the runtime only,
# no torch and no compiler. IREE publishes aarch64 wheels of iree-base-runtime, so nothing is built.
#
#   docker buildx build --platform linux/arm64 -f docker/runtime-arm64.Dockerfile -t edgeskip-runtime:arm64 .
#   docker run --rm --network host -v /opt/edgeskip:/opt/edgeskip edgeskip-runtime:arm64
FROM arm64v8/python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN pip install iree-base-runtime==3.13.0

WORKDIR /src
COPY runtime ./runtime
RUN pip install ./runtime && edgeskip-runtime --help >/dev/null

# The bundle is mounted (or deployed by `edgeskip deploy`) at /opt/edgeskip/current.
EXPOSE 8000
CMD ["edgeskip-runtime", "serve", "/opt/edgeskip/current", "--host", "0.0.0.0", "--port", "8000"]
