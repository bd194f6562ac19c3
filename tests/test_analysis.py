"""Transfer analysis and figures on synthetic records with known optima and drifts, plus one real tiny sweep."""

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from conftest import BETAS, ETAS, classification_data, patch, synthetic, write_sweep
from typer.testing import CliRunner

from mupc_sweep import analysis, plots
from mupc_sweep.cli import app
from mupc_sweep.records import cell_curves, cell_records
from mupc_sweep.errors import InputError, ResultsError
from mupc_sweep.store import load_curves, write_cell, write_curves
from mupc_sweep.cell import CellConfig
from mupc_sweep.train import CellResult, train_cell

def test_surface_is_the_seed_mean_and_a_failed_seed_invalidates_a_point():
    records = synthetic([8], lambda s: 0.1, lambda s: 1.0)
    bad = (records.eta == 0.5) & (records.beta == 10.0) & (records.seed == 2)
    records.loc[bad, ["status", "min_train_loss"]] = ["diverged", 1e-9]  # tiny loss before diverging
    surf = analysis.surfaces(records)
    point = surf[(surf.eta == 0.1) & (surf.beta == 1.0)].iloc[0]
    assert point.loss_mean == pytest.approx(0.01) and point.n_seeds == 3 and point.valid
    assert point.loss_std == pytest.approx(0.0001)
    assert not surf[(surf.eta == 0.5) & (surf.beta == 10.0)].iloc[0].valid
    best = analysis.optimum(surf, 8)
    assert (best.eta, best.beta) == (0.1, 1.0)  # the diverged point's tiny loss is never chosen


def test_refined_optimum_recovers_an_off_grid_minimum():
    surf = analysis.surfaces(synthetic([8], lambda s: 0.07, lambda s: 0.7, seeds=(1,)))
    best = analysis.optimum(surf, 8)
    assert (best.eta, best.beta) == (0.05, 0.5)
    assert best.refined_eta == pytest.approx(0.07, rel=1e-6) and best.refined_beta == pytest.approx(0.7, rel=1e-6)


def test_basin_counts_the_points_within_tolerance():
    surf = analysis.surfaces(synthetic([8], lambda s: 0.1, lambda s: 1.0, curvature=0.05))
    best = analysis.optimum(surf, 8)
    # within 10 %: log10 loss − log10 best ≤ log10 1.1 ≈ 0.0414 -> du² + dv² ≤ 0.83 in decades²
    du = np.log10(np.array(ETAS) / 0.1)[:, None]
    dv = np.log10(np.array(BETAS) / 1.0)[None, :]
    assert best.basin == int(np.sum(0.05 * (du**2 + dv**2) <= np.log10(1.1)))
    assert best.basin > 1 and not best.on_edge


def test_stable_optimum_transfers_with_unit_regret():
    records = synthetic([8, 16, 32, 64, 128], lambda s: 0.1, lambda s: 1.0, curvature=0.05)
    (report,) = analysis.transfer(records, source=8, target=128)
    assert report.basis == "source grid optimum" and not report.drift["drifts"]
    assert report.recommended_eta == pytest.approx(0.1) and report.recommended_beta == pytest.approx(1.0)
    assert report.regret == pytest.approx(1.0) and report.optima_coincide and report.transfer_holds
    assert report.warnings == [] and report.failures == []


