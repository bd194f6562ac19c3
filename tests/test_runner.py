"""Running a sweep (embedded Ray): records per cell, resume without duplicates, refusal of a changed spec, status."""

import os
import stat

import pandas as pd
import pytest
import yaml
from conftest import write
from typer.testing import CliRunner

from mupc_sweep import runner
from mupc_sweep.cli import app
from mupc_sweep.errors import ResultsError
from mupc_sweep.report import best_text
from mupc_sweep.spec import parse_spec
from mupc_sweep.store import RECORD_COLUMNS, incomplete_cells, load_records, write_cell, write_failure

SPEC = {
    "name": "tiny",
    "dataset": "mnist",
    "network": {"width": 4, "depth": [2, 3], "activation": "relu"},
    "training": {"batch_size": 2, "epochs": 2, "eval_every": 100, "seeds": [0, 1]},
    "grid": {"eta": [0.1, 0.01], "beta": [0.5]},
    "curves_every": 1,
}


@pytest.fixture
def setup(small_mnist, tmp_path, ray_tmp):
    """A spec file, a data directory of small IDX files, and an empty results path."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    return spec, write(tmp_path / "idx", small_mnist), tmp_path / "results"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_run_writes_one_file_per_cell_and_a_rerun_trains_nothing(setup):
    spec, data, results = setup
    first = invoke("run", spec, "--results", results, "--data-dir", data)
    assert first.exit_code == 0, first.output
    files = sorted((results / "tiny" / "records").glob("*.parquet"))
    assert [f.name for f in files] == ["relu-mupc-pc-N4-H2-T2.parquet", "relu-mupc-pc-N4-H3-T3.parquet"]
    assert sorted(p.name for p in (results / "tiny" / "curves").glob("*.parquet")) == [f.name for f in files]
    table = load_records(results)
    assert len(table) == 2 * 2 * 2 and not table.duplicated(["cell_id", "seed", "eta", "beta"]).any()
    assert set(table.sweep) == {"tiny"} and table.steps_run.max() == 4
    assert sorted(table.columns) == sorted(RECORD_COLUMNS)  # what the store checks is what a run writes
    stamps = [f.stat().st_mtime_ns for f in files]
    second = invoke("run", spec, "--results", results, "--data-dir", data)
    assert second.exit_code == 0 and "all 2 cells done" in second.stderr
    assert [f.stat().st_mtime_ns for f in files] == stamps and len(load_records(results)) == 8
    kept = yaml.safe_load((results / "tiny" / "spec.yaml").read_text())
    assert kept["spec"]["network"]["depth"] == [2, 3] and len(kept["spec_hash"]) == 16

    files[1].unlink()
    out = invoke("status", "--results", results)
    assert out.exit_code == 0
    assert "tiny (spec " in out.stdout and "1/2 cells done, 4/8 points done, 4 pending" in out.stdout
    shown = best_text(pd.read_parquet(files[0]))  # "best η=…" or, on these unlearnable labels, "no valid point"
    assert f"relu-mupc-pc-N4-H2-T2: {shown}" in out.stdout and "relu-mupc-pc-N4-H3-T3: pending" in out.stdout
    write_failure(results, "tiny", "relu-mupc-pc-N4-H3-T3", "ValueError: boom")
    assert "relu-mupc-pc-N4-H3-T3: pending; failed: ValueError: boom" in invoke("status", "--results", results).stdout
    assert invoke("status", "--results", results / "none").exit_code == 2


def test_changed_spec_is_refused_unless_restarted(setup):
    spec, data, results = setup
    runner.prepare(parse_spec(SPEC), results, restart=False)  # an earlier run of the first spec
    write_cell(results, "tiny", "relu-mupc-pc-N4-H2-T2", pd.DataFrame({"eta": [0.1], "status": ["ok"]}))
    before = {p: p.stat().st_mtime_ns for p in results.rglob("*")}
    spec.write_text(yaml.safe_dump({**SPEC, "grid": {"eta": [0.2], "beta": [0.5]}}))
    refused = invoke("run", spec, "--results", results, "--data-dir", data)
    assert refused.exit_code == 2 and "different spec" in refused.stderr and "--restart" in refused.stderr
    assert {p: p.stat().st_mtime_ns for p in results.rglob("*")} == before
    restarted = invoke("run", spec, "--results", results, "--data-dir", data, "--restart")
    assert restarted.exit_code == 0
    assert set(load_records(results).eta) == {0.2} and len(load_records(results)) == 4


@pytest.mark.parametrize("spec_text,message", [
    ("network: [unclosed\n", "is not valid YAML"),
    (yaml.safe_dump({**SPEC, "network": {**SPEC["network"], "depth": [0]}}), "network.depth[0]: must be an integer"),
    (yaml.safe_dump({**SPEC, "training": {**SPEC["training"], "epochs": 1e-9}}), "gives no training step"),
    (yaml.safe_dump({**SPEC, "grid": {"eta": [], "beta": [1]}}), "grid.eta: must not be an empty list"),
    (yaml.safe_dump({**SPEC, "training": {**SPEC["training"], "batch_size": 64}}), "gives no training step"),
])
def test_bad_specs_exit_2_and_create_nothing(setup, spec_text, message):
    spec, data, results = setup
    spec.write_text(spec_text)
    result = invoke("run", spec, "--results", results, "--data-dir", data)
    assert result.exit_code == 2 and message in result.stderr and not results.exists()


def test_zero_steps_and_an_out_that_is_a_file_exit_2_even_in_a_dry_run(setup, tmp_path):
    spec, _, results = setup
    spec.write_text(yaml.safe_dump({**SPEC, "training": {**SPEC["training"], "epochs": 1e-9}}))
    dry = invoke("run", spec, "--results", results, "--dry-run")
    assert dry.exit_code == 2 and "gives no training step with 60000 examples" in dry.stderr
    spec.write_text(yaml.safe_dump(SPEC))
    (tmp_path / "afile").write_text("")
    result = invoke("run", spec, "--out", tmp_path / "afile")
    assert result.exit_code == 2 and "is a file, not a results directory" in result.stderr


def whole_cell() -> pd.DataFrame:
    """A tiny-spec cell's records as a run writes them (2 seeds × 2 η × 1 β; `write_cell` adds sweep and cell_id)."""
    points = [(seed, eta) for seed in (0, 1) for eta in (0.1, 0.01)]
    table = pd.DataFrame({column: [0] * len(points) for column in RECORD_COLUMNS if column not in ("sweep", "cell_id")})
    return table.assign(seed=[p[0] for p in points], eta=[p[1] for p in points], beta=0.5, status="ok",
                        algorithm="pc", min_train_loss=[0.3, 0.2, 0.4, 0.3])


