"""Transfer verdicts on synthetic surfaces with known answers: the zero-shot regret, out-of-sample
extrapolation, the seed bootstrap (optimum probabilities, the regret interval), the stability edge."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import ETAS as ETAS_SYNTHETIC
from conftest import patch, synthetic, write_sweep
from typer.testing import CliRunner

from mupc_sweep import analysis
from mupc_sweep.errors import InputError
from mupc_sweep.cli import app

ETAS = [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625]


def drifting(sizes, **kw):
    """An SP-like surface: η* halves with every doubling of the size, from 0.5 at size 8; β* = 1."""
    return synthetic(sizes, lambda s: 0.5 * 8 / s, lambda s: 1.0, etas=ETAS, **kw)


def test_zero_shot_regret_is_the_targets_loss_at_the_sources_optimum_over_its_best():
    # η* at 8 is 0.5, at 32 it is 0.125: the source's optimum is log10(4) decades off at the target.
    (report,) = analysis.transfer(drifting([8, 32]), source=8, target=32)
    assert report.recommended_eta == pytest.approx(0.5) and report.basis == "source grid optimum"
    assert report.regret == pytest.approx(10 ** (np.log10(4) ** 2))
    assert report.transfer_holds is False and report.optima_coincide is False
    # curvature small enough that the same drift costs under 10 %: transfer holds, optima still differ
    (flat,) = analysis.transfer(drifting([8, 32], curvature=0.1), source=8, target=32)
    assert flat.regret == pytest.approx(10 ** (0.1 * np.log10(4) ** 2)) and flat.regret <= analysis.REGRET_OK
    assert flat.transfer_holds is True and flat.optima_coincide is False


def test_a_drifting_optimum_never_grades_itself():
    """The issue's case: the optimum moves with depth, the recommendation is extrapolated, and the
    verdict is still the zero-shot one."""
    records = drifting([8, 16, 32, 64, 128])
    (report,) = analysis.transfer(records, source=8, target=128)
    assert report.basis == "extrapolated drift" and report.drift_sizes == [8, 16, 32, 64]
    assert report.regret == pytest.approx(10 ** (np.log10(16) ** 2)) and report.transfer_holds is False
    assert report.extrapolated_regret == pytest.approx(1.0)  # the fit reached 0.03125 = η* at 128


def test_removing_the_target_or_sizes_beyond_it_leaves_the_recommendation_unchanged():
    records = drifting([8, 16, 32, 64])
    (full,) = analysis.transfer(records, source=8, target=64)
    (without,) = analysis.transfer(records[records.depth != 64], source=8, target=64)
    beyond = synthetic([128], lambda s: 1.0, lambda s: 0.05, etas=ETAS)  # a wild optimum past the target
    (with_beyond,) = analysis.transfer(pd.concat([records, beyond]), source=8, target=64)
    for other in (without, with_beyond):
        assert (other.recommended_eta, other.recommended_beta, other.basis) == (
            full.recommended_eta, full.recommended_beta, full.basis)
        assert other.drift_sizes == [8, 16, 32]
    assert not without.target_swept and without.regret is None and without.extrapolated_regret is None


def test_fewer_than_three_sizes_before_the_target_means_no_extrapolation():
    records = drifting([8, 16, 32, 64])
    (report,) = analysis.transfer(records, source=8, target=32)  # 8 and 16 only; 64 lies beyond
    assert report.drift_sizes == [8, 16] and report.drift is None and report.basis == "source grid optimum"
    assert report.recommended_eta == pytest.approx(0.5)


def test_text_says_when_there_is_no_extrapolation(tmp_path):
    write_sweep(tmp_path, drifting([8, 16, 32, 64]))
    text = CliRunner().invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path)]).stdout
    assert "no extrapolation: 2 swept size(s) below depth 32 (8, 16); a drift fit needs 3" in text
    assert "zero-shot regret 2.304" in text and "transfer does NOT hold" in text


def seed_table(losses: dict[tuple[float, float], list[float]], size: int = 8) -> pd.DataFrame:
    """Records of one size whose per-seed min losses are given for each (η, β)."""
    rows = [dict(dataset="mnist", activation="tanh", param="mupc", algorithm="pc", width=64, depth=size, seed=seed,
                 eta=eta, beta=beta, min_train_loss=loss, status="ok")
            for (eta, beta), per_seed in losses.items() for seed, loss in enumerate(per_seed)]
    return pd.DataFrame(rows)


def probabilities(records: pd.DataFrame, size: int = 8) -> dict[tuple[float, float], float]:
    surface = analysis.surfaces(records).sort_values(["eta", "beta"]).reset_index(drop=True)
    means = analysis.bootstrap_means(records, surface, size=size)
    table = analysis.optimum_probability(surface, means)
    return {(p.eta, p.beta): p.probability for p in table.itertuples()}


def test_bootstrap_splits_two_equal_optima_and_is_sure_of_a_clear_one():
    rng = np.random.default_rng(1)
    noise = 1 + 0.05 * rng.normal(size=10)
    swapped = noise.reshape(5, 2)[:, ::-1].ravel()  # seed pairs swapped: the same values, other seeds
    records = seed_table({(0.1, 1.0): 0.01 * noise, (0.05, 1.0): 0.01 * swapped, (0.5, 1.0): 0.02 * noise})
    p = probabilities(records)
    assert p[(0.1, 1.0)] + p[(0.05, 1.0)] == pytest.approx(1.0) and (0.5, 1.0) not in p
    assert 0.4 < p[(0.1, 1.0)] < 0.6
    clear = seed_table({(0.1, 1.0): 0.01 * noise, (0.05, 1.0): 0.013 * swapped})
    assert probabilities(clear) == {(0.1, 1.0): 1.0}


def test_bootstrap_is_reproducible_and_needs_two_seeds():
    records = seed_table({(0.1, 1.0): [0.010, 0.013, 0.009], (0.05, 1.0): [0.011, 0.010, 0.012]})
    assert probabilities(records) == probabilities(records)
    one = records[records.seed == 0]
    assert analysis.bootstrap_means(one, analysis.surfaces(one), size=8) is None
    (report,) = analysis.transfer(synthetic([8, 16], lambda s: 0.1, lambda s: 1.0, seeds=(0,)), source=8, target=16)
    assert report.regret == pytest.approx(1.0) and report.regret_interval is None and report.optimum_probability is None


def test_regret_interval_covers_the_true_regret():
    """Seeds scatter each point independently (5 %); over 20 synthetic sweeps the 90 % interval
    must hold the noise-free regret in most of them, and be a real interval, not a point."""
    true_regret = 10 ** (np.log10(2) ** 2)  # the source's optimum is one doubling off at the target
    covered, widths = 0, []
    for trial in range(20):
        records = synthetic([8, 16], lambda s: 0.1 if s == 8 else 0.05, lambda s: 1.0,
                            etas=[0.4, 0.2, 0.1, 0.05, 0.025], seeds=range(8))
        rng = np.random.default_rng(trial)
        records["min_train_loss"] *= (1 + 0.05 * rng.normal(size=len(records))) / (1 + 0.01 * (records.seed - 1))
        (report,) = analysis.transfer(records, source=8, target=16)
        lo, hi = report.regret_interval
        covered += lo <= true_regret <= hi
        widths.append(hi - lo)
    assert covered >= 15 and min(widths) > 0


def test_regret_interval_is_infinite_where_the_sources_optimum_fails_at_the_target_in_some_resamples():
    records = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0, seeds=range(4))
    # at 8, seed noise makes (0.1, 1) and (0.05, 1) near-equal; at 16, (0.05, 1) failed
    at_8 = (records.depth == 8) & (records.eta == 0.05) & (records.beta == 1.0)
    records.loc[at_8, "min_train_loss"] = 0.0100 * np.array([0.9, 1.1, 1.0, 1.0])
    records.loc[(records.depth == 8) & (records.eta == 0.1) & (records.beta == 1.0), "min_train_loss"] = (
        0.0100 * np.array([1.1, 0.9, 1.0, 1.0]) + 1e-6)
    records.loc[(records.depth == 16) & (records.eta == 0.05) & (records.beta == 1.0), "status"] = "diverged"
    (report,) = analysis.transfer(records, source=8, target=16)
    assert report.regret_interval[1] == np.inf


def edge_records(eta_edge, beta_edge, sizes=(8, 16, 32)):
    """Surfaces with the optimum at (0.1, 1) whose points diverge above size-dependent η and β edges."""
    etas, betas = [1.0, 0.5, 0.1, 0.05, 0.01], [100.0, 10.0, 1.0, 0.1]
    records = synthetic(sizes, lambda s: 0.1, lambda s: 1.0, etas=etas, betas=betas)
    too_big = (records.eta > records.depth.map(eta_edge)) | (records.beta > records.depth.map(beta_edge))
    records.loc[too_big & (records.seed == 1), "status"] = "diverged"  # one seed is enough to fail a point
    return records


def test_stability_edge_per_size_and_its_drift():
    stable = edge_records(lambda s: 0.5, lambda s: 10.0)
    (report,) = analysis.transfer(stable, source=8, target=32)
    edges = report.stability_edge
    assert list(zip(edges["size"], edges["eta"], edges["beta"])) == [(8, 0.5, 10.0), (16, 0.5, 10.0), (32, 0.5, 10.0)]
    assert not (edges["eta_beyond_measured"] | edges["beta_beyond_measured"]).any()
    assert report.stability_drift == {"eta_decades": 0.0, "beta_decades": 0.0, "drifts": False}

    shrinking = edge_records({8: 1.0, 16: 0.5, 32: 0.1}.get, {8: 100.0, 16: 10.0, 32: 10.0}.get)
    (report,) = analysis.transfer(shrinking, source=8, target=32)
    edges = report.stability_edge
    assert list(zip(edges["eta"], edges["beta"])) == [(1.0, 100.0), (0.5, 10.0), (0.1, 10.0)]
    assert edges["eta_beyond_measured"].tolist() == [True, False, False]
    assert edges["beta_beyond_measured"].tolist() == [True, False, False]
    assert report.stability_drift["eta_decades"] == pytest.approx(1.0) and report.stability_drift["drifts"]


def test_cli_json_and_text_carry_the_verdict_and_its_uncertainty(tmp_path):
    write_sweep(tmp_path, edge_records(lambda s: 0.5, lambda s: 10.0))
    runner = CliRunner()
    out = runner.invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    (family,) = json.loads(out.stdout)["families"]
    assert family["regret"] == pytest.approx(1.0) and family["transfer_holds"] is True
    assert family["regret_interval"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert family["extrapolated_regret"] is None and family["basis"] == "source grid optimum"
    top = [p for p in family["optimum_probability"] if p["size"] == 8]
    assert top == [{"size": 8, "eta": 0.1, "beta": 1.0, "probability": 1.0}]
    assert [e["eta"] for e in family["stability_edge"]] == [0.5, 0.5, 0.5]
    text = runner.invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path)]).stdout
    assert "zero-shot regret 1.000 (90 % seed-bootstrap interval 1.000–1.000)" in text
    by_size = text.split("  worth and flatness by")[0]  # the table of optima, not the worth table below it
    rows = {line.split()[0]: line for line in by_size.splitlines() if line.startswith("    ") and line.split()[0].isdigit()}
    # 5 η × 4 β grid points; the edges: η 1 and β 100 diverged on seed 1
    assert rows["8"].split() == ["8", "(η", "0.1,", "β", "1)", "0.01", "(η", "0.1,", "β", "1)", "1.00",
                                 "η", "0.5,", "β", "10", "20"]
    assert "stability edge across depth: moves η 0.00 decades, β 0.00 decades (stable)" in text


def test_a_sweep_of_two_parameterisations_reports_each_apart(tmp_path):
    mupc = synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0)
    sp = drifting([8, 16, 32], param="sp")
    write_sweep(tmp_path, pd.concat([mupc, sp]))
    out = CliRunner().invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    verdicts = {f["family"]["param"]: f["transfer_holds"] for f in json.loads(out.stdout)["families"]}
    assert verdicts == {"mupc": True, "sp": False}
    plotted = CliRunner().invoke(app, ["plot", "--results", str(tmp_path)])
    assert plotted.exit_code == 0, plotted.output
    names = sorted(p.name for p in (tmp_path / "toy" / "plots").glob("contours_*.png"))
    assert names == ["contours_toy_mnist_tanh_mupc_pc_N512_by_depth.png",
                     "contours_toy_mnist_tanh_sp_pc_N512_by_depth.png"]


def test_bp_has_a_null_beta_everywhere(tmp_path):
    """A bp sweep's β is null in its records, its surfaces and every β field of the report."""
    records = synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0, betas=[1.0]).assign(algorithm="bp", beta=None)
    records["beta"] = records["beta"].astype("Float64")
    surface = analysis.surfaces(records)
    assert surface["beta"].isna().all() and len(surface) == 3 * len(ETAS_SYNTHETIC)
    write_sweep(tmp_path, records)
    out = CliRunner().invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    (family,) = json.loads(out.stdout)["families"]
    assert family["recommended_beta"] is None and family["source_optimum"]["beta"] is None
    assert family["source_optimum"]["basin_beta"] is None and family["source_optimum"]["refined_beta"] is None
    assert {p["beta"] for p in family["source_surface"]} == {None}
    assert {p["beta"] for p in family["optimum_probability"]} == {None}
    assert {e["beta"] for e in family["stability_edge"]} == {None}
    assert family["regret"] == pytest.approx(1.0) and family["transfer_holds"]
    text = CliRunner().invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path)]).stdout
    assert "β" not in text.split("seed-mean min train loss")[0]
    plotted = CliRunner().invoke(app, ["plot", "--results", str(tmp_path)])
    assert plotted.exit_code == 0, plotted.output
    assert [p.name for p in (tmp_path / "toy" / "plots").iterdir()] == [
        "transfer_toy_mnist_tanh_mupc_bp_N512_by_depth.png"]