def test_drift_is_detected_and_extrapolated_out_of_sample():
    etas = [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    records = synthetic([8, 16, 32, 64], lambda s: 0.5 * 8 / s, lambda s: 1.0, etas=etas)
    (report,) = analysis.transfer(records, source=8, target=64)
    assert report.drift_sizes == [8, 16, 32]  # the target itself never enters the fit
    assert report.drift["drifts"] and report.drift["log_eta_slope"] == pytest.approx(-np.log10(2))
    assert report.basis == "extrapolated drift" and report.recommended_eta == pytest.approx(0.0625)
    assert report.extrapolated_regret == pytest.approx(1.0) and not report.optima_coincide
    # zero-shot, the source's optimum (η = 0.5) is 3 doublings = log10(8) decades off at H = 64
    assert report.regret == pytest.approx(10 ** np.log10(8) ** 2) and report.transfer_holds is False
    assert any("drifts" in w for w in report.warnings)

    (naive,) = analysis.transfer(records[records.depth.isin([8, 64])], source=8, target=64)
    assert naive.drift is None and naive.recommended_eta == pytest.approx(0.5)
    assert naive.regret > analysis.REGRET_OK and naive.transfer_holds is False and naive.extrapolated_regret is None
    assert any("does not hold" in w for w in naive.warnings)


def test_width_axis_and_unswept_target():
    records = synthetic([64, 128, 256], lambda s: 0.05, lambda s: 0.5, axis="width")
    (report,) = analysis.transfer(records, source=64, target=1024, axis="width")
    assert report.family["depth"] == 8 and not report.target_swept and report.regret is None
    assert report.recommended_eta == pytest.approx(0.05) and report.recommended_beta == pytest.approx(0.5)


def test_partial_sweeps_are_reported_not_fatal():
    records = synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0)
    records = records[~((records.depth == 16) & (records.eta == 0.5))]  # missing cells
    records.loc[records.depth == 32, "status"] = "diverged"  # a whole size failed
    (report,) = analysis.transfer(records, source=8, target=32)
    assert any("depth 32: no valid point" in item for item in report.failures)
    assert report.target_swept and report.regret is None and report.transfer_holds is False  # swept, all failed
    assert any("every point diverged or stopped there" in w for w in report.warnings)
    assert report.optima["size"].tolist() == [8, 16]


def test_bad_inputs_are_value_errors():
    records = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0)
    with pytest.raises(ValueError, match="no sweep holds depth 12; swept depths: 8, 16"):
        analysis.transfer(records, source=12, target=16)
    with pytest.raises(ValueError, match="lacks column.*min_train_loss"):
        analysis.transfer(records.drop(columns="min_train_loss"), source=8, target=16)
    with pytest.raises(ValueError, match="axis: must be one of depth, width"):
        analysis.transfer(records, source=8, target=16, axis="height")


def test_sweeps_sharing_a_cell_stay_apart_and_one_depth_families_are_left_out():
    depth = synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0).assign(sweep="paper-depth")
    width = synthetic([64, 512], lambda s: 0.05, lambda s: 0.5, axis="width").assign(sweep="paper-width")
    assert ((width.width == 512) & (width.depth == 8)).any()  # the cell both sweeps ran
    reports = analysis.transfer(pd.concat([depth, width]), source=8, target=32)
    assert [(r.family["sweep"], r.family["width"]) for r in reports] == [("paper-depth", 512)]
    assert reports[0].source_optimum["n_seeds"] == 3 and reports[0].transfer_holds
    (by_width,) = analysis.transfer(pd.concat([depth, width]), source=64, target=512, axis="width")
    assert by_width.family["sweep"] == "paper-width" and by_width.recommended_eta == pytest.approx(0.05)


def test_inference_steps_split_a_family_only_where_a_size_has_several():
    full = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0).assign(inference_steps=lambda r: r.depth)
    one = synthetic([8, 16], lambda s: 0.05, lambda s: 10.0).assign(inference_steps=1)
    reports = analysis.transfer(pd.concat([full, one]), source=8, target=16)
    assert sorted((r.family["inference_steps"], r.recommended_eta, r.recommended_beta) for r in reports) == [
        ("1", 0.05, 10.0), ("H", 0.1, 1.0)]
    fixed = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0).assign(inference_steps=8)  # T = 8 at every depth
    (report,) = analysis.transfer(fixed, source=8, target=16)
    assert "inference_steps" not in report.family and report.transfer_holds


def test_contour_figure_panels_shared_scale_and_markers():
    records = synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0)
    records.loc[(records.depth == 16) & (records.eta == 0.5) & (records.beta == 10.0), "status"] = "no_learning"
    fig = plots.contour_figure(analysis.surfaces(records), "depth")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["H = 8", "H = 16", "H = 32"]
    assert fig.get_suptitle() == "μPC, Tanh, MNIST (PC, N = 512): transfer across depth"
    for ax in panels:
        (star,) = [line for line in ax.lines if line.get_gid() == plots.OPTIMUM_GID]
        assert (star.get_xdata()[0], star.get_ydata()[0]) == (1.0, 0.1)
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    failed = [c for c in panels[1].collections if c.get_gid() == plots.FAILED_GID]
    assert len(failed) == 1 and failed[0].get_offsets().tolist() == [[10.0, 0.5]]
    assert not [c for c in panels[0].collections if c.get_gid() == plots.FAILED_GID]
    meshes = [c for ax in panels for c in ax.collections if c.get_gid() == plots.SURFACE_GID]
    assert len(meshes) == 3 and len({(m.norm.vmin, m.norm.vmax) for m in meshes}) == 1  # one colour scale
    # every grid point is measured: colour everywhere but at the failed point, (η 0.5, β 10) at H = 16
    assert [int(m.get_array().mask.sum()) for m in meshes] == [0, 1, 0]
    assert meshes[1].get_array().mask[ETAS[::-1].index(0.5), BETAS[::-1].index(10.0)]