def test_damaged_or_foreign_records_are_named_and_their_cell_is_pending(setup):
    spec, data, results = setup
    parsed = parse_spec(SPEC)
    runner.prepare(parsed, results, restart=False)
    done, bad = (results / "tiny" / "records" / f"relu-mupc-pc-N4-H{h}-T{h}.parquet" for h in (2, 3))
    write_cell(results, "tiny", done.stem, whole_cell())
    for content, problem in [
        (None, "is not a readable records file"),
        (pd.DataFrame({"eta": [0.1], "status": ["ok"]}), "lacks the columns dataset, activation, param, algorithm and 18 more"),
        (whole_cell().iloc[:0], "holds no rows"),
        (pd.concat([whole_cell(), whole_cell()]), "holds a point twice"),
    ]:
        if content is None:
            bad.write_text("junk")
        else:
            write_cell(results, "tiny", bad.stem, content)
        assert [c.cell_id for c in runner.pending(parsed, results)] == [bad.stem], problem
        with pytest.raises(ResultsError, match=f"{bad}.* {problem}"):
            load_records(results)
        shown = invoke("status", "--results", results)
        assert shown.exit_code == 0 and "1/2 cells done, 4/8 points done, 4 pending" in shown.stdout
        assert f"{bad.stem}: pending; records file damaged, incomplete or not this tool's: {bad.name}" in shown.stdout
        assert f"{done.stem}: best η=0.01 β=0.5 min loss 0.25" in shown.stdout
    (results / "tiny" / "spec.yaml").write_text("spec_hash: [")
    result = invoke("run", spec, "--results", results, "--data-dir", data)
    assert result.exit_code == 2 and f"{results / 'tiny' / 'spec.yaml'} is unreadable" in result.stderr
    assert "tiny: unreadable spec.yaml" in invoke("status", "--results", results).stdout


