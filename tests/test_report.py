"""A transfer report in every form: its short repr, its text, its markdown, its tables as DataFrames,
its strict JSON document, and what `transfer` refuses."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import ETAS, synthetic, write_sweep
from typer.testing import CliRunner

from mupc_sweep import analysis
from mupc_sweep.cli import app
from mupc_sweep.errors import InputError
from mupc_sweep.report import transfer_document


def stable_report() -> analysis.TransferReport:
    """The optimum stays at (0.1, 1) at depths 8, 16 and 32: regret 1 exactly."""
    (report,) = analysis.transfer(synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0), source=8, target=32)
    return report


def test_repr_is_one_short_line_with_the_verdict():
    text = repr(stable_report())
    assert len(text) < 200 and "\n" not in text
    assert "depth 8 -> 32" in text and "η=0.1, β=1" in text and "regret 1.000" in text and "transfer holds" in text
    (unswept,) = analysis.transfer(synthetic([8, 16], lambda s: 0.1, lambda s: 1.0), source=8, target=64)
    assert "depth 64 not swept" in repr(unswept)


def test_text_holds_the_verdict_line_worked_by_hand():
    lines = stable_report().text().splitlines()
    assert lines[0] == "mnist tanh mupc pc, width 512: depth 8 -> 32"
    # every seed's loss is the same factor of the mean at every point, so every resample agrees: 1.000–1.000
    assert lines[1] == ("  verdict at depth 32: zero-shot regret 1.000 (90 % seed-bootstrap interval 1.000–1.000): "
                        "transfer holds (it holds where the regret is at most 1.1); optima coincide")
    # η* moves from 0.1 at depth 8 to 0.01 at 32: the source's optimum is one decade off, loss 10^(1²) = 10× the best
    moved = synthetic([8, 32], lambda s: 0.1 if s == 8 else 0.01, lambda s: 1.0)
    (report,) = analysis.transfer(moved, source=8, target=32)
    assert report.text().splitlines()[1] == (
        "  verdict at depth 32: zero-shot regret 10.000 (90 % seed-bootstrap interval 10.000–10.000): "
        "transfer does NOT hold (it holds where the regret is at most 1.1); optima differ")


def test_text_is_what_the_command_line_prints(tmp_path):
    records = synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0)
    write_sweep(tmp_path, records)
    out = CliRunner().invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path)])
    assert out.exit_code == 0, out.output
    (report,) = analysis.transfer(records.assign(sweep="toy"), source=8, target=32)
    assert out.stdout.startswith(report.text() + "\n")


def test_markdown_has_the_verdict_and_a_table_of_the_optima():
    markdown = stable_report()._repr_markdown_()
    assert "transfer holds (it holds where the regret is at most 1.1)" in markdown and "recommended η = 0.1, β = 1" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    assert cells[0][:3] == ["depth", "grid optimum", "min loss"] and set(cells[1]) == {"---"}
    assert [row[:3] for row in cells[2:]] == [[size, "(η 0.1, β 1)", "0.01"] for size in ("8", "16", "32")]
    assert all(len(row) == len(cells[0]) for row in cells)


def test_tables_are_dataframes_and_to_dict_is_plain_python():
    report = stable_report()
    assert list(report.source_surface.columns) == ["eta", "beta", "loss_mean", "loss_std", "n_seeds", "valid",
                                                   "extension"]
    assert len(report.source_surface) == 4 * 6
    assert {"size", "eta", "beta", "loss", "loss_std", "on_edge", "n_points", "n_extension", "patch"} <= set(
        report.optima.columns)
    assert report.optima["size"].tolist() == [8, 16, 32] and report.optima["n_points"].tolist() == [24, 24, 24]
    assert list(report.optimum_probability.columns) == ["size", "eta", "beta", "probability"]
    assert list(report.stability_edge.columns) == ["size", "eta", "eta_beyond_measured", "beta",
                                                   "beta_beyond_measured"]
    plain = report.to_dict()
    assert plain["optima"][0]["size"] == 8 and type(plain["optima"][0]["size"]) is int
    assert plain["stability_edge"][2] == {"size": 32, "eta": 0.5, "eta_beyond_measured": True, "beta": 10.0,
                                          "beta_beyond_measured": True}
    assert plain["optimum_probability"] == [
        {"size": size, "eta": 0.1, "beta": 1.0, "probability": 1.0} for size in (8, 16, 32)]


def test_transfer_document_is_strict_json_that_says_source_and_target():
    # the source's optimum (0.1, 1) fails at the target in some resamples: the interval's upper end is ∞
    records = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0, seeds=range(4))
    at_8 = (records.depth == 8) & (records.beta == 1.0)
    records.loc[at_8 & (records.eta == 0.05), "min_train_loss"] = 0.0100 * np.array([0.9, 1.1, 1.0, 1.0])
    records.loc[at_8 & (records.eta == 0.1), "min_train_loss"] = 0.0100 * np.array([1.1, 0.9, 1.0, 1.0]) + 1e-6
    records.loc[(records.depth == 16) & (records.eta == 0.05) & (records.beta == 1.0), "status"] = "diverged"
    reports = analysis.transfer(records, source=8, target=16)
    document = transfer_document(reports, axis="depth", source=8, target=16, left_out=["toy: c: 1 of 2 points"])
    back = json.loads(json.dumps(document, allow_nan=False))
    assert {k: back[k] for k in ("schema", "axis", "source", "target", "left_out")} == {
        "schema": 1, "axis": "depth", "source": 8, "target": 16, "left_out": ["toy: c: 1 of 2 points"]}
    assert "from" not in back and "to" not in back
    (family,) = back["families"]
    assert family["source"] == 8 and family["target"] == 16 and family["regret_interval"][1] == "inf"
    assert float(family["regret_interval"][1]) == float("inf")  # an unbounded interval, never read as a missing one
    assert len(family["source_surface"]) == 4 * 6 and family["target_patch"] is None


@pytest.mark.parametrize("kwargs,message", [
    (dict(source=8, target=2), "source: must be smaller than target (rates transfer from a small model to a larger "
                               "one); got source 8, target 2."),
    (dict(source=8, target=8), "source: must be smaller than target (rates transfer from a small model to a larger "
                               "one); got source 8, target 8."),
    (dict(source=0, target=8), "source: must be a positive integer; got 0."),
    (dict(source=2.5, target=8), "source: must be a positive integer; got 2.5."),
    (dict(source=8, target=-4), "target: must be a positive integer; got -4."),
    (dict(source=8, target=16, axis="height"), "axis: must be one of depth, width; got 'height'."),
])
def test_transfer_refuses_what_the_command_line_refuses(kwargs, message):
    records = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0)
    with pytest.raises(InputError) as error:
        analysis.transfer(records, **kwargs)
    assert str(error.value) == message


def test_bp_beta_is_na_in_every_table_and_none_in_plain_python():
    records = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0, betas=[1.0]).assign(algorithm="bp", beta=None)
    surface = analysis.surfaces(records)
    assert surface["beta"].dtype == "Float64" and surface["beta"].isna().all()
    (report,) = analysis.transfer(records, source=8, target=16)
    for table in (report.source_surface, report.optima, report.optimum_probability, report.stability_edge):
        assert table["beta"].dtype == "Float64" and table["beta"].isna().all()
    assert report.stability_edge["beta_beyond_measured"].isna().all()
    assert report.recommended_beta is None and report.source_optimum["beta"] is None
    plain = report.to_dict()
    assert {p["beta"] for p in plain["source_surface"]} == {None} and {o["beta"] for o in plain["optima"]} == {None}
    assert {e["beta_beyond_measured"] for e in plain["stability_edge"]} == {None}
    assert len(report.source_surface) == len(ETAS)


def test_pc_surfaces_keep_beta_as_a_nullable_float():
    surface = analysis.surfaces(synthetic([8], lambda s: 0.1, lambda s: 1.0))
    assert surface["beta"].dtype == "Float64" and not surface["beta"].isna().any()
    assert pd.api.types.is_bool_dtype(surface["extension"]) and not surface["extension"].any()