def test_transfer_figure_marks_each_sizes_optimum():
    etas = [1.0, 0.5, 0.25, 0.125]
    fig = plots.transfer_figure(analysis.surfaces(synthetic([8, 16], lambda s: 4 / s, lambda s: 1.0, etas=etas)),
                                "depth")
    stars = [(line.get_xdata()[0], line.get_ydata()[0]) for line in fig.axes[0].lines
             if line.get_gid() == plots.OPTIMUM_GID]
    assert [s[0] for s in stars] == [0.5, 0.25]
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "activity learning rate β"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["H = 8", "H = 16", "optimum",
                                                                 "error bars: ± seed std"]


def test_cli_transfer_json_and_text(tmp_path):
    write_sweep(tmp_path, synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0))
    runner = CliRunner()
    result = runner.invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (family,) = out["families"]
    assert family["recommended_eta"] == pytest.approx(0.1) and family["transfer_holds"] is True
    text = runner.invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path)])
    assert "recommended   η = 0.1, β = 1" in text.stdout and "transfer holds" in text.stdout


def test_cli_transfer_shows_the_source_surface_and_strict_json_when_the_recommendation_failed(tmp_path):
    records = synthetic([8, 32], lambda s: 0.1, lambda s: 1.0)
    records.loc[(records.depth == 32) & (records.eta == 0.1) & (records.beta == 1.0), "status"] = "diverged"
    records.loc[(records.depth == 8) & (records.eta == 0.5) & (records.beta == 10.0), "status"] = "no_learning"
    write_sweep(tmp_path, records)
    runner = CliRunner()
    result = runner.invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    (family,) = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))["families"]
    assert family["regret"] is None and family["transfer_holds"] is False
    assert len(family["source_surface"]) == len(ETAS) * len(BETAS)
    text = runner.invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path)]).stdout
    assert "the source's optimum failed there" in text and "transfer does NOT hold" in text
    table = text.split("seed-mean min train loss at the source")[1].splitlines()[1:2 + len(ETAS)]
    assert table[0].split()[3:] == [f"{b:g}" for b in BETAS]
    row = {line.split()[0]: line.split()[1:] for line in table[1:]}
    assert row["0.1"][BETAS.index(1.0)] == "*0.01" and row["0.5"][BETAS.index(10.0)] == "✕"
    assert row["0.01"][BETAS.index(0.05)] == f"{10 ** ((1 + np.log10(20) ** 2) - 2):.3g}"


@pytest.mark.parametrize("args,message", [
    (["--from", "32", "--to", "8"], "must be smaller than"),
    (["--from", "12", "--to", "32"], "no sweep holds depth 12"),
    (["--from", "8", "--to", "32", "--sweep", "nope"], "no sweep 'nope'"),
    (["--from", "8", "--to", "32", "--axis", "height"], "axis: must be one of depth, width"),
])
def test_cli_transfer_bad_input_exits_2(tmp_path, args, message):
    write_sweep(tmp_path, synthetic([8, 32], lambda s: 0.1, lambda s: 1.0))
    result = CliRunner().invoke(app, ["transfer", *args, "--results", str(tmp_path)])
    assert result.exit_code == 2 and message in result.stderr


