"""Trials as shards of cells: splitting, automatic sizes, the schedule's wall time, and the dry run."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mupc_sweep.cell import CellConfig
from mupc_sweep.cli import app
from mupc_sweep.cost import TRIAL_START_S, RATES, eval_flops, point_flops, point_seconds, rate, step_flops
from mupc_sweep.driver import plan
from mupc_sweep.regions import region_points, grid_region
from mupc_sweep.shards import MIN_GPU_POINTS, plan_trials, shard_count, split, wall_time
from mupc_sweep.spec import load_spec

SWEEPS = Path(__file__).parent.parent / "sweeps"


def test_split_makes_runs_of_consecutive_points_of_near_equal_size():
    assert split(list(range(10)), 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert split([2, 5, 7], 1) == [[2, 5, 7]]
    for n_points in range(1, 30):
        for n in range(1, n_points + 1):
            shards = split(list(range(n_points)), n)
            assert sum(shards, []) == list(range(n_points)) and len(shards) == n
            assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_count_prefers_equal_shards_and_respects_the_minimum_size():
    assert shard_count(132, 1000.0, 100.0, min_points=1) == 11  # ten would do; eleven divides 132
    assert shard_count(132, 1000.0, 10.0, min_points=11) == 12  # a hundred wanted, at least 11 points each
    assert shard_count(7, 10.0, 100.0, min_points=1) == 1
    assert shard_count(13, 500.0, 100.0, min_points=1) == 5  # 13 is prime: five shards of 3 or 2


def test_wall_time_of_a_schedule_by_hand():
    # two slots, longest first: 5 | 4, then 3 on the slot free at 4, then 2 on the one free at 5
    assert wall_time([5, 4, 3, 2], 2) == 7
    assert wall_time([5, 4, 3, 2], 1) == 14
    assert wall_time([5, 4, 3, 2], 8) == 5


def cells(*depths, width=64):
    return [CellConfig(width=width, depth=h, epochs=0.25) for h in depths]


def points(n, seed=0):
    """n (seed, η, β) points."""
    return [(seed, 10.0 ** -i, 1.0) for i in range(n)]


def test_explicit_points_per_trial_and_one_larger_than_a_cell():
    a, b = cells(4, 8)
    todo = {a: points(12), b: points(3, seed=1)}
    trials = plan_trials(todo, {a: 1.0, b: 2.0}, slots=2, points_per_trial=5, gpu=False)
    assert sorted((t.cell.depth, len(t.points)) for t in trials) == [(4, 4), (4, 4), (4, 4), (8, 3)]
    assert sum((list(t.points) for t in trials if t.cell == a), []) == todo[a]  # runs of consecutive points
    assert [t.seconds for t in trials] == sorted((t.seconds for t in trials), reverse=True)  # longest first
    assert {t.stem for t in trials} == {f"{a.cell_id}.s0-e1.0-b1.0", f"{a.cell_id}.s0-e0.0001-b1.0",
                                        f"{a.cell_id}.s0-e1e-08-b1.0", f"{b.cell_id}.s1-e1.0-b1.0"}
    (whole,) = plan_trials({a: points(12)}, {a: 1.0}, slots=2, points_per_trial=50, gpu=False)
    assert whole.points == tuple(points(12))


def test_automatic_shards_split_the_dominant_cell_on_two_slots():
    big, small = cells(32, 4)
    todo = {big: points(24), small: points(24)}
    seconds = {big: 100.0, small: 5.0}  # the big cell is 2400 s of the 2520 s total
    trials = plan_trials(todo, seconds, slots=2, points_per_trial=None, gpu=False)
    assert len([t for t in trials if t.cell == big]) > 1 and len([t for t in trials if t.cell == small]) == 1
    unsharded = plan_trials(todo, seconds, slots=2, points_per_trial=10**9, gpu=False)
    assert wall_time([t.seconds for t in unsharded], 2) == 2400
    assert wall_time([t.seconds for t in trials], 2) <= 1.2 * 2520 / 2
    # one slot: nothing to gain from shards
    assert len(plan_trials(todo, seconds, slots=1, points_per_trial=None, gpu=False)) == 2


def test_gpu_shards_keep_a_minimum_of_points_and_one_size_per_cell():
    (cell,) = cells(128, width=512)
    trials = plan_trials({cell: points(132)}, {cell: 60.0}, slots=64, points_per_trial=None, gpu=True)
    assert min(len(t.points) for t in trials) >= MIN_GPU_POINTS and len({t.size for t in trials}) == 1


def test_the_papers_depth_sweep_on_eight_gpus_is_within_1_2_of_its_work_over_eight():
    """The schedule the driver runs for sweeps/depth.yaml, at the H100 rates of benchmarks/RESULTS.md."""
    spec = load_spec(SWEEPS / "depth.yaml")
    todo = {c: region_points(spec, c, grid_region(spec, c)) for c in spec.cells()}
    assert all(len(p) == 132 for p in todo.values())
    total = sum(len(p) * point_seconds(c, "gpu") for c, p in todo.items())
    eight = wall_time([t.seconds for t in plan(spec, todo, 8)], 8)
    assert eight <= 1.2 * total / 8
    whole = wall_time([t.seconds for t in plan(spec, todo, 8, sharded=False)], 8)
    h128 = next(c for c in spec.cells() if c.depth == 128)
    assert whole == pytest.approx(132 * point_seconds(h128, "gpu") + TRIAL_START_S + 5.0)  # the H = 128 cell,
    # its start and its compile (5 s on a GPU)


def test_point_cost_is_its_steps_and_evaluations_at_the_nearest_measured_rate():
    cfg = CellConfig(width=512, depth=32, epochs=1.0, eval_every=300)
    steps = cfg.training_steps(60000)
    per_step = step_flops(algorithm="pc", d_in=784, width=512, depth=32, d_out=10, inference_steps=32, batch_size=64)
    evaluations = (steps // 300 + 1) * eval_flops(d_in=784, width=512, depth=32, d_out=10, n_examples=10000)
    assert point_flops(cfg) == steps * per_step + evaluations and evaluations < 0.05 * steps * per_step
    assert rate("gpu", 512, 32) == RATES["gpu"][(512, 32)] and rate("gpu", 600, 30) == RATES["gpu"][(512, 32)]
    assert point_seconds(cfg, "cpu") == pytest.approx(point_flops(cfg) / (RATES["cpu"][(512, 32)] * 1e9))


def test_dry_run_shows_trials_and_wall_time_for_a_number_of_slots(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "network": {"width": 64, "depth": [4, 32]},
                                    "training": {"epochs": 0.25, "seeds": [0, 1]},
                                    "grid": {"eta": [0.1, 0.01, 0.001], "beta": [10, 1, 0.1]}}))
    out = CliRunner().invoke(app, ["run", str(spec), "--results", str(tmp_path / "r"), "--dry-run", "--slots", "4"])
    assert out.exit_code == 0, out.output
    assert "2 cells, 36 points to train now in" in out.stdout and "on 4 slot(s) (--slots)" in out.stdout
    assert "tanh-mupc-pc-N64-H32-T32" in out.stdout and not (tmp_path / "r").exists()
    fixed = CliRunner().invoke(app, ["run", str(spec), "--results", str(tmp_path / "r"), "--dry-run",
                                     "--points-per-trial", "6"])
    assert "in 6 trials" in fixed.stdout
    for bad in (["--points-per-trial", "0"], ["--slots", "0"]):
        refused = CliRunner().invoke(app, ["run", str(spec), "--dry-run", *bad])
        assert refused.exit_code == 2 and f"{bad[0]}: must be an integer of at least 1" in refused.stderr