def test_a_family_without_a_valid_source_point_does_not_hide_the_others():
    mupc = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0)
    sp = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0, param="sp").assign(status="diverged")
    (report,) = analysis.transfer(pd.concat([mupc, sp]), source=8, target=16)
    assert report.family["param"] == "mupc" and report.transfer_holds
    assert any(w.startswith("not reported: depth 8 of") and "param=sp" in w for w in report.warnings)
    with pytest.raises(ValueError, match="has no valid point to transfer from"):
        analysis.transfer(sp, source=8, target=16)


def test_one_eta_grid_is_not_on_the_edge():
    records = synthetic([8], lambda s: 0.1, lambda s: 1.0, etas=[0.1])
    assert not analysis.optimum(analysis.surfaces(records), 8).on_edge


PATCH = ([0.5, 0.1, 0.05], [5.0, 1.0, 0.5])  # one grid step around (0.1, 1) in the conftest grid: a 3 × 3 patch


def test_a_patch_around_a_stable_optimum_gives_the_full_grids_verdict():
    full = synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0)
    (whole,) = analysis.transfer(full, source=8, target=32)
    (patched,) = analysis.transfer(patch(patch(full, 16, *PATCH), 32, *PATCH), source=8, target=32)
    for report in (whole, patched):
        assert report.regret == pytest.approx(1.0) and report.regret_interval == (pytest.approx(1.0),) * 2
        assert report.transfer_holds and (report.recommended_eta, report.recommended_beta) == (0.1, 1.0)
    assert whole.target_patch is None and whole.optima["patch"].tolist() == [False, False, False]
    assert patched.optima["patch"].tolist() == [False, True, True]
    assert patched.target_patch == {"n_points": 9, "eta": (0.05, 0.5), "n_eta": 3, "eta_steps": (-1, 1),
                                    "beta": (0.5, 5.0), "n_beta": 3, "beta_steps": (-1, 1)}
    assert ("  target's best is over its patch: 3 × 3 grid points, η 0.05–0.5, β 0.5–5 "
            "(from the source optimum: −1…+1 grid steps in η, −1…+1 in β)") in patched.text().splitlines()
    assert not any("border of its patch" in w for w in patched.warnings)