def test_cli_plot_writes_pngs_and_bad_input_writes_nothing(tmp_path):
    empty = tmp_path / "empty"
    result = CliRunner().invoke(app, ["plot", "--results", str(empty)])
    assert result.exit_code == 2 and "no records" in result.stderr and not empty.exists()
    write_sweep(tmp_path, synthetic([8, 16], lambda s: 0.1, lambda s: 1.0))
    bad = CliRunner().invoke(app, ["plot", "--results", str(tmp_path), "--axis", "height"])
    assert bad.exit_code == 2 and not (tmp_path / "toy" / "plots").exists()
    result = CliRunner().invoke(app, ["plot", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in (tmp_path / "toy" / "plots").iterdir())
    assert pngs == ["contours_toy_mnist_tanh_mupc_pc_N512_by_depth.png",
                    "transfer_toy_mnist_tanh_mupc_pc_N512_by_depth.png"]
    assert all((tmp_path / "toy" / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


@pytest.mark.parametrize("fmt,magic", [("pdf", b"%PDF"), ("svg", b"<svg"), ("png", b"\x89PNG")])
def test_cli_plot_writes_the_format_asked_for(tmp_path, fmt, magic):
    write_sweep(tmp_path, synthetic([8, 16], lambda s: 0.1, lambda s: 1.0))
    result = CliRunner().invoke(app, ["plot", "--results", str(tmp_path), "--format", fmt])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "toy" / "plots").iterdir())
    assert [f.name for f in files] == [f"contours_toy_mnist_tanh_mupc_pc_N512_by_depth.{fmt}",
                                       f"transfer_toy_mnist_tanh_mupc_pc_N512_by_depth.{fmt}"]
    assert all(magic in f.read_bytes()[:400] for f in files)


def png_width(path) -> int:
    """The pixel width in a PNG's IHDR chunk."""
    return int.from_bytes(path.read_bytes()[16:20], "big")


def test_cli_plot_dpi_scales_the_png(tmp_path):
    write_sweep(tmp_path, synthetic([8, 16], lambda s: 0.1, lambda s: 1.0))
    widths = []
    for dpi in (50, 100):
        assert CliRunner().invoke(app, ["plot", "--results", str(tmp_path), "--dpi", str(dpi)]).exit_code == 0
        widths.append(png_width(tmp_path / "toy" / "plots" / "transfer_toy_mnist_tanh_mupc_pc_N512_by_depth.png"))
    assert abs(widths[1] - 2 * widths[0]) <= 2  # the same figure at twice the pixels per inch


@pytest.mark.parametrize("args,message", [
    (["--format", "gif"], "--format: must be one of png, pdf, svg; got 'gif'."),
    (["--dpi", "0"], "--dpi: must be an integer of at least 1; got 0."),
])
def test_cli_plot_refuses_a_bad_format_or_dpi_and_writes_nothing(tmp_path, args, message):
    write_sweep(tmp_path, synthetic([8, 16], lambda s: 0.1, lambda s: 1.0))
    result = CliRunner().invoke(app, ["plot", "--results", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "toy" / "plots").exists()


def test_save_figure_takes_the_format_from_the_suffix(tmp_path):
    fig = plots.transfer_figure(analysis.surfaces(synthetic([8, 16], lambda s: 0.1, lambda s: 1.0)), "depth")
    assert plots.save_figure(fig, tmp_path / "a.pdf").read_bytes()[:4] == b"%PDF"
    assert b"<svg" in plots.save_figure(fig, tmp_path / "a.svg").read_bytes()[:400]
    with pytest.raises(InputError, match=r"^format: must be one of png, pdf, svg; got 'gif'\.$"):
        plots.save_figure(fig, tmp_path / "a.gif")
    with pytest.raises(InputError, match=r"^dpi: must be an integer of at least 1; got -3\.$"):
        plots.save_figure(fig, tmp_path / "b.png", dpi=-3)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.pdf", "a.svg"]


def test_real_tiny_sweep_to_a_transfer_recommendation(tmp_path):
    data = classification_data(9, 640, 200)
    etas, betas = [0.1, 0.01], [1.0, 0.1]
    seeds, eta_grid, beta_grid = (np.array(a).ravel() for a in np.meshgrid([0], etas, betas, indexing="ij"))
    for depth in (2, 4):
        cfg = CellConfig(width=16, depth=depth, batch_size=32, epochs=1.0, eval_every=5)
        result = train_cell(cfg, *data, seeds, eta_grid, beta_grid)
        write_cell(tmp_path, "tiny", f"depth{depth}", cell_records(result, "synthetic"))
        write_curves(tmp_path, "tiny", f"depth{depth}", cell_curves(result, "synthetic"))
    out = CliRunner().invoke(app, ["transfer", "--from", "2", "--to", "4", "--results", str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    (family,) = json.loads(out.stdout)["families"]
    records = pd.read_parquet(tmp_path / "tiny" / "records" / "depth2.parquet")
    best = records.loc[records.min_train_loss.idxmin()]
    assert (family["source_optimum"]["eta"], family["source_optimum"]["beta"]) == (best.eta, best.beta)
    assert family["target_swept"] and family["regret"] >= 1.0
    plotted = CliRunner().invoke(app, ["plot", "--results", str(tmp_path)])
    assert plotted.exit_code == 0, plotted.output
    assert (tmp_path / "tiny" / "plots" / "accuracy_tiny_synthetic_tanh_mupc_pc_N16_by_depth.png").is_file()
    assert (tmp_path / "tiny" / "plots" / "curves_tiny_synthetic_tanh_mupc_pc_N16_by_depth.png").is_file()


def test_cell_curves_by_hand():
    cfg = CellConfig(width=4, depth=2, eval_every=10)
    losses = np.arange(50, dtype=float).reshape(2, 25)
    result = CellResult(cfg=cfg, seeds=np.array([0, 1]), etas=np.array([0.1, 0.1]), betas=np.array([1.0, 1.0]),
                        losses=losses, eval_steps=np.array([10, 20]), eval_acc=np.array([[50.0, 60.0], [55.0, 65.0]]),
                        test_acc_final=np.array([70.0, 75.0]), status=np.zeros(2, int), steps_run=np.array([25, 25]),
                        residual_steps=np.array([0, 10, 20]), residuals=np.array([[0.5, 0.4, 0.3], [0.6, 0.5, 0.4]]),
                        wall_s=1.0, chunk=1)
    curves = cell_curves(result, "mnist", every=10)
    first = curves[curves.seed == 0]
    assert first.step.tolist() == [0, 10, 20, 25]
    np.testing.assert_array_equal(first.train_loss, [0.0, 10.0, 20.0, np.nan])
    np.testing.assert_array_equal(first.test_acc, [np.nan, 50.0, 60.0, 70.0])
    np.testing.assert_array_equal(first.inference_residual, [0.5, 0.4, 0.3, np.nan])
    assert curves[curves.seed == 1].test_acc.tolist()[-1] == 75.0


def test_accuracy_figure_draws_each_size_at_its_optimum():
    records = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0)
    rows = []
    for depth in (8, 16):
        for seed in (0, 1, 2):
            for eta, beta in ((0.1, 1.0), (0.5, 10.0)):
                for step in (0, 300, 600):
                    acc = np.nan if step == 0 else (depth / 8) * step / 10 + seed + (eta == 0.5) * 40
                    rows.append(dict(dataset="mnist", activation="tanh", param="mupc", algorithm="pc", width=512,
                                     depth=depth, seed=seed, eta=eta, beta=beta, step=step, test_acc=acc))
    fig = plots.accuracy_figure(analysis.surfaces(records), pd.DataFrame(rows), "depth")
    lines = {line.get_gid(): line for line in fig.axes[0].lines}
    assert set(lines) == {"depth=8", "depth=16"}
    np.testing.assert_allclose(lines["depth=8"].get_ydata(), [31.0, 61.0])  # seed mean at (0.1, 1): 30+1, 60+1
    np.testing.assert_allclose(lines["depth=16"].get_xdata(), [300, 600])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "H = 8 (η = 0.1, β = 1)", "H = 16 (η = 0.1, β = 1)", "± seed std"]
    assert fig.get_suptitle() == "μPC, Tanh, MNIST (PC, N = 512): test accuracy"
    assert plots.accuracy_figure(analysis.surfaces(records), pd.DataFrame(rows).assign(test_acc=np.nan),
                                 "depth") is None


def test_cli_transfer_on_a_table_missing_columns_exits_2(tmp_path):
    write_sweep(tmp_path, synthetic([8, 16], lambda s: 0.1, lambda s: 1.0).drop(columns="status"))
    result = CliRunner().invoke(app, ["transfer", "--from", "8", "--to", "16", "--results", str(tmp_path)])
    assert result.exit_code == 2 and "lacks the columns status" in result.stderr
    assert CliRunner().invoke(app, ["plot", "--results", str(tmp_path)]).exit_code == 2
    assert not (tmp_path / "toy" / "plots").exists()


def test_signed_slopes_never_read_minus_zero():
    assert [analysis.signed(x) for x in (-1e-9, 0.0, -0.004, -0.014, 0.126)] == ["+0.00", "+0.00", "+0.00", "-0.01", "+0.13"]


def test_a_patch_is_drawn_on_the_full_grid_with_colour_only_where_measured():
    patch_etas, patch_betas = [0.5, 0.1, 0.05], [5.0, 1.0, 0.5]
    records = patch(synthetic([8, 32], lambda s: 0.1, lambda s: 1.0), 32, patch_etas, patch_betas)
    surf = analysis.surfaces(records)
    fig = plots.contour_figure(surf, "depth", edges=analysis.stability_edges(surf, "depth"))
    source, target = [ax for ax in fig.axes if ax.get_title()]
    assert (source.get_xlim(), source.get_ylim()) == (target.get_xlim(), target.get_ylim())
    assert [t.get_text() for t in target.get_xticklabels()] == ["0.05", "0.1", "0.5", "1", "5", "10"]
    # the only colour-mapped artist is one square per grid point (ascending η rows, β columns), masked where
    # not measured: at 32 exactly the patch, rows 1–3 (η 0.05, 0.1, 0.5) and columns 2–4 (β 0.5, 1, 5)
    (mesh,) = [c for c in target.collections if c.get_array() is not None]
    assert mesh.get_gid() == plots.SURFACE_GID
    coloured = np.zeros((4, 6), bool)
    coloured[1:4, 2:5] = True
    np.testing.assert_array_equal(~np.ma.getmaskarray(mesh.get_array()), coloured)
    (full,) = [c for c in source.collections if c.get_array() is not None]
    assert not np.ma.getmaskarray(full.get_array()).any()
    # the patch is outlined: the outline holds its 9 grid points and no other
    assert not [p for p in source.patches if p.get_gid() == plots.PATCH_GID]
    (outline,) = [p for p in target.patches if p.get_gid() == plots.PATCH_GID]
    box = outline.get_bbox()
    inside = {(eta, beta) for eta in ETAS for beta in BETAS if box.x0 < beta < box.x1 and box.y0 < eta < box.y1}
    assert inside == {(eta, beta) for eta in patch_etas for beta in patch_betas}
    # the β edge at 32 is the patch's largest β, 5: hollow (a lower bound), not an unstable region beyond
    markers = {(line.get_marker(), line.get_xdata()[0], line.get_ydata()[0]): line.get_color()
               for line in target.lines if line.get_gid() == plots.EDGE_GID}
    assert markers == {("^", 1.0, 0.5): "none", (">", 5.0, 0.1): "none"}


def test_extension_points_have_a_marker_and_a_legend_entry():
    records = synthetic([8, 16], lambda s: 1.0, lambda s: 1.0).assign(extension=False)
    extra = synthetic([8], lambda s: 1.0, lambda s: 1.0, etas=[2.5], betas=[1.0, 0.5]).assign(extension=True)
    fig = plots.contour_figure(analysis.surfaces(pd.concat([records, extra])), "depth")
    source, target = [ax for ax in fig.axes if ax.get_title()]
    (diamonds,) = [c for c in source.collections if c.get_gid() == plots.EXTENSION_GID]
    assert sorted(map(tuple, diamonds.get_offsets().tolist())) == [(0.5, 2.5), (1.0, 2.5)]
    assert not [c for c in target.collections if c.get_gid() == plots.EXTENSION_GID]
    assert "extension (grid.extend)" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert target.get_ylim() == source.get_ylim() and source.get_ylim()[1] > 2.5  # both panels reach η 2.5


def test_figure_keys_name_the_sweep_however_many_sweeps_there_are():
    depth = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0)
    assert sorted(plots.figures(depth)) == ["contours_mnist_tanh_mupc_pc_N512_by_depth",
                                            "transfer_mnist_tanh_mupc_pc_N512_by_depth"]
    assert sorted(plots.figures(depth.assign(sweep="a"))) == ["contours_a_mnist_tanh_mupc_pc_N512_by_depth",
                                                             "transfer_a_mnist_tanh_mupc_pc_N512_by_depth"]
    both = pd.concat([depth.assign(sweep="a"), depth.assign(sweep="b")])
    assert sorted(plots.figures(both)) == [f"{kind}_{sweep}_mnist_tanh_mupc_pc_N512_by_depth"
                                           for kind in ("contours", "transfer") for sweep in ("a", "b")]
    width = synthetic([64, 128, 256], lambda s: 0.1, lambda s: 1.0, axis="width")
    assert sorted(plots.figures(width)) == ["contours_mnist_tanh_mupc_pc_H8_by_width",
                                            "transfer_mnist_tanh_mupc_pc_H8_by_width"]


def test_varied_axis_is_the_one_with_more_sizes_and_depth_on_a_tie():
    assert analysis.varied_axis(synthetic([8, 16], lambda s: 0.1, lambda s: 1.0)) == "depth"
    assert analysis.varied_axis(synthetic([64, 128], lambda s: 0.1, lambda s: 1.0, axis="width")) == "width"
    tie = pd.concat([synthetic([16], lambda s: 0.1, lambda s: 1.0), synthetic([64], lambda s: 0.1, lambda s: 1.0,
                                                                                axis="width")])
    assert tie.depth.nunique() == tie.width.nunique() == 2 and analysis.varied_axis(tie) == "depth"


def test_load_curves_names_a_missing_sweep_and_is_none_for_a_sweep_without_curves(tmp_path):
    write_sweep(tmp_path, synthetic([8], lambda s: 0.1, lambda s: 1.0))
    assert load_curves(tmp_path, "toy") is None
    with pytest.raises(ResultsError, match="no sweep 'nope' with records under .*; found: toy"):
        load_curves(tmp_path, "nope")


def test_words_name_identifiers_and_titles_use_them():
    assert [plots.words("dataset", d) for d in ("mnist", "fashion_mnist")] == ["MNIST", "Fashion-MNIST"]
    assert [plots.words("activation", a) for a in ("tanh", "relu", "linear")] == ["Tanh", "ReLU", "Linear"]
    assert [plots.words("param", p) for p in ("mupc", "sp")] == ["μPC", "SP"]
    assert [plots.words("algorithm", a) for a in ("pc", "bp")] == ["PC", "BP"]
    assert [plots.words("width", 512), plots.words("depth", 8), plots.words("inference_steps", "H")] == [
        "N = 512", "H = 8", "T = H"]
    relu = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0, param="sp").assign(
        dataset="fashion_mnist", activation="relu", inference_steps=lambda r: r.depth)
    assert plots.contour_figure(analysis.surfaces(relu), "depth").get_suptitle() == \
        "SP, ReLU, Fashion-MNIST (PC, N = 512, T = H): transfer across depth"
    fixed = synthetic([64, 128], lambda s: 0.1, lambda s: 1.0, axis="width").assign(inference_steps=4)
    assert plots.transfer_figure(analysis.surfaces(fixed), "width").get_suptitle() == \
        "μPC, Tanh, MNIST (PC, H = 8, T = 4): transfer across width"
    bp = synthetic([8, 16], lambda s: 0.1, lambda s: 1.0, betas=[1.0]).assign(algorithm="bp", beta=np.nan)
    fig = plots.transfer_figure(analysis.surfaces(bp), "depth")
    assert fig.get_suptitle() == "μPC, Tanh, MNIST (BP, N = 512): transfer across depth" and len(fig.axes) == 1


