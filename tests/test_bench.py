"""The trainer benchmark's plumbing on a tiny cell (figures, not timings, are checked)."""

import importlib.util
from pathlib import Path

import numpy as np

from mupc_sweep.cost import step_flops

_path = Path(__file__).parent.parent / "benchmarks" / "bench_trainer.py"
_spec = importlib.util.spec_from_file_location("bench_trainer", _path)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_bench_cell_reports_rates_consistent_with_the_flop_model(monkeypatch):
    small_matmul = bench.matmul_gflops
    monkeypatch.setattr(bench, "matmul_gflops", lambda: small_matmul(n=256, repeats=1))
    r = bench.bench_cell(16, 3, 2, target_s=1e-4, chunk=None)
    flops = step_flops(
        algorithm="pc", d_in=bench.D_IN, width=16, depth=3, d_out=bench.N_CLASSES, inference_steps=3,
        batch_size=bench.BATCH,
    )
    assert r["steps"] == 3 and r["points"] == 2
    np.testing.assert_allclose(r["gflops"] * 1e9 * r["ms_per_point_step"] / 1e3, flops, rtol=1e-9)
    assert r["matmul"] > 0 and r["products"] > 0


def test_step_floor_times_products_adam_and_transposes_and_restores_the_optimiser(monkeypatch):
    from mupc_sweep import step as step_module

    monkeypatch.syspath_prepend(str(_path.parent))
    floor_spec = importlib.util.spec_from_file_location("step_floor", _path.parent / "step_floor.py")
    floor = importlib.util.module_from_spec(floor_spec)
    floor_spec.loader.exec_module(floor)
    adam = step_module.ADAM

    step, gradient_descent, run = floor.step_ms_with_and_without_adam(16, 3, 3)
    assert step_module.ADAM is adam
    assert step > 0 and gradient_descent > 0
    assert floor.product_ms(run, 3) > 0  # the profiler's kernel names still match
    assert floor.transpose_ms(16, 3) > 0

    # The program without Adam really steps by the raw gradient: its losses part from Adam's after step 1.
    adam_losses = np.asarray(run()[0])
    monkeypatch.setattr(step_module, "ADAM", floor.optax.identity())
    gd_losses = np.asarray(floor.cell_program(16, 3, 3)()[0])
    assert adam_losses[0, 0] == gd_losses[0, 0]
    assert not np.allclose(adam_losses[0, 1:], gd_losses[0, 1:])
