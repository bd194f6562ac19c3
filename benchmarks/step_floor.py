"""Where a CPU training step's time goes, and the least it could take (benchmarks/RESULTS.md).

    .venv/bin/python benchmarks/step_floor.py                      # N = 512, H = 8, one point
    .venv/bin/python benchmarks/step_floor.py --width 512 --depth 32 --steps 3

Three parts of a step that any arrangement of the algorithm must pay: its matrix products, timed
by XLA's profiler inside the cell program; Adam's update of the weights and its two moments, the
difference between the cell program and the same program with plain gradient descent (interleaved
runs); and forming Wᵀ of the hidden layers once, timed alone. Their sum is the floor; the budget
is the step time that would reach `--target` of the dense float32 matmul rate measured in the same
run. A floor above the budget means the target is out of reach on this machine, whatever is done
with the rest of the step (the activity updates, errors, slices and copies).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import re
import tempfile
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mupc_sweep import step, train

from bench_trainer import N_CLASSES, _median_seconds, cell_inputs, matmul_gflops, pc_step_flops


_PRODUCT = re.compile(r"^(ynn_fusion|dot|dot_general)(\.[0-9]+)?$")


def cell_program(width: int, depth: int, steps: int,
                 optimizer: optax.GradientTransformation = step.ADAM) -> Callable[[], object]:
    """One point's cell program, stepping along `optimizer` (the trainer's Adam by default),
    compiled and ready to run."""
    cfg, args = cell_inputs(width, depth, 1, steps)
    compiled = train._train_cell.lower(*args, cfg=cfg, n_classes=N_CLASSES, chunk=1, optimizer=optimizer).compile()
    run = lambda: jax.block_until_ready(compiled(*args))  # noqa: E731
    run()
    return run


def product_ms(run: Callable[[], object], steps: int) -> float:
    """Kernel time of the matrix products (YNNPACK and Eigen dots) per step, by XLA's profiler."""
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            run()
        (path,) = glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True)
        events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    # A kernel's event is named after its HLO instruction (`ynn_fusion.3`, `dot.7`).
    return sum(e["dur"] for e in events if e.get("ph") == "X" and _PRODUCT.match(e.get("name", ""))) / steps / 1e3


def step_ms_with_and_without_adam(width: int, depth: int, steps: int) -> tuple[float, float, Callable[[], object]]:
    """Median ms a step of the cell program with Adam, and with Adam's direction replaced by the
    gradient itself (plain gradient descent, same masks), interleaved runs; and the Adam program."""
    with_adam = cell_program(width, depth, steps)
    without = cell_program(width, depth, steps, optax.identity())
    times: dict[Callable[[], object], list[float]] = {with_adam: [], without: []}
    for _ in range(7):
        for run, t in times.items():
            t.append(_median_seconds(run, 1) / steps * 1e3)
    return float(np.median(times[with_adam])), float(np.median(times[without])), with_adam


def transpose_ms(width: int, depth: int) -> float:
    """Forming W_2ᵀ..W_Hᵀ once: (H−1) × N × N."""
    w = jax.random.normal(jax.random.PRNGKey(0), (depth - 1, width, width), jnp.float32)
    f = jax.jit(lambda w: jnp.swapaxes(w, 1, 2))
    jax.block_until_ready(f(w))
    return _median_seconds(lambda: jax.block_until_ready(f(w)), 15) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40, help="steps per run of the cell program (default 40)")
    parser.add_argument("--target", type=float, default=0.75, help="share of the matmul rate (default 0.75)")
    args = parser.parse_args()
    flops = pc_step_flops(args.width, args.depth)
    step, gradient_descent, run = step_ms_with_and_without_adam(args.width, args.depth, args.steps)
    products, adam = product_ms(run, args.steps), step - gradient_descent
    transpose = transpose_ms(args.width, args.depth)
    matmul = matmul_gflops()
    budget = flops / (args.target * matmul * 1e9) * 1e3
    floor = products + adam + transpose
    print(f"N = {args.width}, H = {args.depth}, one point: {flops / 1e9:.2f} GFLOP of products a step")
    print(f"dense float32 matmul: {matmul:.1f} GFLOP/s")
    print(f"step: {step:.2f} ms, {flops / step / 1e6:.1f} GFLOP/s, {flops / step / 1e6 / matmul:.0%} of matmul")
    print(f"  its products (profiled): {products:.2f} ms, {flops / products / 1e6:.1f} GFLOP/s")
    print(f"  Adam over plain gradient descent: {adam:.2f} ms ({gradient_descent:.2f} ms a step without it)")
    print(f"  Wᵀ of the hidden layers, formed alone: {transpose:.2f} ms")
    print(f"floor (products + Adam + Wᵀ): {floor:.2f} ms; budget for {args.target:.0%} of matmul: {budget:.2f} ms")
    print("the target is out of reach on this machine" if floor > budget else f"{budget - floor:.2f} ms left for the rest")


if __name__ == "__main__":
    main()