def test_transfer_figure_marks_failed_points_in_the_lines_colour():
    records = synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0)
    d, eta, beta, seed = records.depth, records.eta, records.beta, records.seed
    records.loc[(d == 16) & (eta == 0.5) & (beta == 1.0) & (seed == 2), "status"] = "diverged"  # on H = 16's η line
    records.loc[(d == 8) & (eta == 0.01) & (beta == 1.0) & (seed == 0), "status"] = "no_learning"  # on H = 8's
    records.loc[(d == 16) & (eta == 0.05) & (beta == 10.0), "status"] = "diverged"  # on neither line of H = 16
    records.loc[d == 32, "status"] = "diverged"  # every point of H = 32
    fig = plots.transfer_figure(analysis.surfaces(records), "depth")
    by_eta, by_beta, eta_strip, beta_strip = fig.axes  # the loss panels, and under each a strip of failures
    assert (eta_strip.get_xlabel(), beta_strip.get_xlabel()) == ("weight learning rate η", "activity learning rate β")
    legend = fig.legends[0]
    colours = {t.get_text(): to_hex(h.get_color()) for h, t in zip(legend.legend_handles, legend.get_texts())}
    rows = [t.get_text() for t in eta_strip.get_yticklabels()]
    assert rows == ["H = 8", "H = 16", "H = 32"]
    failed = {(tuple(line.get_xdata()), rows[int(line.get_ydata()[0])]): to_hex(line.get_color())
              for line in eta_strip.lines if line.get_gid() == plots.FAILED_GID}
    assert failed == {((0.01,), "H = 8"): colours["H = 8"], ((0.5,), "H = 16"): colours["H = 16"]}
    assert not [line for ax in (by_eta, by_beta, beta_strip) for line in ax.lines if line.get_gid() == plots.FAILED_GID]
    # the H = 16 line runs through its valid points only
    (line16,) = [c.lines[0] for c in by_eta.containers if to_hex(c.lines[0].get_color()) == colours["H = 16"]]
    assert line16.get_xdata().tolist() == [0.01, 0.05, 0.1]
    assert "H = 32: no point with every seed ok" in colours
    assert any(text.startswith("a seed diverged or stopped") for text in colours)


