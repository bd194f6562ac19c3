"""Device settings: what a process tells XLA before it opens a device, what device it trains on, and
how many grid points fit on it at once."""

from __future__ import annotations

from collections.abc import Mapping

import jax

from .cell import CellConfig
from .cost import point_bytes

# XLA's Triton GEMM fusions off: on an H100 their autotuning took about 47 of the 52 s a 128-layer
# cell compiled in, and the cuBLAS kernels chosen without them ran the step as fast. CPU XLA
# accepts the option and ignores it.
GPU_XLA_FLAG = "--xla_gpu_enable_triton_gemm=false"
GPU_MEMORY_SHARE = 0.9  # of a trial's GPU fraction that JAX may take, leaving room for CUDA itself
MEM_FRACTION_VARIABLES = ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION")


def xla_flags(environ: Mapping[str, str]) -> str:
    """XLA_FLAGS with `GPU_XLA_FLAG` added, unless `environ`'s XLA_FLAGS already sets that option.
    It takes effect only in a process that has not yet opened a JAX device."""
    flags = environ.get("XLA_FLAGS", "")
    option = GPU_XLA_FLAG.split("=")[0]
    if any(flag.split("=")[0] == option for flag in flags.split()):
        return flags
    return f"{flags} {GPU_XLA_FLAG}".strip()


def trial_settings(gpu: float, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment for a sweep trial's JAX, set before it first touches a device: a CPU-only trial
    never opens a GPU; a GPU trial compiles with `GPU_XLA_FLAG` and preallocates only its share of
    the GPU, so co-located trials fit. A memory fraction already in `environ` is the user's choice
    and is kept, and so is their own setting of the flag."""
    if gpu == 0:
        return {"JAX_PLATFORMS": "cpu"}
    settings = {"XLA_FLAGS": xla_flags(environ)}
    if not any(name in environ for name in MEM_FRACTION_VARIABLES):
        # the older name: newer jaxlib reads it too (and refuses only both names at once)
        settings["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{GPU_MEMORY_SHARE * min(gpu, 1.0):.3f}"
    return settings


def describe_device() -> str:
    """The device kind JAX trains on, e.g. 'cpu' or 'NVIDIA H100 80GB HBM3'."""
    device = jax.devices()[0]
    return device.platform if device.platform == "cpu" else device.device_kind


def default_chunk(cfg: CellConfig, d_in: int, n_classes: int, n_train: int, n_points: int) -> int:
    """Points vmapped together: on a GPU as many as fit in 80 % of its memory; on a CPU one at a
    time, which keeps a point's weights in cache across its inference steps."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return 1
    stats = device.memory_stats() or {}
    limit = stats.get("bytes_limit", 16 * 2**30) - stats.get("bytes_in_use", 0)
    per_point = point_bytes(
        d_in=d_in, width=cfg.width, depth=cfg.depth, d_out=n_classes, batch_size=cfg.batch_size,
        n_steps=cfg.training_steps(n_train),
    )
    return max(1, min(n_points, int(0.8 * limit) // per_point))
