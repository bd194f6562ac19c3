"""Activity-Hessian benchmark: time and memory of the Lanczos condition number (no dense matrix), and
its agreement with the dense spectrum on a mid-size network.

    .venv/bin/python benchmarks/bench_hessian.py                          # N = 512, H = 32, k ∈ {64, 128, 256}
    .venv/bin/python benchmarks/bench_hessian.py --depth 128 --lanczos-steps 128   # H·N = 65 536

Float64, μPC weights drawn as `init_weights` draws them, MNIST-shaped random inputs (784 → 10), the
Hessian at the feedforward activities. A row: compile time, the median of 3 timed runs, XLA's compiled
memory (arguments + temporaries, `memory_analysis`), the process's peak RSS so far, λ_min, λ_max, κ and
the Ritz residuals (|λ − θ| ≤ residual). The dense check compares the extremes with `eigvalsh` of
`activity_hessian` at N = 64, H = 16 (H·N = 1024).
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from mupc_sweep.hessian import activity_hessian, batch_spectrum
from mupc_sweep.pcn import forward, init_weights, scalings, to_layers

D_IN, N_CLASSES = 784, 10


def inputs(width: int, depth: int, examples: int, activation: str, param: str):
    """Weights, feedforward activities, x and y columns, and the scalings of one network."""
    k_w, k_x, k_y = jax.random.split(jax.random.PRNGKey(0), 3)
    w = init_weights(k_w, param, D_IN, width, depth, N_CLASSES, jnp.float64)
    s = scalings(param, D_IN, width, depth)
    x = jax.random.normal(k_x, (D_IN, examples), jnp.float64)
    y = jax.nn.one_hot(jax.random.randint(k_y, (examples,), 0, N_CLASSES), N_CLASSES, dtype=jnp.float64).T
    return w, forward(w, x, s, activation)[0], x, y, s


def bench(width: int, depth: int, examples: int, lanczos_steps: int, activation: str, param: str) -> dict:
    w, z, x, y, s = inputs(width, depth, examples, activation, param)
    key = jax.random.PRNGKey(1)
    start = time.perf_counter()
    compiled = batch_spectrum.lower(w, z, x, y, s, activation, lanczos_steps, key).compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        result = jax.block_until_ready(compiled(w, z, x, y, s, key))
        times.append(time.perf_counter() - start)
    return dict(
        N=width, H=depth, B=examples, k=lanczos_steps, compile_s=compile_s, run_s=float(np.median(times)),
        xla_mib=(memory.argument_size_in_bytes + memory.temp_size_in_bytes) / 2**20,
        rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
        lambda_min=float(result.lambda_min[0]), lambda_max=float(result.lambda_max[0]),
        condition=float(result.condition[0]), residual_min=float(result.residual_min[0]),
        residual_max=float(result.residual_max[0]),
    )


def dense_check(width: int, depth: int, lanczos_steps: int, activation: str, param: str) -> dict:
    """Lanczos extremes against the dense spectrum of one example."""
    w, z, x, y, s = inputs(width, depth, 1, activation, param)
    start = time.perf_counter()
    eigenvalues = np.linalg.eigvalsh(activity_hessian(
        [np.asarray(a) for a in to_layers(w)], np.asarray(x[:, 0]), np.asarray(y[:, 0]), activation=activation,
        param=param))
    dense_s = time.perf_counter() - start
    result = batch_spectrum(w, z, x, y, s, activation, lanczos_steps, jax.random.PRNGKey(1))
    return dict(N=width, H=depth, k=lanczos_steps, dense_s=dense_s, dense_min=eigenvalues[0],
                dense_max=eigenvalues[-1], lanczos_min=float(result.lambda_min[0]),
                lanczos_max=float(result.lambda_max[0]), dense_condition=abs(eigenvalues[-1]) / abs(eigenvalues[0]),
                lanczos_condition=float(result.condition[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--examples", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--lanczos-steps", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--param", default="mupc")
    parser.add_argument("--no-dense-check", action="store_true")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    print(f"{jax.devices()[0].device_kind}, {args.activation} {args.param}, float64")
    for examples in args.examples:
        for lanczos_steps in args.lanczos_steps:
            r = bench(args.width, args.depth, examples, lanczos_steps, args.activation, args.param)
            print(f"N={r['N']} H={r['H']} (H·N={r['N'] * r['H']}) B={r['B']} k={r['k']}: "
                  f"compile {r['compile_s']:.1f} s, "
                  f"run {r['run_s']:.2f} s ({r['run_s'] / r['B']:.2f} s per example), XLA {r['xla_mib']:.0f} MiB, "
                  f"peak RSS {r['rss_mib']:.0f} MiB; λ_min {r['lambda_min']:.5g} (±{r['residual_min']:.1e}), "
                  f"λ_max {r['lambda_max']:.5g} (±{r['residual_max']:.1e}), κ {r['condition']:.5g}")
    if not args.no_dense_check:
        c = dense_check(64, 16, 256, args.activation, args.param)
        print(f"dense check N={c['N']} H={c['H']} k={c['k']}: dense ({c['dense_s']:.1f} s) λ [{c['dense_min']:.6g}, "
              f"{c['dense_max']:.6g}] κ {c['dense_condition']:.6g}; Lanczos λ [{c['lanczos_min']:.6g}, "
              f"{c['lanczos_max']:.6g}] κ {c['lanczos_condition']:.6g}")


if __name__ == "__main__":
    main()
