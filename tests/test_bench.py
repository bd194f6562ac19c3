"""The trainer benchmark's plumbing on a tiny cell (figures, not timings, are checked)."""

import importlib.util
from pathlib import Path

import numpy as np


_path = Path(__file__).parent.parent / "benchmarks" / "bench_trainer.py"
_spec = importlib.util.spec_from_file_location("bench_trainer", _path)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_bench_cell_reports_rates_consistent_with_the_flop_model(monkeypatch):
    small_matmul = bench.matmul_gflops
    monkeypatch.setattr(bench, "matmul_gflops", lambda: small_matmul(n=256, repeats=1))
    r = bench.bench_cell(16, 3, 2, target_s=1e-4, chunk=None)
    # The products of one point-step of N = 16, H = T = 3 on 784 inputs and 10 classes, per example,
    # counted by hand (M_in = 2·784·16, M_h = 2·2·16², M_out = 2·16·10): feedforward M_in + M_h + M_out;
    # inference step 1 M_out, step 2 on the top 2 layers 2·2·16² + 2·M_out, step 3 on all three
    # 2·2·2·16² + 2·M_out; errors at the end M_h + M_out; weight gradients M_in + M_h + M_out.
    m_in, m_h, m_out = 2 * 784 * 16, 2 * 2 * 16**2, 2 * 16 * 10
    by_hand = 2 * (m_in + m_h + m_out) + m_out + (4 * 16**2 + 2 * m_out) + (8 * 16**2 + 2 * m_out) + m_h + m_out
    assert r["steps"] == 3 and r["points"] == 2
    np.testing.assert_allclose(r["gflops"] * 1e9 * r["ms_per_point_step"] / 1e3, by_hand * bench.BATCH, rtol=1e-9)
    assert r["matmul"] > 0 and r["products"] > 0


def test_step_floor_times_products_adam_and_transposes(monkeypatch):
    monkeypatch.syspath_prepend(str(_path.parent))
    floor_spec = importlib.util.spec_from_file_location("step_floor", _path.parent / "step_floor.py")
    floor = importlib.util.module_from_spec(floor_spec)
    floor_spec.loader.exec_module(floor)

    step, gradient_descent, run = floor.step_ms_with_and_without_adam(16, 3, 3)
    assert step > 0 and gradient_descent > 0
    assert floor.product_ms(run, 3) > 0  # the profiler's kernel names still match
    assert floor.transpose_ms(16, 3) > 0

    # The program without Adam really steps by the raw gradient: its losses part from Adam's after step 1.
    adam_losses = np.asarray(run()[0])
    gd_losses = np.asarray(floor.cell_program(16, 3, 3, floor.optax.identity())()[0])
    assert adam_losses[0, 0] == gd_losses[0, 0]
    assert not np.allclose(adam_losses[0, 1:], gd_losses[0, 1:])