def test_a_patch_grown_around_a_moved_optimum_gives_the_full_grids_verdict():
    """η* halves per doubling (0.5 at 8 … 0.0625 at 64); each larger size's patch starts one step around the
    source's η = 0.5 and grows down until its best is interior, as the sweep grows it."""
    full = drifting([8, 16, 32, 64])
    patched = full
    for size, lowest in ((16, 0.125), (32, 0.0625), (64, 0.03125)):
        patched = patch(patched, size, [eta for eta in ETAS if eta >= lowest], [5.0, 1.0, 0.5])
    (whole,) = analysis.transfer(full, source=8, target=64)
    (grown,) = analysis.transfer(patched, source=8, target=64)
    for report in (whole, grown):
        assert report.regret == pytest.approx(10 ** (np.log10(8) ** 2)) and report.transfer_holds is False
        assert report.basis == "extrapolated drift" and report.recommended_eta == pytest.approx(0.0625)
        assert report.extrapolated_regret == pytest.approx(1.0)
    assert grown.regret_interval == pytest.approx(whole.regret_interval)
    # ascending η grid 0.015625 … 1: the source's 0.5 is index 5, the patch runs from 0.03125 (1) to 1 (6)
    assert grown.target_patch == {"n_points": 18, "eta": (0.03125, 1.0), "n_eta": 6, "eta_steps": (-4, 1),
                                  "beta": (0.5, 5.0), "n_beta": 3, "beta_steps": (-1, 1)}


