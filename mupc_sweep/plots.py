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
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullLocator

from .analysis import (
    Axis,
    check_axis,
    families,
    family_grid,
    family_records,
    is_patch,
    optimum,
    optimum_probabilities,
    other_axis,
    stability_edges,
    surfaces,
    varied_axis,
)
from .atomic import write_atomic

OPTIMUM_GID = "optimum"
FAILED_GID = "failed"
PROBABILITY_GID = "probability"
EDGE_GID = "stability edge"
SURFACE_GID = "surface"  # the coloured squares: one per measured valid grid point
PATCH_GID = "patch"  # the outline of a size's measured patch of the grid
EXTENSION_GID = "extension"
SHOWN_PROBABILITY = 0.05  # bootstrap optima less likely than this are not drawn
LABELLED_PROBABILITY = 0.15  # nor labelled with their percentage below this
EDGE_COLOUR = "orange"
UNMEASURED_COLOUR = "0.85"  # the panels' background: no colour where no valid point was measured


def _title(width: int, depth: int) -> str:
    return f"N = {width}, H = {depth}"


def contour_figure(
    family: pd.DataFrame, axis: Axis, *, probability: pd.DataFrame | None = None, edges: pd.DataFrame | None = None
) -> Figure:
    """Fig. 5: one panel per size along `axis`, every panel on the family's grid (the η and β values
    measured at any size); x = β, y = η (log). Each measured valid point is a square coloured by
    log10 seed-mean min train loss, one scale for all panels; grey where no valid point was
    measured; ✕ points where a seed diverged or stopped; ★ the optimum; a size that measured a
    patch of the grid has it outlined; ◇ extension points (grid.extend). With `probability`
    (`analysis.optimum_probabilities`), white rings around the grid points the seed bootstrap makes
    the optimum, sized by that probability and labelled with it; with `edges`
    (`analysis.stability_edges`), ▲ at the largest stable η (at the optimum's β) and ▶ at the largest
    stable β (at its η), hollow where that is the largest measured."""
    sizes = sorted(family[axis].unique())
    etas, betas = family_grid(family)
    eta_bounds, beta_bounds = _bounds(etas), _bounds(betas)
    fig = Figure(figsize=(3.4 * len(sizes) + 1.2, 3.8), layout="constrained")
    axes = fig.subplots(1, len(sizes), sharey=True, squeeze=False)
    valid = family[family["valid"]]
    log_loss = np.log10(valid["loss_mean"].to_numpy(float).clip(min=1e-12))
    norm = Normalize(vmin=float(log_loss.min()), vmax=float(log_loss.max())) if len(log_loss) else Normalize(0, 1)
    patches = extensions = unmeasured = False
    for ax, size in zip(axes[0], sizes):
        surface = family[family[axis] == size]
        i, j = np.searchsorted(etas, surface["eta"]), np.searchsorted(betas, surface["beta"].to_numpy(float))
        ok = surface["valid"].to_numpy(bool)
        z = np.full((len(etas), len(betas)), np.nan)  # (η, β), NaN where no valid point was measured
        z[i[ok], j[ok]] = np.log10(surface["loss_mean"].to_numpy(float)[ok].clip(min=1e-12))
        ax.pcolormesh(beta_bounds, eta_bounds, np.ma.masked_invalid(z), norm=norm, cmap="viridis", gid=SURFACE_GID)
        unmeasured = unmeasured or len(surface) < len(etas) * len(betas)
        if is_patch(surface, family):
            patches = True
            ax.add_patch(Rectangle((beta_bounds[j.min()], eta_bounds[i.min()]),
                                   beta_bounds[j.max() + 1] - beta_bounds[j.min()],
                                   eta_bounds[i.max() + 1] - eta_bounds[i.min()],
                                   fill=False, edgecolor="k", linewidth=1.5, gid=PATCH_GID, zorder=2))
        extended = surface[surface["extension"]]
        if len(extended):
            extensions = True
            ax.scatter(extended["beta"].to_numpy(float), extended["eta"], marker="D", s=70, facecolors="none",
                       edgecolors="magenta", linewidths=1.4, gid=EXTENSION_GID, zorder=3)
        failed = surface[~surface["valid"]]
        if len(failed):
            ax.scatter(failed["beta"].to_numpy(float), failed["eta"], marker="x", color="red", s=40, linewidths=1.5,
                       gid=FAILED_GID, zorder=3)
        best = optimum(surface, int(size))
        if probability is not None:
            _draw_probability(ax, probability[probability["size"] == size])
        if edges is not None and best is not None:
            _draw_edges(ax, edges[edges["size"] == size], best)
        if best is not None:
            ax.plot([best.beta], [best.eta], marker="*", ms=16, color="white", markeredgecolor="k", gid=OPTIMUM_GID,
                    linestyle="none", zorder=5)
        row = surface.iloc[0]
        ax.set(xscale="log", yscale="log", xlabel="β (activity lr)", title=_title(int(row.width), int(row.depth)))
        ax.set_facecolor(UNMEASURED_COLOUR)  # failed or unmeasured regions never look like good ones
        _grid_ticks(ax, betas, etas, beta_bounds, eta_bounds)
    axes[0][0].set_ylabel("η (weight lr)")
    markers = [
        Line2D([], [], marker="*", ms=12, color="white", markeredgecolor="k", linestyle="none", label="optimum"),
        Line2D([], [], marker="x", color="red", linestyle="none", label="diverged / no learning (any seed)"),
    ]
    if unmeasured:
        markers.append(Rectangle((0, 0), 1, 1, facecolor=UNMEASURED_COLOUR, label="not measured"))
    if patches:
        markers.append(Rectangle((0, 0), 1, 1, fill=False, edgecolor="k", linewidth=1.5,
                                 label="measured patch (grid.targets: patch)"))
    if extensions:
        markers.append(Line2D([], [], marker="D", ms=7, color="none", markeredgecolor="magenta", linestyle="none",
                              label="extension (grid.extend)"))
    if probability is not None:
        markers.append(Line2D([], [], marker="o", ms=10, color="none", markeredgecolor="0.4", linestyle="none",
                              label="P(optimum), seed bootstrap (ring size)"))
    if edges is not None:
        markers += [Line2D([], [], marker=m, ms=8, color=EDGE_COLOUR, markeredgecolor="k", linestyle="none", label=t)
                    for m, t in (("^", "largest stable η"), (">", "largest stable β (hollow: the largest measured)"))]
    fig.legend(handles=markers, loc="outside lower center", ncols=min(len(markers), len(sizes)), fontsize=8,
               frameon=False)
    mappable = ScalarMappable(norm=norm, cmap="viridis")
    fig.colorbar(mappable, ax=axes[0].tolist(), label="log10 min train loss (seed mean)")
    fig.suptitle(_family_title(family, axis))
    return fig


