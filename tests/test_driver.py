"""The driver without Ray: records, resume, growth, transfer sweeps in stages, the lock, damaged
files and failures, through the in-process executor (Ray is tested where it adds something, in
test_sweep.py). Small real trainings on a learnable stand-in for MNIST."""

import dataclasses
import os
import signal
import socket
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import learnable_mnist, md5s, write
from typer.testing import CliRunner

import mupc_sweep
from mupc_sweep import data
from mupc_sweep.cli import app
from mupc_sweep.driver import InProcess, plan_sweep, run_sweep
from mupc_sweep.errors import SpecError
from mupc_sweep.lock import SweepLocked
from mupc_sweep.store import OPTIONAL_COLUMNS, RECORD_COLUMNS, POINT_KEY, left_out, load_records, prepare, write_cell

SPEC = {
    "name": "tiny",
    "dataset": "mnist",
    "network": {"width": 4, "depth": [2, 3], "activation": "tanh"},
    "training": {"batch_size": 10, "epochs": 1, "eval_every": 100, "seeds": [0, 1]},
    "grid": {"eta": [0.1, 0.01], "beta": [0.5]},
    "curves_every": 5,
}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A spec file, a data directory (200 training images a small network learns), and a results path."""
    raw = learnable_mnist(0, n_train=200, n_test=50)
    monkeypatch.setitem(data.MD5, "mnist", md5s(raw))
    monkeypatch.setenv("MUPC_SWEEP_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    return spec, write(tmp_path / "idx", raw), tmp_path / "results"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def run(spec, data_dir, results, **options):
    return run_sweep(spec, results=results, data_dir=data_dir, executor=InProcess(), progress=False, **options)


def snapshot(results):
    """Every file under results with its bytes."""
    return {p.relative_to(results): p.read_bytes() for p in results.rglob("*") if p.is_file()}


def test_run_writes_records_a_rerun_trains_nothing_and_status_tells_the_best(setup):
    spec, data_dir, results = setup
    first = invoke("run", spec, "--results", results, "--data-dir", data_dir, "--in-process")
    assert first.exit_code == 0, first.output
    files = sorted((results / "tiny" / "records").glob("*.parquet"))
    assert [f.name for f in files] == ["tanh-mupc-pc-N4-H2-T2.s0-e0.1-b0.5.parquet",
                                       "tanh-mupc-pc-N4-H3-T3.s0-e0.1-b0.5.parquet"]  # the cell and its first point
    assert sorted(p.name for p in (results / "tiny" / "curves").glob("*.parquet")) == [f.name for f in files]
    table = load_records(results)
    assert sorted(table.columns) == sorted([*RECORD_COLUMNS, *OPTIONAL_COLUMNS]) and not table.extension.any()
    assert (table.inference_residual > 0).all()  # measured for every PC point
    assert len(table) == 2 * 2 * 2 and not table.duplicated(POINT_KEY).any() and table.steps_run.max() == 20
    before = snapshot(results)
    second = invoke("run", spec, "--results", results, "--data-dir", data_dir, "--in-process")
    assert second.exit_code == 0 and "all 2 cells done" in second.stderr
    assert snapshot(results) == before

    shown = invoke("status", "--results", results)
    assert shown.exit_code == 0 and "tiny: 2/2 cells done, 8/8 points (seed, η, β) done, 0 pending" in shown.stdout
    cell = table[table.cell_id == "tanh-mupc-pc-N4-H2-T2"]
    means = cell.groupby("eta").agg(loss=("min_train_loss", "mean"), ok=("status", lambda s: (s == "ok").all()))
    best = means[means.ok].loss.idxmin()  # the grid point with every seed ok and the lowest seed-mean loss
    assert (f"tanh-mupc-pc-N4-H2-T2: best η={best:g} β=0.5 min loss {means.loss[best]:.4g} "
            f"({int(means.ok.sum())}/2 grid points ok)") in shown.stdout
    files[1].unlink()
    shown = invoke("status", "--results", results)
    assert "1/2 cells done, 4/8 points (seed, η, β) done, 4 pending" in shown.stdout
    assert "tanh-mupc-pc-N4-H3-T3: pending" in shown.stdout
    assert invoke("status", "--results", results / "none").exit_code == 2


def test_a_sweep_grows_without_losing_or_retraining_a_point(setup):
    """More η, a seed and a depth: earlier files stay byte for byte, and each new point trains once."""
    spec, data_dir, results = setup
    small = {**SPEC, "network": {**SPEC["network"], "depth": [2]}, "training": {**SPEC["training"], "seeds": [0]}}
    first = run(small, data_dir, results)
    assert first.trained == 2 and first.complete
    before = snapshot(results / "tiny" / "records")
    grown = {**SPEC, "grid": {"eta": [0.5, 0.1, 0.01], "beta": [0.5]}}  # + η 0.5, seed 1, depth 3
    second = run(grown, data_dir, results)
    assert second.trained == 2 * 3 * 2 - 2 and second.complete
    after = snapshot(results / "tiny" / "records")
    assert all(after[name] == content for name, content in before.items())
    records = load_records(results)
    assert len(records) == 12 and not records.duplicated(POINT_KEY).any()
    history = yaml.safe_load((results / "tiny" / "spec_history.yaml").read_text())
    assert [entry["spec"]["grid"]["eta"] for entry in history] == [[0.1, 0.01], [0.5, 0.1, 0.01]]
    kept = yaml.safe_load((results / "tiny" / "spec.yaml").read_text())
    assert kept["spec"]["network"]["depth"] == [2, 3]


def test_removing_values_deletes_nothing_and_analysis_follows_the_spec(setup):
    spec, data_dir, results = setup
    run(SPEC, data_dir, results)
    before = snapshot(results / "tiny" / "records")
    narrowed = {**SPEC, "grid": {"eta": [0.1], "beta": [0.5]}, "network": {**SPEC["network"], "depth": [2]}}
    again = run(narrowed, data_dir, results)
    assert again.trained == 0 and snapshot(results / "tiny" / "records") == before
    records = load_records(results)
    assert set(records.eta) == {0.1} and set(records.depth) == {2} and len(records) == 2
    shown = invoke("status", "--results", results).stdout
    assert ("tiny: 1/1 cells done, 2/2 points (seed, η, β) done, 0 pending; 6 records outside the spec (kept, not "
            "analysed)") in shown
    assert "tanh-mupc-pc-N4-H3-T3: outside the spec: 4 records kept" in shown


def test_a_changed_setting_is_refused_naming_it_unless_restarted(setup):
    spec, data_dir, results = setup
    run(SPEC, data_dir, results)
    before = snapshot(results)
    spec.write_text(yaml.safe_dump({**SPEC, "training": {**SPEC["training"], "epochs": 2}}))
    refused = invoke("run", spec, "--results", results, "--data-dir", data_dir, "--in-process")
    assert refused.exit_code == 2, refused.output
    assert "training.epochs was 1, now 2" in refused.stderr and "--restart" in refused.stderr
    assert "restart=True" not in refused.stderr  # the library's words for it, turned into the option's
    assert snapshot(results) == before
    with pytest.raises(SpecError, match=r"training\.epochs was 1, now 2.*pass restart=True"):
        run({**SPEC, "training": {**SPEC["training"], "epochs": 2}}, data_dir, results)
    restarted = invoke("run", spec, "--results", results, "--data-dir", data_dir, "--in-process", "--restart")
    assert restarted.exit_code == 0 and set(load_records(results).epochs) == {2.0}


@pytest.mark.parametrize("spec_text,message", [
    ("network: [unclosed\n", "is not valid YAML"),
    (yaml.safe_dump({**SPEC, "training": {**SPEC["training"], "batch_size": 256}}), "gives no training step with 200"),
    (yaml.safe_dump({**SPEC, "network": {**SPEC["network"], "depth": [0]}}), "network.depth[0]: must be an integer"),
    (yaml.safe_dump({**SPEC, "training": {**SPEC["training"], "epochs": 1e-9}}), "gives no training step"),
    (yaml.safe_dump({**SPEC, "grid": {"eta": [], "beta": [1]}}), "grid.eta: must not be an empty list"),
    (yaml.safe_dump({**SPEC, "grid": {**SPEC["grid"], "targets": "patch", "patch": 0}}), "grid.patch: must be"),
    (yaml.safe_dump({**SPEC, "grid": {**SPEC["grid"], "extend": -1}}), "grid.extend: must be an integer of at least 0"),
    (yaml.safe_dump({**SPEC, "network": {**SPEC["network"], "depth": 2}, "grid": {**SPEC["grid"], "targets": "patch"}}),
     "grid.targets: patch needs exactly one size axis"),
])
def test_bad_specs_exit_2_and_create_nothing(setup, spec_text, message):
    spec, data_dir, results = setup
    spec.write_text(spec_text)
    for extra in ([], ["--dry-run"]) if "200" not in message else ([],):  # a dry run plans for the real dataset
        result = invoke("run", spec, "--results", results, "--data-dir", data_dir, "--in-process", *extra)
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and not results.exists()


def test_bad_options_name_the_option(setup, tmp_path):
    spec, data_dir, results = setup
    (tmp_path / "afile").write_text("")
    for args, message in [(["--results", tmp_path / "afile"], "--results: "),
                          (["--points-per-trial", "0"], "--points-per-trial: must be an integer of at least 1"),
                          (["--gpus-per-trial", "2"], "--gpus-per-trial: a trial trains on one device"),
                          (["--slots", "0", "--dry-run"], "--slots: must be an integer of at least 1")]:
        result = invoke("run", spec, "--data-dir", data_dir, "--in-process", *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
    assert invoke("run", tmp_path / "nope.yaml", "--results", results).exit_code == 2 and not results.exists()


def test_every_command_tells_the_same_story_about_an_untrusted_file_and_analysis_goes_on(setup):
    """A records file that is unreadable, lacks columns, is empty, holds a point twice, was edited
    after it was written, or belongs to another sweep: `status`, `transfer`, `plot` and
    `load_records` name it with what to do and go on with the cells they can trust; the next `run`
    moves it aside (nothing lost) and retrains its points."""
    spec, data_dir, results = setup
    run(SPEC, data_dir, results)
    good, bad = sorted((results / "tiny" / "records").glob("*.parquet"))
    whole = pd.read_parquet(bad)
    edited = whole.assign(min_train_loss=whole.min_train_loss / 10)  # a hand edit through pandas
    for content, problem in [
        (None, "is not a readable records file"),
        (pd.DataFrame({"eta": [0.1], "status": ["ok"]}), "lacks the columns sweep, cell_id, dataset, activation and 20 more"),
        (whole.iloc[:0], "holds no rows"),
        (pd.concat([whole, whole]), "holds a point twice"),
        (edited, "was edited after it was written (its checksum no longer matches its values)"),
        (whole.assign(sweep="other"), "holds records of sweep 'other', not 'tiny'"),
    ]:
        bad.unlink(missing_ok=True)
        if content is None:
            bad.write_text("junk")
        elif content is edited:  # pandas keeps the schema's metadata, checksum included, and rewrites the values
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(content, preserve_index=False)
            pq.write_table(table.replace_schema_metadata(pq.read_schema(good).metadata), bad)
        else:
            content.to_parquet(bad)
        records = load_records(results)
        assert set(records.cell_id) == {"tanh-mupc-pc-N4-H2-T2"}, problem  # the trusted cell goes on
        line = f"tiny: tanh-mupc-pc-N4-H3-T3: records file {bad.name} {problem}"
        assert any(l.startswith(line) for l in left_out(results)), (problem, left_out(results))
        shown = invoke("status", "--results", results)
        assert shown.exit_code == 0 and "tiny: 1/2 cells done, 4/8 points (seed, η, β) done, 4 pending" in shown.stdout
        assert f"records file {bad.name} {problem}" in shown.stdout
        assert "(the next run moves it aside and retrains its points)" in shown.stdout
        told = invoke("transfer", "--from", "2", "--to", "3", "--results", results)
        assert told.exit_code == 2 and "Error: --axis: the records vary no depths" in told.stderr  # H = 3 is out
        assert f"left out: {line}" in told.stderr
        plotted = invoke("plot", "--results", results)
        assert plotted.exit_code == 0 and f"left out, not drawn: {line}" in plotted.stderr
    rerun = run(SPEC, data_dir, results)
    assert rerun.trained == 4 and len(load_records(results)) == 8  # the untrusted file moved aside, its points retrained
    assert (results / "tiny" / "damaged" / bad.name).exists()
    (results / "tiny" / "spec.yaml").write_text("spec_hash: [")
    result = invoke("run", spec, "--results", results, "--data-dir", data_dir, "--in-process")
    assert result.exit_code == 2 and f"{results / 'tiny' / 'spec.yaml'} is unreadable" in result.stderr
    assert "--restart" in result.stderr and "tiny: unreadable spec.yaml" in invoke("status", "--results", results).stdout


def test_a_stray_file_of_no_cell_is_named_and_blocks_nothing(setup):
    spec, data_dir, results = setup
    run(SPEC, data_dir, results)
    (results / "tiny" / "records" / "relu-sp-pc-N9-H9-T9.parquet").write_bytes(b"random bytes")
    shown = invoke("status", "--results", results).stdout
    assert "tiny: 2/2 cells done" in shown and "records file relu-sp-pc-N9-H9-T9.parquet is not a readable" in shown
    assert len(load_records(results)) == 8
    assert any("relu-sp-pc-N9-H9-T9.parquet" in line for line in left_out(results))
    run(SPEC, data_dir, results)
    assert (results / "tiny" / "damaged" / "relu-sp-pc-N9-H9-T9.parquet").exists() and not left_out(results)


def test_records_without_their_kept_spec_are_refused_unless_restarted(setup):
    spec, data_dir, results = setup
    run(SPEC, data_dir, results)
    (results / "tiny" / "spec.yaml").unlink()
    refused = invoke("run", spec, "--results", results, "--data-dir", data_dir, "--in-process")
    assert refused.exit_code == 2 and "holds records but no spec.yaml" in refused.stderr
    assert not (results / "tiny" / "spec.yaml").exists()
    assert "tiny: records but no spec.yaml" in invoke("status", "--results", results).stdout
    assert invoke("run", spec, "--results", results, "--restart", "--dry-run").exit_code == 0


def test_a_failing_trial_is_retried_noted_and_the_others_still_run(setup, monkeypatch):
    spec, data_dir, results = setup
    from mupc_sweep import trial as trial_module

    real, attempts = trial_module.run_trial, []

    def failing_for_depth_3(spec, trial, *args, **kwargs):
        attempts.append(trial.cell.depth)
        if trial.cell.depth == 3:
            raise FloatingPointError("boom")
        return real(spec, trial, *args, **kwargs)

    monkeypatch.setattr(trial_module, "run_trial", failing_for_depth_3)
    outcome = run(SPEC, data_dir, results)
    assert attempts.count(3) == 3 and attempts.count(2) == 1  # tried, then retried twice
    assert list(outcome.failed.values()) == ["FloatingPointError: boom"] and not outcome.complete
    assert outcome.left_out == ["tiny: tanh-mupc-pc-N4-H3-T3: 0 of 4 points (run the sweep again to train the rest)"]
    assert set(outcome.records.depth) == {2}
    shown = invoke("status", "--results", results).stdout
    assert "tanh-mupc-pc-N4-H3-T3: pending; failed: FloatingPointError: boom (a rerun retries it)" in shown


def test_a_cell_whose_points_all_diverge_is_recorded_and_the_sweep_goes_on(setup):
    spec, data_dir, results = setup
    # β = 1e10 blows a linear network's PC inference up at the first step; bp ignores β and trains.
    raw = {**SPEC, "network": {**SPEC["network"], "depth": 3, "activation": "linear", "algorithm": ["pc", "bp"]},
           "grid": {**SPEC["grid"], "beta": [1e10]}}
    outcome = run(raw, data_dir, results)
    table = outcome.records.set_index("algorithm")
    assert outcome.complete and (table.loc["pc", "status"] == "diverged").all()
    bp = table.loc["bp"]  # trained to the end; shorter than eval_every, so judged at the final evaluation
    assert (bp.steps_run == 20).all() and (bp.status == np.where(bp.test_acc_final < 15, "no_learning", "ok")).all()
    assert bp.beta.isna().all()
    status = invoke("status", "--results", results).stdout
    assert "2/2 cells done" in status and "linear-mupc-pc-N4-H3-T3: no valid point" in status


RECORDED = ["min_train_loss", "final_train_loss", "step_of_min", "steps_run", "status", "test_acc_final", "test_acc_max"]


def test_a_points_record_does_not_depend_on_its_shard(setup, tmp_path):
    """The same cells trained whole and as one-point shards: every per-point record agrees exactly
    (on a CPU points run one at a time, so the arithmetic is the same too)."""
    spec, data_dir, results = setup
    whole = run(SPEC, data_dir, tmp_path / "whole", points_per_trial=100)
    sharded = run(SPEC, data_dir, results, points_per_trial=1)
    assert len(list((results / "tiny" / "records").glob("*.parquet"))) == 8
    a, b = (o.records.set_index(POINT_KEY).sort_index() for o in (whole, sharded))
    assert len(a) == 8 and (a.index == b.index).all()
    pd.testing.assert_frame_equal(a[RECORDED], b[RECORDED])
    curves = mupc_sweep.load_curves(results, "tiny")
    assert len(curves.groupby(["cell_id", "seed", "eta"])) == 8  # the curves follow their shards


class Spy(InProcess):
    """The in-process executor, noting whether it was ever started, and stopping after `trials`
    trials as a killed driver would."""

    def __init__(self, trials: int | None = None) -> None:
        self.started, self.trials = False, trials

    def start(self, spec):
        self.started = True
        return super().start(spec)

    def run(self, spec, data, run):
        if self.trials is None:
            return super().run(spec, data, run)
        ready = run.ready()[: self.trials]
        from mupc_sweep.trial import run_trial

        for trial in ready:
            run.finish(trial.stem, *run_trial(spec, trial, data))


def test_a_second_driver_is_refused_before_it_starts_anything(setup):
    spec, data_dir, results = setup
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (results / "tiny").mkdir(parents=True)
        (results / "tiny" / "driver.lock").write_text(
            f'{{"pid": {holder.pid}, "host": "{socket.gethostname()}", "started": "2026-01-01T00:00:00+00:00"}}')
        before = snapshot(results)
        spy = Spy()
        with pytest.raises(SweepLocked, match=f"is being run by another driver \\(pid {holder.pid} on "):
            run_sweep(SPEC, results=results, data_dir=data_dir, executor=spy, progress=False)
        assert not spy.started and snapshot(results) == before
        refused = invoke("run", spec, "--results", results, "--data-dir", data_dir, "--in-process")
        assert refused.exit_code == 2 and "started 2026-01-01" in refused.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert run(SPEC, data_dir, results).trained == 8  # the holder is gone: its lock is stale and taken over


TRANSFER = {**SPEC, "network": {**SPEC["network"], "depth": [2, 3, 4]}, "training": {**SPEC["training"], "seeds": [0]},
            "grid": {"eta": [1.0, 0.1, 0.01, 0.001], "beta": [2.0, 0.5, 0.1, 0.02], "targets": "patch"}}


def test_a_transfer_sweep_trains_the_grid_at_the_source_patches_above_and_resumes_at_its_stage(setup):
    spec, data_dir, results = setup
    spy = Spy(trials=1)  # stops after the source's trial, as a driver killed there would
    run_sweep(TRANSFER, results=results, data_dir=data_dir, executor=spy, progress=False)
    source_files = snapshot(results / "tiny" / "records")
    assert len(source_files) == 1
    shown = invoke("status", "--results", results).stdout
    assert "tiny: 1/3 cells done, 16/34 points (seed, η, β) done, 18 pending; 2 cells are patches (transfer sweep)" in shown
    assert "tanh-mupc-pc-N4-H2-T2: [source] best" in shown and "tanh-mupc-pc-N4-H4-T4: [patch] pending" in shown
    resumed = run(TRANSFER, data_dir, results)
    assert resumed.complete and all(snapshot(results / "tiny" / "records")[n] == b for n, b in source_files.items())
    records = resumed.records
    assert not records.duplicated(POINT_KEY).any()
    source = records[records.depth == 2]
    assert len(source) == 16  # every grid point
    means = source.groupby(["eta", "beta"]).min_train_loss.mean()
    best_eta, best_beta = means.idxmin()
    for depth in (3, 4):  # a patch containing the source's optimum, at least 3 × 3 unless at the grid's edge
        patch = records[records.depth == depth]
        assert ((patch.eta == best_eta) & (patch.beta == best_beta)).sum() == 1
        assert 4 <= len(patch) < 16 or patch.eta.nunique() * patch.beta.nunique() == 16
    status = mupc_sweep.sweep_status(results)
    assert list(status.role) == ["source", "patch", "patch"] and status.complete.all()


def test_the_dry_run_of_a_transfer_sweep_shows_the_source_now_and_the_patches_least_and_most(setup):
    spec, _, results = setup
    plan = plan_sweep(TRANSFER, results=results, slots=1)
    assert list(plan.role) == ["source", "patch", "patch"]
    assert list(plan.points) == [16, 0, 0]
    assert list(plan.later_least) == [0, 9, 9] and list(plan.later_most) == [0, 16, 16]
    assert plan.attrs["wall_s"] < plan.attrs["full_grid_s"] < plan.attrs["wall_most_s"] + 1e-9
    spec.write_text(yaml.safe_dump(TRANSFER))
    shown = invoke("run", spec, "--results", results, "--dry-run", "--slots", "1")
    assert shown.exit_code == 0 and "later stages" in shown.stdout and "18 to 32 points" in shown.stdout
    assert "the full grid at every size, for comparison" in shown.stdout and not results.exists()


def test_partial_cells_are_left_out_of_the_records_and_named(setup):
    spec, data_dir, results = setup
    outcome = run(SPEC, data_dir, results, points_per_trial=1)
    files = sorted((results / "tiny" / "records").glob("tanh-mupc-pc-N4-H3-T3.*.parquet"))
    for f in files[:2]:
        f.unlink()
    records = load_records(results)
    assert set(records.cell_id) == {"tanh-mupc-pc-N4-H2-T2"} and len(records) == 4
    assert left_out(results) == [
        "tiny: tanh-mupc-pc-N4-H3-T3: 2 of 4 points (run the sweep again to train the rest)"]
    shown = invoke("status", "--results", results)
    assert "1/2 cells done, 6/8 points (seed, η, β) done, 2 pending" in shown.stdout
    assert "tanh-mupc-pc-N4-H3-T3: 2/4 points done, 2 pending" in shown.stdout
    plotted = invoke("plot", "--results", results)
    assert plotted.exit_code == 0 and "left out, not drawn: tiny: tanh-mupc-pc-N4-H3-T3: 2 of 4" in plotted.stderr
    twice = outcome.records[outcome.records.cell_id == "tanh-mupc-pc-N4-H2-T2"].iloc[:1]
    write_cell(results, "tiny", "tanh-mupc-pc-N4-H2-T2", twice.drop(columns=["sweep", "cell_id"]),
               stem="tanh-mupc-pc-N4-H2-T2.copy")  # a copy from a merged results folder
    assert load_records(results).empty  # neither cell can be analysed now; both say why
    seed, eta = int(twice.seed.iloc[0]), float(twice.eta.iloc[0])
    assert (f"tiny: tanh-mupc-pc-N4-H2-T2: a point is held in two records files (tanh-mupc-pc-N4-H2-T2.copy.parquet, "
            f"tanh-mupc-pc-N4-H2-T2.s{seed}-e{eta!r}-b0.5.parquet; merged results folders?)") in left_out(results)[0]
    assert "a point is held in two records files" in invoke("status", "--results", results).stdout


def test_prepare_removes_damaged_files_and_old_failure_notes(setup):
    spec, data_dir, results = setup
    run(SPEC, data_dir, results)
    damaged = results / "tiny" / "records" / "tanh-mupc-pc-N4-H3-T3.parquet"
    damaged.write_text("junk")
    (results / "tiny" / "failed").mkdir()
    (results / "tiny" / "failed" / "x.txt").write_text("ValueError: boom")
    prepare(mupc_sweep.load_spec(SPEC), results, restart=False)  # as a driver holding the lock does
    assert not damaged.exists() and len(list((results / "tiny" / "records").glob("*.parquet"))) == 2
    assert not (results / "tiny" / "failed").exists()


def test_records_are_written_readable_by_others_as_the_umask_allows_and_never_over_another(tmp_path):
    previous = os.umask(0o022)
    try:
        path = write_cell(tmp_path, "s", "c", pd.DataFrame({"eta": [0.1]}))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with pytest.raises(FileExistsError):
        write_cell(tmp_path, "s", "c", pd.DataFrame({"eta": [0.2]}))
    assert pd.read_parquet(path).eta.tolist() == [0.1] and not list(path.parent.glob(".*.tmp"))


def test_the_outcome_is_short_and_says_what_happened(setup):
    _, data_dir, results = setup
    outcome = run(SPEC, data_dir, results)
    assert repr(outcome).startswith("SweepOutcome(tiny: complete, 8 records, 8 points trained in ")
    assert len(repr(outcome)) < 120 and isinstance(outcome.records, pd.DataFrame)
    assert dataclasses.is_dataclass(outcome)


def test_a_trial_too_big_for_this_machine_is_named_by_the_dry_run_and_refused_by_run(setup):
    spec, data_dir, results = setup
    huge = {**SPEC, "network": {**SPEC["network"], "width": 1_000_000_000, "depth": [2]}}
    spec.write_text(yaml.safe_dump(huge))
    planned = invoke("run", spec, "--results", results, "--dry-run")
    assert planned.exit_code == 0 and "WARNING: network: a trial of cell tanh-mupc-pc-N1000000000-H2-T2 needs about" in \
        planned.stdout and "more than this machine's memory" in planned.stdout and "`run` refuses" in planned.stdout
    refused = invoke("run", spec, "--results", results, "--data-dir", data_dir, "--in-process")
    assert refused.exit_code == 2 and "Error: network: a trial of cell tanh-mupc-pc-N1000000000-H2-T2" in refused.stderr
    assert not results.exists()


def test_ctrl_c_at_any_moment_keeps_what_finished_and_says_how_to_go_on(setup, monkeypatch):
    spec, data_dir, results = setup
    from mupc_sweep import driver
    from mupc_sweep import trial as trial_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    real_load = driver.load_dataset
    monkeypatch.setattr(driver, "load_dataset", interrupted)  # before any trial
    early = invoke("run", spec, "--results", results, "--data-dir", data_dir, "--in-process")
    assert early.exit_code == 130 and "Interrupted. Every trial that finished is kept under" in early.stderr
    assert "run the same command again to train the rest" in early.stderr
    monkeypatch.setattr(driver, "load_dataset", real_load)

    real, calls = trial_module.run_trial, []

    def stopped_in_the_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trial_module, "run_trial", stopped_in_the_second_trial)
    middle = invoke("run", spec, "--results", results, "--data-dir", data_dir, "--in-process")
    assert middle.exit_code == 1 and "1 cells are not done; run the same command again" in middle.stderr
    kept = load_records(results)
    assert len(kept) == 4 and kept.cell_id.nunique() == 1  # the first trial's points, kept
    other = ({"tanh-mupc-pc-N4-H2-T2", "tanh-mupc-pc-N4-H3-T3"} - set(kept.cell_id)).pop()
    assert f"left out: tiny: {other}: 0 of 4 points (run the sweep again to train the rest)" in middle.stderr