def test_a_patch_whose_best_is_on_its_border_says_so_and_reads_its_edges_as_lower_bounds():
    """At 32 the optimum moved to η 0.125 but the patch was not grown: its best, η 0.25, is on its border."""
    records = patch(drifting([8, 32]), 32, [1.0, 0.5, 0.25], [5.0, 1.0, 0.5])
    (report,) = analysis.transfer(records, source=8, target=32)
    # the source's 0.5 is log10(4) decades from η* = 0.125, the patch's best 0.25 is log10(2) decades
    assert report.regret == pytest.approx(10 ** (np.log10(4) ** 2 - np.log10(2) ** 2))
    assert report.optima.set_index("size").loc[32, "eta"] == 0.25
    assert any("lies on the border of its patch" in w and "understated" in w for w in report.warnings)
    edge = report.stability_edge.set_index("size").loc[32]
    # every measured point is stable: the edges are the patch's largest rates, lower bounds only
    assert (edge["eta"], edge["beta"]) == (1.0, 5.0)
    assert edge["eta_beyond_measured"] and edge["beta_beyond_measured"]
    row = [line for line in report.text().splitlines() if line.startswith("    32 ")][0]
    assert "η ≥ 1, β ≥ 5" in row and "9 (patch)" in row
    # a failure inside the patch is a measured edge: η 1 diverged on one seed at β = 1
    failing = records.copy()
    failing.loc[(failing.depth == 32) & (failing.eta == 1.0) & (failing.seed == 0), "status"] = "diverged"
    (report,) = analysis.transfer(failing, source=8, target=32)
    edge = report.stability_edge.set_index("size").loc[32]
    assert (edge["eta"], edge["eta_beyond_measured"]) == (0.5, False)


