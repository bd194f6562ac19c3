"""Trainer benchmark: time per point-step and achieved GFLOP/s of the cell program.

    .venv/bin/python benchmarks/bench_trainer.py                 # N ∈ {128, 512}, H ∈ {8, 32}, G ∈ {1, 44}
    .venv/bin/python benchmarks/bench_trainer.py --width 512 --depth 128 --points 44   # one shape

GFLOP/s counts only the matrix products the algorithm needs (`mupc_sweep.cost.step_flops`) and is
compared with this device's dense float32 matmul rate (4096², median of 5), measured right after
each timed run, since a shared machine's speed drifts. "W·z" is the rate of the cell's batched layer
product alone, the same shapes as in a step, so a row's share of it says how much of the gap to
the matmul rate is the product shape and how much the rest of the step. A measurement is the whole cell program
(weight init, batch permutation, steps, final test evaluation) over at least 3 steps per point; a
short one is warmed up once and timed 3 times, and the row gives the medians. Inputs are random
MNIST-shaped data (784 → 10); the rates are chosen so that no point stops early.
The reference products run at the trainer's precision (`MATMUL_PRECISION`, full float32), not at
JAX's GPU default, which would round their operands to TF32.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from mupc_sweep.cost import step_flops
from mupc_sweep.cell import CellConfig
from mupc_sweep.device import describe_device, xla_flags
from mupc_sweep.step import MATMUL_PRECISION
from mupc_sweep.train import _train_cell

D_IN, N_CLASSES, BATCH = 784, 10, 64


def matmul_gflops(n: int = 4096, repeats: int = 5) -> float:
    """Dense float32 (n × n) @ (n × n) rate of the default device, median of `repeats`."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    return 2 * n**3 / _median_seconds(lambda: f(a).block_until_ready(), repeats) / 1e9


def layer_product_gflops(width: int, depth: int, repeats: int = 7) -> float:
    """Rate of the cell's main product alone, W_l φ(z_{l−1}) for every hidden layer at once
    ((H−1) × N × N by (H−1) × N × B, batched as the trainer runs it), median of `repeats`: the
    ceiling for a step made of such products."""
    k_w, k_z = jax.random.split(jax.random.PRNGKey(0))
    w = jax.random.normal(k_w, (depth - 1, width, width), jnp.float32)
    z = jax.random.normal(k_z, (depth - 1, width, BATCH), jnp.float32)
    f = jax.jit(lambda w, z: jnp.einsum("loi,lib->lob", w, z))
    f(w, z).block_until_ready()
    return 2 * (depth - 1) * width * width * BATCH / _median_seconds(lambda: f(w, z).block_until_ready(), repeats) / 1e9


def _median_seconds(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls of `fn`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def pc_step_flops(width: int, depth: int) -> int:
    """Matrix-product FLOPs of one point's step in these cells (tanh μPC, T = H, MNIST shapes)."""
    return step_flops(
        algorithm="pc", d_in=D_IN, width=width, depth=depth, d_out=N_CLASSES, inference_steps=depth, batch_size=BATCH
    )


def cell_inputs(width: int, depth: int, points: int, steps: int) -> tuple[CellConfig, tuple]:
    """A one-epoch cell of `steps` steps on random MNIST-shaped data, and `_train_cell`'s arguments
    for `points` points of one seed, at rates small enough that no point stops early."""
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(steps * BATCH, D_IN)).astype(np.float32)
    y_train = rng.integers(0, N_CLASSES, steps * BATCH).astype(np.int32)
    cfg = CellConfig(width=width, depth=depth, activation="tanh", epochs=1.0, eval_every=10**9, batch_size=BATCH)
    args = (
        jnp.asarray(x_train), jnp.asarray(y_train), jnp.asarray(x_train[:BATCH]), jnp.asarray(y_train[:BATCH]),
        jnp.zeros(1, jnp.uint32), jnp.zeros(points, jnp.int32),
        jnp.asarray(np.resize([1e-3, 5e-4, 1e-4, 5e-5], points), jnp.float32),
        jnp.asarray(np.resize([0.1, 0.05, 0.01], points), jnp.float32),
        jnp.asarray(0, jnp.int32),  # the progress token: no callback registered
    )
    return cfg, args


