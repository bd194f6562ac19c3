"""What training costs: matrix-product FLOPs and memory per grid point, and the seconds a point
takes at the trainer's measured rates.

FLOPs count only the matrix products the algorithm needs (2·m·n·k each). Per example, with
M_in = 2DN, M_h = 2(H−1)N², M_out = 2NC:

- PC, T inference steps: feedforward (M_in + M_h + M_out); the first inference step at the
  feedforward activities, where all hidden errors vanish (M_out); steps 2..T, each the errors
  and their back-projection on its window of the top k layers (2·2(k−1)N² + 2M_out, see
  `cell.inference_windows`); the errors at the final activities (M_h + M_out); the weight
  gradients (M_in + M_h + M_out). With every step on all layers the hidden-layer total would be
  (2T + 1)·M_h; the windows bring it to about (1.4 T + 1)·M_h at T = H = 32.
- BP: forward, backward to the activities, weight gradients: 2M_in + 3M_h + 3M_out.
"""

from __future__ import annotations

import math

from .cell import Algorithm, CellConfig, inference_windows

D_IN, N_CLASSES = 784, 10  # MNIST and Fashion-MNIST
N_TRAIN, N_TEST = 60000, 10000

# The trainer's measured rate, GFLOP/s of matrix products per point-step, by (N, H), used only to
# estimate times for planning (benchmarks/RESULTS.md): on the 2-core CPU VM one point at a time (N = 64:
# sweeps/contrast.yaml's cells, two 1-CPU trials side by side, compile and evaluation included; N ≥ 128:
# the benchmark on both cores), on an H100 with 44 points vmapped.
RATES = {
    "cpu": {(64, 4): 30.2, (64, 8): 33.0, (64, 16): 35.1, (64, 32): 42.9, (128, 8): 51.8, (128, 32): 45.1,
            (512, 8): 88.6, (512, 32): 94.8, (512, 128): 111.9},
    "gpu": {(128, 8): 8374, (128, 32): 12167, (512, 8): 20049, (512, 16): 23817, (512, 32): 26314,
            (512, 64): 28096, (512, 128): 28851},
}


def _layer_flops(d_in: int, width: int, depth: int, d_out: int) -> tuple[int, int, int]:
    return 2 * d_in * width, 2 * (depth - 1) * width * width, 2 * width * d_out


def step_flops(
    *, algorithm: Algorithm, d_in: int, width: int, depth: int, d_out: int, inference_steps: int, batch_size: int
) -> int:
    """Matrix-product FLOPs of one training step of one grid point."""
    m_in, m_h, m_out = _layer_flops(d_in, width, depth, d_out)
    if algorithm == "bp":
        return batch_size * (2 * m_in + 3 * m_h + 3 * m_out)
    windows = inference_windows(depth, inference_steps)
    inference = (m_out if inference_steps >= 1 else 0) + sum(
        n * 2 * (2 * (k - 1) * width * width + m_out) for k, n in windows
    )
    per_example = (m_in + m_h + m_out) + inference + (m_h + m_out) + (m_in + m_h + m_out)
    return batch_size * per_example


def eval_flops(*, d_in: int, width: int, depth: int, d_out: int, n_examples: int) -> int:
    """Matrix-product FLOPs of one feedforward evaluation over `n_examples`."""
    return n_examples * sum(_layer_flops(d_in, width, depth, d_out))


def point_bytes(
    *, d_in: int, width: int, depth: int, d_out: int, batch_size: int, n_steps: int, itemsize: int = 4
) -> int:
    """Rough device memory one grid point needs while training (a planning estimate, not a bound).

    Weights with Adam's two moments and one step's temporaries (about 7 copies of the
    parameters), the activities, errors and their derivatives (about 8 copies of z), a test-set
    chunk of activities, and the point's batch indices.
    """
    params = d_in * width + (depth - 1) * width * width + width * d_out
    activities = depth * batch_size * width
    return itemsize * (7 * params + 8 * activities + 3 * 1000 * width) + 4 * n_steps * batch_size


DATASET_BYTES = 4 * (N_TRAIN + N_TEST) * (D_IN + 1)  # the float32 dataset every trial holds on its device


def trial_bytes(cfg: CellConfig) -> int:
    """Rough memory one trial of a cell needs at the least: the dataset and one point (a GPU trial
    vmaps as many points as fit, so one point is its minimum too)."""
    return DATASET_BYTES + point_bytes(d_in=D_IN, width=cfg.width, depth=cfg.depth, d_out=N_CLASSES,
                                       batch_size=cfg.batch_size, n_steps=cfg.training_steps(N_TRAIN))


def point_flops(cfg: CellConfig, *, n_train: int = N_TRAIN, n_test: int = N_TEST) -> float:
    """Matrix-product FLOPs of training one point of a cell: its steps and its test evaluations."""
    steps = cfg.training_steps(n_train)
    per_step = step_flops(algorithm=cfg.algorithm, d_in=D_IN, width=cfg.width, depth=cfg.depth, d_out=N_CLASSES,
                          inference_steps=cfg.inference_steps, batch_size=cfg.batch_size)
    evals = steps // cfg.eval_every + 1
    return steps * per_step + evals * eval_flops(d_in=D_IN, width=cfg.width, depth=cfg.depth, d_out=N_CLASSES,
                                                 n_examples=n_test)


# What a sweep pays beside training, measured on the 2-core CPU VM (2026-12-02): Ray embedded starts
# in 2.5 s and stops in 1.4 s; a trial spends about 3 s beyond its cell program's run on starting
# (its worker, JAX, the dataset from Ray's object store) and reporting; a cell program compiles in
# 1.6 s (N = 64, H = 2) to 2.5 s (H = 128) on that CPU (benchmarks/bench_trainer.py's compile column),
# and in 4.4 to 4.9 s on an H100 with XLA's Triton GEMM fusions off (benchmarks/RESULTS.md).
STARTUP_S = 4.0
TRIAL_START_S = 3.0


def compile_seconds(cfg: CellConfig, device: str) -> float:
    """Seconds a cell program takes to compile on `device` ("cpu" or "gpu"): it grows with log₂ H."""
    return 5.0 if device == "gpu" else 1.4 + 0.15 * math.log2(cfg.depth)


def trial_overhead(cfg: CellConfig, device: str) -> float:
    """Seconds a trial of a cell pays beside training its points: its start and its compile (a
    worker that ran a trial of the same shape compiles nothing, so this errs long)."""
    return TRIAL_START_S + compile_seconds(cfg, device)


def rate(device: str, width: int, depth: int) -> float:
    """GFLOP/s of the measured row in `RATES[device]` nearest (N, H) in log2 space."""
    rows = RATES[device]
    nearest = min(rows, key=lambda nh: math.hypot(math.log2(nh[0] / width), math.log2(nh[1] / depth)))
    return rows[nearest]


def point_seconds(cfg: CellConfig, device: str) -> float:
    """Estimated seconds to train one point of a cell on `device` ("cpu" or "gpu")."""
    return point_flops(cfg) / (rate(device, cfg.width, cfg.depth) * 1e9)
