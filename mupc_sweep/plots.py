"""Figures from records and seed-mean surfaces (`analysis.surfaces`): each function draws and returns
a `matplotlib.figure.Figure`. Nothing here touches pyplot or the backend, so figures show inline in a
notebook and the command line saves them (`save_figure`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from .analysis import (
    Axis,
    check_axis,
    families,
    family_records,
    optimum,
    optimum_probabilities,
    other_axis,
    stability_edges,
    surfaces,
)
from .atomic import write_atomic

OPTIMUM_GID = "optimum"
FAILED_GID = "failed"
PROBABILITY_GID = "probability"
EDGE_GID = "stability edge"
SHOWN_PROBABILITY = 0.05  # bootstrap optima less likely than this are not drawn
LABELLED_PROBABILITY = 0.15  # nor labelled with their percentage below this


def _title(width: int, depth: int) -> str:
    return f"N = {width}, H = {depth}"


def contour_figure(
    family: pd.DataFrame, axis: Axis, *, probability: list[dict] | None = None, edges: list[dict] | None = None
) -> Figure:
    """Fig. 5: one panel per size along `axis`; x = β, y = η (log); colour = log10 seed-mean min
    train loss on one scale for all panels; ★ the optimum; ✕ points where a seed diverged or stopped.
    With `probability` (`analysis.optimum_probabilities`), white rings around the grid points the
    seed bootstrap makes the optimum, sized by that probability and labelled with it; with `edges`
    (`analysis.stability_edges`), ▲ at the largest stable η (at the optimum's β) and ▶ at the largest
    stable β (at its η), hollow where that is the grid's edge."""
    sizes = sorted(family[axis].unique())
    fig = Figure(figsize=(3.4 * len(sizes) + 1.2, 3.8), layout="constrained")
    axes = fig.subplots(1, len(sizes), sharey=True, squeeze=False)
    valid = family[family["valid"]]
    log_loss = np.log10(valid["loss_mean"].to_numpy())
    norm = Normalize(vmin=float(log_loss.min()), vmax=float(log_loss.max())) if len(log_loss) else Normalize(0, 1)
    levels = np.linspace(norm.vmin, norm.vmax + 1e-9, 16)
    for ax, size in zip(axes[0], sizes):
        surface = family[family[axis] == size]
        grid = surface.pivot_table(index="eta", columns="beta", values="loss_mean", aggfunc="first")
        ok = surface.pivot_table(index="eta", columns="beta", values="valid", aggfunc="first").reindex_like(grid)
        z = np.where(ok.fillna(False).to_numpy(bool), np.log10(grid.to_numpy(float)), np.nan)
        if grid.shape[0] >= 2 and grid.shape[1] >= 2 and np.isfinite(z).sum() >= 3:
            ax.contourf(grid.columns, grid.index, z, levels=levels, norm=norm, cmap="viridis", extend="both")
        ax.scatter(surface.beta, surface.eta, c=np.log10(surface.loss_mean.clip(lower=1e-12)), norm=norm,
                   cmap="viridis", s=12, edgecolors="k", linewidths=0.3)
        failed = surface[~surface["valid"]]
        if len(failed):
            ax.scatter(failed.beta, failed.eta, marker="x", color="red", s=40, linewidths=1.5, gid=FAILED_GID,
                       label="diverged / no learning")
        if probability is not None:
            _draw_probability(ax, [p for p in probability if p["size"] == size])
        if edges is not None:
            _draw_edges(ax, [e for e in edges if e["size"] == size], optimum(surface, int(size)))
        best = optimum(surface, int(size))
        if best is not None:
            ax.plot([best.beta], [best.eta], marker="*", ms=16, color="white", markeredgecolor="k", gid=OPTIMUM_GID,
                    linestyle="none", label="optimum")
        row = surface.iloc[0]
        ax.set(xscale="log", yscale="log", xlabel="β (activity lr)", title=_title(int(row.width), int(row.depth)))
        ax.set_facecolor("0.85")  # grey where no valid point: failed regions never look like good ones
        _grid_ticks(ax, np.sort(surface.beta.unique()), np.sort(surface.eta.unique()))
    axes[0][0].set_ylabel("η (weight lr)")
    markers = [
        Line2D([], [], marker="*", ms=12, color="white", markeredgecolor="k", linestyle="none", label="optimum"),
        Line2D([], [], marker="x", color="red", linestyle="none", label="diverged / no learning (any seed)"),
    ]
    if probability is not None:
        markers.append(Line2D([], [], marker="o", ms=10, color="none", markeredgecolor="0.4", linestyle="none",
                              label="P(optimum), seed bootstrap (ring size)"))
    if edges is not None:
        markers += [Line2D([], [], marker=m, ms=8, color=EDGE_COLOUR, markeredgecolor="k", linestyle="none", label=t)
                    for m, t in (("^", "largest stable η"), (">", "largest stable β (hollow: the grid's edge)"))]
    fig.legend(handles=markers, loc="outside lower center", ncols=len(markers), fontsize=8, frameon=False)
    mappable = ScalarMappable(norm=norm, cmap="viridis")
    fig.colorbar(mappable, ax=axes[0].tolist(), label="log10 min train loss (seed mean)")
    fig.suptitle(_family_title(family, axis))
    return fig


EDGE_COLOUR = "orange"


def _draw_probability(ax, points: list[dict]) -> None:
    """Rings sized by each point's bootstrap probability of being the optimum, labelled above 15 %."""
    shown = [p for p in points if p["probability"] >= SHOWN_PROBABILITY]
    if not shown:
        return
    ax.scatter([p["beta"] for p in shown], [p["eta"] for p in shown], s=[60 + 340 * p["probability"] for p in shown],
               facecolors="none", edgecolors="white", linewidths=1.2, gid=PROBABILITY_GID, zorder=3)
    for p in shown:
        if p["probability"] >= LABELLED_PROBABILITY:
            ax.annotate(f"{100 * p['probability']:.0f}%", (p["beta"], p["eta"]), xytext=(7, 6),
                        textcoords="offset points", fontsize=7, color="white", zorder=4,
                        path_effects=[patheffects.withStroke(linewidth=2, foreground="k")])


def _draw_edges(ax, edges: list[dict], best) -> None:
    """▲ at the largest stable η on the optimum's β, ▶ at the largest stable β on its η; hollow where
    the edge is the grid's own (the real edge lies beyond it)."""
    for edge in edges:
        marks = [("^", edge["eta"], best.beta, edge["eta_at_grid_edge"])]
        if edge["beta"] is not None:
            marks.append((">", best.eta, edge["beta"], edge["beta_at_grid_edge"]))
        for marker, eta, beta, at_grid_edge in marks:
            ax.plot([beta], [eta], marker=marker, ms=8, linestyle="none", markeredgecolor="k", gid=EDGE_GID,
                    color="none" if at_grid_edge else EDGE_COLOUR, zorder=4)


def _grid_ticks(ax, xs: np.ndarray, ys: np.ndarray) -> None:
    """Ticks at the grid values, limits padded so edge markers show whole."""
    for values, axis, limits in ((xs, ax.xaxis, ax.set_xlim), (ys, ax.yaxis, ax.set_ylim)):
        axis.set_ticks(values, [f"{v:g}" for v in values])
        axis.set_minor_locator(NullLocator())
        limits(values.min() / 1.25, values.max() * 1.25)
    ax.tick_params(axis="x", labelrotation=45)


def transfer_figure(family: pd.DataFrame, axis: Axis) -> Figure:
    """μP-style transfer: seed-mean min loss against η (at each size's best β) and against β (at its
    best η), one line per size, ± seed std as error bars, each line's optimum marked."""
    uses_beta = family["algorithm"].iloc[0] == "pc"
    fig = Figure(figsize=(11 if uses_beta else 5.5, 4))
    axes = fig.subplots(1, 2 if uses_beta else 1, squeeze=False)
    colours = _colours(family[axis].nunique())
    for colour, (size, surface) in zip(colours, family.groupby(axis)):
        best = optimum(surface, int(size))
        if best is None:
            continue
        panels = [(axes[0][0], "eta", "beta", best.beta), (axes[0][-1], "beta", "eta", best.eta)]
        for ax, rate, fixed, value in panels[: 1 + uses_beta]:
            on_line = surface["valid"] & (True if value is None else np.isclose(surface[fixed], value))
            line = surface[on_line].sort_values(rate)
            ax.errorbar(line[rate], line["loss_mean"], yerr=line["loss_std"], color=colour, marker="o", ms=3,
                        capsize=2, label=f"{axis} {size}")
            ax.plot([getattr(best, rate)], [best.loss], marker="*", ms=14, color=colour, markeredgecolor="k",
                    gid=OPTIMUM_GID, linestyle="none")
    axes[0][0].set(xscale="log", yscale="log", xlabel="η (weight lr)", ylabel="min train loss (seed mean)",
                   title="at each size's best β" if uses_beta else "")
    if uses_beta:
        axes[0][1].set(xscale="log", yscale="log", xlabel="β (activity lr)", title="at each size's best η")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(_family_title(family, axis))
    fig.tight_layout()
    return fig


def accuracy_figure(family: pd.DataFrame, curves: pd.DataFrame, axis: Axis) -> Figure | None:
    """Fig. 1 style: test accuracy against step, one line per size at that size's optimum (η, β),
    mean over seeds with ± std shaded. None if the curves hold no evaluation for this family."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    colours = _colours(family[axis].nunique())
    drawn = 0
    for colour, (size, surface) in zip(colours, family.groupby(axis)):
        best = optimum(surface, int(size))
        if best is None:
            continue
        row = surface.iloc[0]
        mine = curves[
            (curves.width == row.width) & (curves.depth == row.depth) & (curves.activation == row.activation)
            & (curves.param == row.param) & (curves.algorithm == row.algorithm) & (curves.dataset == row.dataset)
            & np.isclose(curves.eta, best.eta) & curves.test_acc.notna()
            & (curves.beta.isna() if best.beta is None else np.isclose(curves.beta.astype("float64"), best.beta))
        ]
        if "inference_steps" in curves:
            mine = mine[mine.inference_steps == row.inference_steps]
        if mine.empty:
            continue
        by_step = mine.groupby("step")["test_acc"].agg(["mean", "std"]).fillna({"std": 0.0})
        ax.plot(by_step.index, by_step["mean"], color=colour, marker="o", ms=3, gid=f"{axis}={size}",
                label=f"{axis} {size} (η {best.eta:g}, β {best.beta:g})")
        ax.fill_between(by_step.index, by_step["mean"] - by_step["std"], by_step["mean"] + by_step["std"],
                        color=colour, alpha=0.2)
        drawn += 1
    if not drawn:
        return None
    ax.set(xlabel="training step", ylabel="test accuracy (%)", title=_family_title(family, axis))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _colours(n: int) -> np.ndarray:
    return matplotlib.colormaps["plasma"](np.linspace(0, 0.85, n))


def figure_stem(family: dict, axis: Axis) -> str:
    """The file stem of a family's figures, e.g. mnist_tanh_mupc_pc_N512_by_depth."""
    fixed = other_axis(axis)
    steps = f"_T{family['inference_steps']}" if "inference_steps" in family else ""
    return (f"{family['dataset']}_{family['activation']}_{family['param']}_{family['algorithm']}"
            f"_{'N' if axis == 'depth' else 'H'}{family[fixed]}{steps}_by_{axis}")


def figures(records: pd.DataFrame, *, axis: Axis = "depth", curves: pd.DataFrame | None = None) -> dict[str, Figure]:
    """Every figure `mupc-sweep plot` draws for `records`, keyed by file stem (after the sweep's
    name when `records` hold several sweeps, so that none hides another's): per
    family along `axis`, the contours (`contours_<stem>`, PC only), loss against the rates
    (`transfer_<stem>`) and, where `curves` hold evaluations, test accuracy (`accuracy_<stem>`)."""
    check_axis(axis)
    surf = surfaces(records)
    several = "sweep" in surf and surf["sweep"].nunique() > 1  # then the stems start with the sweep's name
    out: dict[str, Figure] = {}
    for key, family in families(surf, axis):
        stem = (f"{key['sweep']}_" if several else "") + figure_stem(key, axis)
        if key["algorithm"] == "pc":
            out[f"contours_{stem}"] = contour_figure(
                family, axis, probability=optimum_probabilities(family_records(records, key), family, axis),
                edges=stability_edges(family, axis))
        out[f"transfer_{stem}"] = transfer_figure(family, axis)
        if curves is not None and (accuracy := accuracy_figure(family, curves, axis)) is not None:
            out[f"accuracy_{stem}"] = accuracy
    return out


def save_figure(figure: Figure, path: Path) -> Path:
    """Write a figure as a PNG, whole or not at all."""
    return write_atomic(path, lambda out: figure.savefig(out, dpi=120, bbox_inches="tight", format="png"))


def _family_title(family: pd.DataFrame, axis: Axis) -> str:
    row = family.iloc[0]
    fixed = "N" if axis == "depth" else "H"
    value = row.width if axis == "depth" else row.depth
    steps = ""
    if "inference_steps" in family and row.algorithm == "pc":
        if (family.inference_steps == family.depth).all():
            steps = ", T = H"
        elif family.inference_steps.nunique() == 1:
            steps = f", T = {row.inference_steps}"
    return f"{row.dataset}, {row.activation}, {row.param}, {row.algorithm}; {fixed} = {value}{steps}, varying {axis}"