def extended(records, size, etas, eta_star):
    """`records` with extension points at `size` on the same surface (η* = `eta_star`, β* = 1): every β
    of the conftest grid at each η of `etas`."""
    extra = synthetic([size], lambda s: eta_star, lambda s: 1.0, etas=etas)
    return pd.concat([records.assign(extension=False), extra.assign(extension=True)], ignore_index=True)


def test_an_optimum_on_the_extended_edge_is_on_the_grids_edge():
    records = synthetic([8, 16], lambda s: 5.0, lambda s: 1.0)  # η* = 5 lies above the grid's 0.5
    (report,) = analysis.transfer(records, source=8, target=16)
    assert ("the optimum at depth 8 lies on the edge of the grid; widen the grid (grid.extend widens it "
            "automatically)") in report.warnings
    # grid.extend added η 2.5 (the grid's last ratio, 5) at depth 8: the optimum moves there, still on the edge
    (report,) = analysis.transfer(extended(records, 8, [2.5], 5.0), source=8, target=16)
    assert report.source_optimum["eta"] == 2.5 and report.optima["n_extension"].tolist() == [6, 0]
    assert ("the optimum at depth 8 lies on the edge of the grid (its 6 extension point(s) included); widen the grid "
            "(grid.extend widens it automatically)") in report.warnings
    assert report.target_patch is None and report.optima["patch"].tolist() == [False, False]
    assert report.source_surface.loc[report.source_surface["extension"], "eta"].unique().tolist() == [2.5]
    row = [line for line in report.text().splitlines() if line.startswith("    8 ")][0]
    assert row.endswith("30 (6 extension)")  # 4 × 6 grid points and 6 extension points