def _bounds(values: np.ndarray) -> np.ndarray:
    """The edges of the squares centred, in log space, on ascending grid values: midway between
    neighbours, and as far beyond the ends as the nearest neighbour's midpoint (a decade wide for one value)."""
    logs = np.log10(values)
    mids = (logs[1:] + logs[:-1]) / 2
    first = 2 * logs[0] - mids[0] if len(mids) else logs[0] - 0.5
    last = 2 * logs[-1] - mids[-1] if len(mids) else logs[-1] + 0.5
    return 10 ** np.concatenate([[first], mids, [last]])


def _draw_probability(ax, points: pd.DataFrame) -> None:
    """Rings sized by each point's bootstrap probability of being the optimum, labelled above 15 %."""
    shown = points[points["probability"] >= SHOWN_PROBABILITY]
    if shown.empty:
        return
    ax.scatter(shown["beta"].to_numpy(float), shown["eta"], s=60 + 340 * shown["probability"], facecolors="none",
               edgecolors="white", linewidths=1.2, gid=PROBABILITY_GID, zorder=3)
    for p in shown[shown["probability"] >= LABELLED_PROBABILITY].itertuples():
        ax.annotate(f"{100 * p.probability:.0f}%", (p.beta, p.eta), xytext=(7, 6),
                    textcoords="offset points", fontsize=7, color="white", zorder=4,
                    path_effects=[patheffects.withStroke(linewidth=2, foreground="k")])


def _draw_edges(ax, edges: pd.DataFrame, best) -> None:
    """▲ at the largest stable η on the optimum's β, ▶ at the largest stable β on its η; hollow where
    the edge is the largest measured (the real edge lies beyond it)."""
    for edge in edges.to_dict("records"):
        marks = [("^", edge["eta"], best.beta, edge["eta_beyond_measured"])]
        if best.beta is not None:
            marks.append((">", best.eta, edge["beta"], edge["beta_beyond_measured"]))
        for marker, eta, beta, beyond_measured in marks:
            ax.plot([beta], [eta], marker=marker, ms=8, linestyle="none", markeredgecolor="k", gid=EDGE_GID,
                    color="none" if beyond_measured else EDGE_COLOUR, zorder=4)


def _grid_ticks(ax, xs: np.ndarray, ys: np.ndarray, x_bounds: np.ndarray, y_bounds: np.ndarray) -> None:
    """Ticks at the grid values, limits at the outer edges of the grid's squares."""
    for values, bounds, axis, limits in ((xs, x_bounds, ax.xaxis, ax.set_xlim), (ys, y_bounds, ax.yaxis, ax.set_ylim)):
        axis.set_ticks(values, [f"{v:g}" for v in values])
        axis.set_minor_locator(NullLocator())
        limits(bounds[0], bounds[-1])
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
            ax.errorbar(line[rate].to_numpy(float), line["loss_mean"], yerr=line["loss_std"], color=colour,
                        marker="o", ms=3, capsize=2, label=f"{axis} {size}")
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
                label=f"{axis} {size} (η {best.eta:g}" + (f", β {best.beta:g})" if best.beta is not None else ")"))
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


def figures(
    records: pd.DataFrame, *, axis: Axis | None = None, curves: pd.DataFrame | None = None
) -> dict[str, Figure]:
    """Every figure `mupc-sweep plot` draws for `records`, keyed by file stem: per family along
    `axis` (by default `analysis.varied_axis`), the contours (`contours_<sweep>_<stem>`, PC only),
    loss against the rates (`transfer_<sweep>_<stem>`) and, where `curves` hold evaluations, test
    accuracy (`accuracy_<sweep>_<stem>`); <stem> is `figure_stem`, and <sweep>_ is left out when
    `records` have no sweep column."""
    axis = varied_axis(records) if axis is None else axis
    check_axis(axis)
    surf = surfaces(records)
    out: dict[str, Figure] = {}
    for key, family in families(surf, axis):
        stem = (f"{key['sweep']}_" if "sweep" in key else "") + figure_stem(key, axis)
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
