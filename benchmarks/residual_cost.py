"""What measuring the inference residual costs a training step (README, "What a point records").

    .venv/bin/python benchmarks/residual_cost.py                  # N = 512, H = 8, one point
    .venv/bin/python benchmarks/residual_cost.py --depth 32 --rounds 5

The cell program measures ‖∇_z F(z_T)‖ / ‖∇_z F(z_0)‖ every `curves_every` steps (10 by default),
which costs one more activity gradient on those steps. This times the same one-point cell program
with the residual every 10 steps and measured only at step 0, in interleaved runs, and prints the
median ms per step of each and their ratio.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from bench_trainer import N_CLASSES, _median_seconds, cell_inputs

from mupc_sweep.train import _train_cell


def step_ms(width: int, depth: int, steps: int, residual_every: int):
    """A compiled one-point cell program of `steps` steps and a function timing one run of it."""
    cfg, args = cell_inputs(width, depth, 1, steps)
    compiled = _train_cell.lower(*args, cfg=cfg, n_classes=N_CLASSES, chunk=1, residual_every=residual_every).compile()
    jax.block_until_ready(compiled(*args))  # warm-up
    return lambda: _median_seconds(lambda: jax.block_until_ready(compiled(*args)), 1) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    runs = {"every 10 steps": step_ms(args.width, args.depth, args.steps, 10),
            "at step 0 only": step_ms(args.width, args.depth, args.steps, args.steps)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):  # interleaved: a drifting machine slows both alike
        for name, run in runs.items():
            times[name].append(run())
    with_residual, without = (float(np.median(times[name])) for name in runs)
    print(f"N = {args.width}, H = {args.depth}, one point, {args.steps} steps, {args.rounds} interleaved rounds")
    for name in runs:
        print(f"  residual {name}: {np.median(times[name]):.2f} ms a step")
    print(f"  cost of the residual every 10 steps: {100 * (with_residual / without - 1):+.1f} % of a step")


if __name__ == "__main__":
    main()