def test_an_extension_that_brackets_the_optimum_takes_it_off_the_edge():
    records = synthetic([8, 16], lambda s: 1.0, lambda s: 1.0)  # η* = 1: 0.5 beats 2.5 (0.30 against 0.40 decades)
    (report,) = analysis.transfer(extended(records, 8, [2.5], 1.0), source=8, target=16)
    assert report.source_optimum["eta"] == 0.5 and not report.source_optimum["on_edge"]
    assert not any("edge of the grid" in w for w in report.warnings)


def test_an_axis_the_records_do_not_vary_is_refused_by_the_api_and_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from mupc_sweep.cli import app
    from mupc_sweep.plots import figures

    records = synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0)  # a depth sweep at one width
    message = "axis: the records vary no widths; they vary depth 8, 16, 32."
    with pytest.raises(InputError, match=f"^{message}$"):
        analysis.transfer(records, source=8, target=32, axis="width")
    with pytest.raises(InputError, match=f"^{message}$"):
        figures(records, axis="width")
    write_sweep(tmp_path, records)
    for command in (["transfer", "--from", "8", "--to", "32"], ["plot"]):
        result = CliRunner().invoke(app, [*command, "--axis", "width", "--results", str(tmp_path)])
        assert result.exit_code == 2 and f"Error: --{message}" in result.stderr, command
    assert not (tmp_path / "toy" / "plots").exists()


def test_a_refined_optimum_beyond_its_window_is_said_to_be_clipped():
    """A 3 × 3 grid whose centre is its best point but whose losses are far from a quadratic: the
    least-squares fit's minimum lies beyond the window in η (and the refined β comes out inside)."""
    losses = [[1.34, 1.15, 1.45], [1.8, 0.99, 1.05], [1.4, 1.2, 1.09]]  # rows η 0.01, 0.1, 1; columns β 0.1, 1, 10
    rows = [dict(dataset="mnist", activation="tanh", param="mupc", algorithm="pc", width=64, depth=depth, seed=0,
                 eta=eta, beta=beta, min_train_loss=losses[i][j], status="ok")
            for depth in (8, 16) for i, eta in enumerate([0.01, 0.1, 1.0]) for j, beta in enumerate([0.1, 1.0, 10.0])]
    (report,) = analysis.transfer(pd.DataFrame(rows), source=8, target=16)
    src = report.source_optimum
    assert (src["eta"], src["beta"], src["refined_clipped"]) == (0.1, 1.0, True)
    assert src["refined_eta"] == pytest.approx(1.0) and 1.0 < src["refined_beta"] < 10.0  # η at the window's edge
    assert "(the fit's minimum lies beyond its 3 × 3 window: clipped to the window's edge)" in report.text()
    smooth = analysis.optimum(analysis.surfaces(synthetic([8], lambda s: 0.07, lambda s: 0.7)), 8)
    assert not smooth.refined_clipped and 0.05 < smooth.refined_eta < 0.1 and 0.5 < smooth.refined_beta < 1