def curve_rows(depth: int, optimum: tuple[float, float], stopped: dict[tuple, int]) -> list[dict]:
    """Curves of every grid point at one depth: train loss (1 + seed/10) · 10^(-step/10), twice that
    off the optimum, at steps 0, 10, 20; NaN from the step `stopped[(eta, beta, seed)]` on; test
    accuracy only at step 30, the end."""
    rows = []
    for seed in (0, 1, 2):
        for eta in ETAS:
            for beta in BETAS:
                for step in (0, 10, 20, 30):
                    loss = (1 + seed / 10) * 10 ** (-step / 10) * (1 if (eta, beta) == optimum else 2)
                    if step == 30 or step >= stopped.get((eta, beta, seed), 99):
                        loss = np.nan
                    rows.append(dict(dataset="mnist", activation="tanh", param="mupc", algorithm="pc", width=512,
                                     depth=depth, inference_steps=depth, seed=seed, eta=eta, beta=beta, step=step,
                                     train_loss=loss, test_acc=90.0 if step == 30 else np.nan))
    return rows


def test_curves_figure_draws_each_sizes_optimum_and_its_grid_neighbours():
    records = synthetic([8, 16], lambda s: 0.1 if s == 8 else 0.05, lambda s: 1.0).assign(
        inference_steps=lambda r: r.depth)
    records.loc[(records.depth == 16) & (records.eta == 0.1) & (records.beta == 1.0) & (records.seed == 1),
                "status"] = "diverged"
    curves = pd.DataFrame(curve_rows(8, (0.1, 1.0), {}) + curve_rows(16, (0.05, 1.0), {(0.1, 1.0, 1): 20}))
    figs = plots.figures(records, curves=curves)
    assert sorted(figs) == [f"{kind}_mnist_tanh_mupc_pc_N512_by_depth"
                            for kind in ("accuracy", "contours", "curves", "transfer")]
    fig = figs["curves_mnist_tanh_mupc_pc_N512_by_depth"]
    assert fig.get_suptitle() == ("μPC, Tanh, MNIST (PC, N = 512, T = H): train loss at each size's optimum "
                                  "and its grid neighbours")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["H = 8", "H = 16"]
    assert all(ax.get_yscale() == "log" for ax in panels)
    for ax, best, neighbours in (
        (panels[0], "η = 0.1, β = 1", {"η = 0.05, β = 1", "η = 0.5, β = 1", "η = 0.1, β = 0.5", "η = 0.1, β = 5"}),
        (panels[1], "η = 0.05, β = 1",
         {"η = 0.01, β = 1", "η = 0.1, β = 1", "η = 0.05, β = 0.5", "η = 0.05, β = 5"}),
    ):
        (bold,) = [line for line in ax.lines if line.get_gid() == plots.OPTIMUM_GID]
        assert bold.get_label() == f"{best} (optimum)"
        np.testing.assert_allclose(bold.get_xdata(), [0, 10, 20])
        np.testing.assert_allclose(bold.get_ydata(), [1.1, 0.11, 0.011])  # seed mean of 1, 1.1, 1.2 times 10^(-step/10)
        thin = [line for line in ax.lines if line.get_gid() == plots.NEIGHBOUR_GID]
        assert {line.get_label() for line in thin} == neighbours
        assert all(line.get_linewidth() < bold.get_linewidth() for line in thin)
    # at H = 16 the neighbour (0.1, 1) lost seed 1 at step 20: its mean ends at step 10, with ✕ there
    (cross,) = [line for line in panels[1].lines if line.get_gid() == plots.FAILED_GID]
    assert (cross.get_xdata()[0], cross.get_ydata()[0]) == pytest.approx((10, 0.22))
    assert not [line for line in panels[0].lines if line.get_gid() == plots.FAILED_GID]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "± seed std", "a seed diverged or stopped: the mean ends where the first seed stopped"]
    assert plots.curves_figure(analysis.surfaces(records), curves.assign(train_loss=np.nan), "depth") is None