def bench_cell(width: int, depth: int, points: int, *, target_s: float, chunk: int | None) -> dict:
    flops = pc_step_flops(width, depth)
    rate_guess = 100e9 if jax.devices()[0].platform == "cpu" else 100e12
    steps = int(np.clip(target_s * rate_guess / (flops * points), 3, 300))
    repeats = 3 if flops * points * steps / rate_guess < 20 else 1
    cfg, args = cell_inputs(width, depth, points, steps)
    chunk = chunk or (1 if jax.devices()[0].platform == "cpu" else points)
    start = time.perf_counter()
    compiled = _train_cell.lower(*args, cfg=cfg, n_classes=N_CLASSES, chunk=chunk).compile()
    compile_s = time.perf_counter() - start
    if repeats > 1:
        jax.block_until_ready(compiled(*args))  # warm-up
    walls, peaks, products = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        walls.append(time.perf_counter() - start)
        peaks.append(matmul_gflops())
        products.append(layer_product_gflops(width, depth))
    wall = float(np.median(walls))
    steps_run = np.asarray(out[4])
    if not np.all(steps_run == steps):
        print(f"  warning: some points stopped early (steps run {steps_run.min()}..{steps_run.max()} of {steps})")
    per_point_step = wall / (points * steps)
    return dict(
        width=width, depth=depth, points=points, chunk=chunk, steps=steps, compile_s=compile_s,
        ms_per_point_step=1e3 * per_point_step, gflops=flops / per_point_step / 1e9, matmul=float(np.median(peaks)),
        products=float(np.median(products)), memory_gib=_program_bytes(compiled) / 2**30,
    )


def _program_bytes(compiled) -> float:
    """Device memory the compiled program needs: its arguments, outputs and temporaries (XLA's
    own accounting; NaN where the backend gives none)."""
    stats = compiled.memory_analysis()
    if stats is None:
        return float("nan")
    return float(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, nargs="*", default=[128, 512])
    parser.add_argument("--depth", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--points", type=int, nargs="*", default=[1, 44])
    parser.add_argument("--chunk", type=int, default=None, help="points vmapped together (default: the trainer's)")
    parser.add_argument("--seconds", type=float, default=8.0, help="target run time per measurement")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = xla_flags(os.environ)  # as the product compiles, set before JAX opens a device
    jax.config.update("jax_default_matmul_precision", MATMUL_PRECISION)  # the reference products too

    print(f"device: {describe_device()}   jax {jax.__version__}   products in {MATMUL_PRECISION}")
    print("matmul: dense float32 4096² rate measured right after each timed run (a shared machine's speed drifts)")
    print("W·z: the cell's batched layer product alone, measured likewise (the ceiling for its step)\n")
    print(
        f"{'N':>5} {'H':>4} {'G':>3} {'chunk':>5} {'steps':>5} {'compile s':>9} {'ms/point-step':>13} "
        f"{'GFLOP/s':>8} {'matmul':>7} {'% matmul':>8} {'W·z':>7} {'W·z %':>6} {'mem GiB':>7}"
    )
    for width, depth, points in itertools.product(args.width, args.depth, args.points):
        r = bench_cell(width, depth, points, target_s=args.seconds, chunk=args.chunk)
        peak = r["matmul"]
        print(
            f"{r['width']:>5} {r['depth']:>4} {r['points']:>3} {r['chunk']:>5} {r['steps']:>5} {r['compile_s']:>9.1f} "
            f"{r['ms_per_point_step']:>13.2f} {r['gflops']:>8.1f} {peak:>7.1f} {100 * r['gflops'] / peak:>7.0f}% "
            f"{r['products']:>7.1f} {100 * r['products'] / peak:>5.0f}% {r['memory_gib']:>7.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