def test_the_worth_of_a_transfer_sets_its_excess_loss_beside_the_size_steps_gain():
    """Depth 16's best loss is half depth 8's (a gain of 1.0 for the step). Its optimum moved one
    grid step in η (0.1 → 0.05), so the source's optimum costs 10^(log10(2)²) − 1 = 0.232 there:
    transfer pays. At depth 32 the optimum moved to η = 0.01 and nothing was gained: excess 9."""
    eta_star = {8: 0.1, 16: 0.05, 32: 0.01}
    records = synthetic([8, 16, 32], lambda s: eta_star[s], lambda s: 1.0)
    records.loc[records.depth == 16, "min_train_loss"] *= 0.5
    records.loc[records.depth == 32, "min_train_loss"] *= 0.5
    (report,) = analysis.transfer(records, source=8, target=32)
    worth = report.worth.set_index("size")
    assert list(worth.index) == [16, 32] and list(worth.previous) == [8, 16]
    assert worth.loc[16, "excess"] == pytest.approx(10 ** (np.log10(2) ** 2) - 1, rel=1e-6)
    assert worth.loc[16, "gain"] == pytest.approx(1.0, rel=1e-6) and worth.loc[16, "pays"]
    assert worth.loc[32, "excess"] == pytest.approx(9.0, rel=1e-6) and pd.isna(worth.loc[32, "pays"])  # no gain
    assert report.to_dict()["worth"][0]["pays"] is True


def test_flatness_is_the_loss_one_grid_step_away_over_the_optimums():
    """log10 loss = (log η − log η*)² + …: one step from η* = 0.1 to 0.05 costs 10^(log10(2)²), to 0.5
    10^(log10(5)²); in β from 1 to 0.5 and to 5 the same factors."""
    (report,) = analysis.transfer(synthetic([8, 16], lambda s: 0.1, lambda s: 1.0), source=8, target=16)
    row = report.flatness.set_index("size").loc[8]
    near, far = 10 ** (np.log10(2) ** 2), 10 ** (np.log10(5) ** 2)
    assert (row.eta_below, row.eta_above, row.beta_below, row.beta_above) == pytest.approx((near, far, near, far))
    at_edge = analysis.transfer(synthetic([8, 16], lambda s: 0.5, lambda s: 10.0), source=8, target=16)[0]
    edge_row = at_edge.flatness.set_index("size").loc[8]
    assert pd.isna(edge_row.eta_above) and pd.isna(edge_row.beta_above)  # the grid's edge: nothing measured beyond


PAPER_BETAS = [1000, 500, 100, 50, 10, 5, 1, 0.5, 0.1]


def test_a_stability_edge_that_falls_with_size_moves_the_recommendation_inside_it():
    """β* = 5 at every depth, but every β above 100, 50 and 10 diverges at depths 8, 16 and 32. Out of
    sample, the line through log10 edge = 2, log10 50, 1 at log2 depth = 3, 4, 5 reaches depth 128
    (log2 = 7) at ȳ + 3·slope, slope = (1 − 2)/2: a β edge near 1.17, under a grid step (√10) above
    β = 0.1, the only source β a step inside it. The recommendation moves to (0.1, 0.1)."""
    edge = {8: 100, 16: 50, 32: 10}
    records = synthetic([8, 16, 32], lambda s: 0.1, lambda s: 5.0, betas=PAPER_BETAS)
    records.loc[records.beta > records.depth.map(edge), "status"] = "diverged"
    (report,) = analysis.transfer(records, source=8, target=128)
    y = [2.0, np.log10(50), 1.0]
    expected = 10 ** (np.mean(y) + 3 * (y[2] - y[0]) / 2)
    margin = report.stability_margin
    assert margin["beta_edge"] == pytest.approx(expected) and margin["beta_step"] == pytest.approx(10 ** 0.5)
    assert margin["eta_edge"] is None  # η never diverged: its edge lies beyond the grid, not extrapolated
    assert not margin["inside"] and (margin["eta"], margin["beta"]) == (0.1, 0.1)
    assert (report.recommended_eta, report.recommended_beta, report.basis) == (0.1, 0.1, "stability margin")
    assert any("recommended instead the best source point at least a grid step inside it, η=0.1, β=0.1" in w
               for w in report.warnings)
    steady = synthetic([8, 16, 32], lambda s: 0.1, lambda s: 5.0, betas=PAPER_BETAS)
    steady.loc[steady.beta > 100, "status"] = "diverged"
    (calm,) = analysis.transfer(steady, source=8, target=128)
    assert calm.stability_margin is None and calm.recommended_beta == 5.0  # an edge that stays put moves nothing