def test_records_without_their_kept_spec_are_refused_unless_restarted(setup):
    spec, data, results = setup
    write_cell(results, "tiny", "relu-mupc-pc-N4-H2-T2", whole_cell())  # spec.yaml lost, records kept
    refused = invoke("run", spec, "--results", results, "--data-dir", data)
    assert refused.exit_code == 2 and "holds records but no spec.yaml" in refused.stderr
    assert not (results / "tiny" / "spec.yaml").exists()
    assert "tiny: records but no spec.yaml" in invoke("status", "--results", results).stdout
    restarted = invoke("run", spec, "--results", results, "--data-dir", data, "--restart", "--dry-run")
    assert restarted.exit_code == 0


def test_records_are_written_readable_by_others_as_the_umask_allows(tmp_path):
    previous = os.umask(0o022)
    try:
        path = write_cell(tmp_path, "s", "c", pd.DataFrame({"eta": [0.1]}))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_missing_spec_file_exits_2(tmp_path):
    result = invoke("run", tmp_path / "nope.yaml", "--out", tmp_path / "results")
    assert result.exit_code == 2 and "does not exist" in result.stderr and not (tmp_path / "results").exists()


def test_dry_run_lists_cells_and_writes_nothing(setup):
    spec, _, results = setup
    result = invoke("run", spec, "--results", results, "--dry-run")
    assert result.exit_code == 0 and "relu-mupc-pc-N4-H3-T3" in result.stdout
    assert "2 cells, 8 points to train in 2 trials" in result.stdout
    assert not results.exists()


def test_partial_cells_are_left_out_of_the_records_and_named(setup):
    spec, _, results = setup
    parsed = parse_spec(SPEC)
    runner.prepare(parsed, results, restart=False)
    write_cell(results, "tiny", "relu-mupc-pc-N4-H2-T2", whole_cell())  # all 4 points
    write_cell(results, "tiny", "relu-mupc-pc-N4-H3-T3", whole_cell().iloc[:1], stem="relu-mupc-pc-N4-H3-T3.p0")
    write_cell(results, "tiny", "relu-mupc-pc-N4-H3-T3", whole_cell().iloc[2:3], stem="relu-mupc-pc-N4-H3-T3.p2")
    assert runner.pending_points(parsed, results)[parsed.cells()[1]] == [1, 3]
    records = load_records(results)
    assert set(records.cell_id) == {"relu-mupc-pc-N4-H2-T2"} and len(records) == 4
    assert incomplete_cells(results) == [
        "tiny: relu-mupc-pc-N4-H3-T3: 2 of 4 points (run the sweep again to train the rest)"]
    shown = invoke("status", "--results", results)
    assert "1/2 cells done, 6/8 points done, 2 pending" in shown.stdout
    assert "relu-mupc-pc-N4-H3-T3: 2/4 points done, 2 pending" in shown.stdout
    plotted = invoke("plot", "--results", results)
    assert plotted.exit_code == 0 and "incomplete, not drawn: tiny: relu-mupc-pc-N4-H3-T3: 2 of 4" in plotted.stderr
    write_cell(results, "tiny", "relu-mupc-pc-N4-H3-T3", whole_cell().iloc[:2], stem="relu-mupc-pc-N4-H3-T3.p1")
    with pytest.raises(ResultsError, match="holds a point in two records files"):
        load_records(results)


def test_a_cell_without_records_is_incomplete_and_prepare_removes_damaged_files(setup):
    spec, _, results = setup
    parsed = parse_spec(SPEC)
    runner.prepare(parsed, results, restart=False)
    write_cell(results, "tiny", "relu-mupc-pc-N4-H2-T2", whole_cell())
    assert incomplete_cells(results) == [
        "tiny: relu-mupc-pc-N4-H3-T3: 0 of 4 points (run the sweep again to train the rest)"]
    damaged = results / "tiny" / "records" / "relu-mupc-pc-N4-H3-T3.parquet"
    damaged.write_text("junk")
    write_failure(results, "tiny", "relu-mupc-pc-N4-H3-T3", "ValueError: boom")
    runner.prepare(parsed, results, restart=False)  # as a driver holding the lock does
    assert not damaged.exists() and (results / "tiny" / "records" / "relu-mupc-pc-N4-H2-T2.parquet").exists()
    assert not (results / "tiny" / "failed").exists()