def test_the_residual_is_reported_at_the_source_optimum_and_the_target_point_and_drawn():
    """Seeds' residuals 0.1, 0.2, 0.3 at depth 8 (mean 0.2) and 0.6, 0.7, 0.8 at 32 (0.7, above the
    0.5 that reads as inference stopping far from equilibrium)."""
    from mupc_sweep.plots import SURFACE_GID, figures

    records = synthetic([8, 32], lambda s: 0.1, lambda s: 1.0)
    records["inference_residual"] = np.where(records.depth == 8, 0.1, 0.6) + 0.1 * records.seed
    (report,) = analysis.transfer(records, source=8, target=32)
    assert report.inference_residual == pytest.approx({"source": 0.2, "target": 0.7})
    assert report.source_optimum["residual"] == pytest.approx(0.2)
    assert "0.2 at the source's optimum, 0.7 at the transferred point at depth 32" in report.text()
    assert any(w.startswith("inference stopped far from its equilibrium at depth 32 (residual 0.70") for w in
               report.warnings)
    assert not any("depth 8 (residual" in w for w in report.warnings)
    drawn = figures(records, axis="depth")
    residual = drawn["residual_mnist_tanh_mupc_pc_N512_by_depth"]
    assert "inference residual across depth" in residual._suptitle.get_text()
    assert len([a for ax in residual.axes for a in ax.collections if a.get_gid() == SURFACE_GID]) == 2
    plain = synthetic([8, 32], lambda s: 0.1, lambda s: 1.0)  # records without the column: nothing said, nothing drawn
    assert analysis.transfer(plain, source=8, target=32)[0].inference_residual == {"source": None, "target": None}
    assert not any(key.startswith("residual_") for key in figures(plain, axis="depth"))


def test_the_contours_mark_the_stability_edge_the_smaller_sizes_foresee():
    """The falling β edge of the margin test: at depth 64 the edges of 8, 16 and 32 foresee β ≈
    10^(ȳ + 2·slope) (log2 64 = 6, two steps past their mean); depth 32 has only two smaller sizes."""
    from mupc_sweep.plots import FORESEEN_GID, contour_figure

    edge = {8: 100, 16: 50, 32: 10, 64: 1}
    records = synthetic([8, 16, 32, 64], lambda s: 0.1, lambda s: 0.5, betas=PAPER_BETAS)
    records.loc[records.beta > records.depth.map(edge), "status"] = "diverged"
    surf = analysis.surfaces(records)
    fig = contour_figure(surf, "depth", edges=analysis.stability_edges(surf, "depth"))
    marks = [(i, line) for i, ax in enumerate(fig.axes[:4]) for line in ax.lines if line.get_gid() == FORESEEN_GID]
    assert [i for i, _ in marks] == [3]  # only the panel with three smaller sizes
    y = [2.0, np.log10(50), 1.0]
    (_, line), = marks
    assert line.get_xdata()[0] == pytest.approx(10 ** (np.mean(y) + 2 * (y[2] - y[0]) / 2))
    assert line.get_ydata()[0] == pytest.approx(0.1)  # at the optimum's η
