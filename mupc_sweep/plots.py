"""Figures from records and seed-mean surfaces (`analysis.surfaces`): each function draws and returns
a `matplotlib.figure.Figure`. Nothing here touches pyplot or the backend, so figures show inline in a
notebook and the command line saves them (`save_figure`). Every title and label names things in words
(`words`): "μPC", "ReLU", "Fashion-MNIST", "H = 8"."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import LogFormatter, NullLocator

from .analysis import (
    Axis,
    Optimum,
    check_axis,
    check_varied,
    extrapolated_edge,
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
from .checks import check_choice, check_int

OPTIMUM_GID = "optimum"
FAILED_GID = "failed"
PROBABILITY_GID = "probability"
EDGE_GID = "stability edge"
FORESEEN_GID = "foreseen edge"  # the stability edge extrapolated from the smaller sizes (analysis.extrapolated_edge)
SURFACE_GID = "surface"  # the coloured squares: one per measured valid grid point
PATCH_GID = "patch"  # the outline of a size's measured patch of the grid
EXTENSION_GID = "extension"
NEIGHBOUR_GID = "neighbour"  # a train-loss curve at a grid neighbour of a size's optimum
SHOWN_PROBABILITY = 0.05  # bootstrap optima less likely than this are not drawn
LABELLED_PROBABILITY = 0.15  # nor labelled with their percentage below this
EDGE_COLOUR = "orange"
UNMEASURED_COLOUR = "0.85"  # the panels' background: no colour where no valid point was measured
FAILED_LABEL = "a seed diverged or stopped"
BAND_LABEL = "± seed std"
NO_VALID = "no point with every seed ok"
FORMATS = ("png", "pdf", "svg")
DPI = 200

# record values as figures name them; a value not listed is shown as it is
WORDS = {
    "dataset": {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"},
    "activation": {"tanh": "Tanh", "relu": "ReLU", "linear": "Linear"},
    "param": {"mupc": "μPC", "sp": "SP"},
    "algorithm": {"pc": "PC", "bp": "BP"},
}
SYMBOLS = {"width": "N", "depth": "H", "inference_steps": "T", "eta": "η", "beta": "β"}


def words(column: str, value: object) -> str:
    """A record value as a figure names it: `words("param", "mupc")` is "μPC", `words("depth", 8)`
    is "H = 8", `words("inference_steps", "H")` is "T = H", `words("eta", 0.1)` is "η = 0.1"."""
    if column in SYMBOLS:
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        return f"{SYMBOLS[column]} = {value:g}" if number else f"{SYMBOLS[column]} = {value}"
    return WORDS.get(column, {}).get(value, str(value))


def family_title(family: pd.DataFrame, axis: Axis) -> str:
    """What a family is, in words: "μPC, Tanh, MNIST (PC, N = 512, T = H)" for a depth family."""
    row = family.iloc[0]
    fixed = other_axis(axis)
    settings = [words("algorithm", row.algorithm), words(fixed, int(row[fixed]))]
    if "inference_steps" in family and row.algorithm == "pc":
        if (family.inference_steps == family.depth).all():
            settings.append(words("inference_steps", "H"))
        elif family.inference_steps.nunique() == 1:
            settings.append(words("inference_steps", int(row.inference_steps)))
    return (f"{words('param', row.param)}, {words('activation', row.activation)}, {words('dataset', row.dataset)} "
            f"({', '.join(settings)})")


def _rates(eta: float, beta: float | None) -> str:
    return words("eta", eta) + ("" if beta is None else f", {words('beta', beta)}")


RESIDUAL_LABEL = "inference residual (seed mean)"


def contour_figure(
    family: pd.DataFrame, axis: Axis, *, probability: pd.DataFrame | None = None, edges: pd.DataFrame | None = None,
    quantity: str = "loss",
) -> Figure:
    """Fig. 5: one panel per size along `axis`, every panel on the family's grid (the η and β values
    measured at any size); x = β, y = η (log). Each measured valid point is a square coloured by
    seed-mean min train loss on one log colour scale for all panels; grey where no valid point was
    measured; ✕ points where a seed diverged or stopped; ★ the optimum; a size that measured a
    patch of the grid has it outlined; ◇ extension points (grid.extend). With `probability`
    (`analysis.optimum_probabilities`), white rings around the grid points the seed bootstrap makes
    the optimum, sized by that probability and labelled with it; with `edges`
    (`analysis.stability_edges`), ▲ at the largest stable η (at the optimum's β) and ▶ at the largest
    stable β (at its η), hollow where that is the largest measured. With `quantity` "residual" the
    squares show the seed-mean inference residual instead (0: inference reached the equilibrium; 1:
    it did not move), on a linear scale from 0 to 1."""
    column = {"loss": "loss_mean", "residual": "residual"}[quantity]
    sizes = sorted(family[axis].unique())
    etas, betas = family_grid(family)
    eta_bounds, beta_bounds = _bounds(etas), _bounds(betas)
    fig = Figure(figsize=(3.4 * len(sizes) + 1.2, 3.8), layout="constrained")
    axes = fig.subplots(1, len(sizes), sharey=True, squeeze=False)
    valid = family[family["valid"]]
    losses = valid["loss_mean"].to_numpy(float).clip(min=1e-12)
    norm = LogNorm(vmin=float(losses.min()), vmax=float(losses.max())) if len(losses) else LogNorm(0.1, 1)
    if quantity == "residual":
        norm = Normalize(vmin=0.0, vmax=1.0)
    patches = extensions = unmeasured = foreseen = False
    for ax, size in zip(axes[0], sizes):
        surface = family[family[axis] == size]
        i, j = np.searchsorted(etas, surface["eta"]), np.searchsorted(betas, surface["beta"].to_numpy(float))
        ok = surface["valid"].to_numpy(bool)
        z = np.full((len(etas), len(betas)), np.nan)  # (η, β), NaN where no valid point was measured
        z[i[ok], j[ok]] = surface[column].to_numpy(float)[ok].clip(min=1e-12)
        ax.pcolormesh(beta_bounds, eta_bounds, np.ma.masked_invalid(z), norm=norm,
                      cmap="viridis" if quantity == "loss" else "magma", gid=SURFACE_GID)
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
            predicted = extrapolated_edge(edges, int(size), uses_beta=best.beta is not None)
            for marker, eta, beta in (("v", predicted["eta_edge"], best.beta), ("<", best.eta, predicted["beta_edge"])):
                if eta is not None and beta is not None:
                    foreseen = True
                    ax.plot([beta], [eta], marker=marker, ms=9, linestyle="none",
                            color="none", markeredgecolor=EDGE_COLOUR, markeredgewidth=2, gid=FORESEEN_GID, zorder=4)
        if best is not None:
            ax.plot([best.beta], [best.eta], marker="*", ms=16, color="white", markeredgecolor="k", gid=OPTIMUM_GID,
                    linestyle="none", zorder=5)
        ax.set(xscale="log", yscale="log", xlabel="activity learning rate β", title=words(axis, int(size)))
        ax.set_facecolor(UNMEASURED_COLOUR)  # failed or unmeasured regions never look like good ones
        _grid_ticks(ax, betas, etas, beta_bounds, eta_bounds)
    axes[0][0].set_ylabel("weight learning rate η")
    markers = [
        Line2D([], [], marker="*", ms=12, color="white", markeredgecolor="k", linestyle="none", label="optimum"),
        Line2D([], [], marker="x", color="red", linestyle="none", label=FAILED_LABEL),
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
    if foreseen:
        markers.append(Line2D([], [], marker="<", ms=8, color="none", markeredgecolor=EDGE_COLOUR, markeredgewidth=2,
                              linestyle="none", label="stability edge the smaller sizes foresee (stability margin)"))
    fig.legend(handles=markers, loc="outside lower center", ncols=min(len(markers), len(sizes)), fontsize=8,
               frameon=False)
    mappable = ScalarMappable(norm=norm, cmap="viridis" if quantity == "loss" else "magma")
    label = "min train loss (seed mean)" if quantity == "loss" else RESIDUAL_LABEL
    _plain_numbers(fig.colorbar(mappable, ax=axes[0].tolist(), label=label).ax.yaxis)
    what = "transfer" if quantity == "loss" else "inference residual"
    fig.suptitle(f"{family_title(family, axis)}: {what} across {axis}")
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
    best η), one line per size through its valid points, ± seed std as error bars, ★ at each size's
    optimum, ticks at the family's grid values. Where a seed diverged or stopped at a rate on a
    size's line, a strip under the panel has ✕ in the line's colour, in that size's row. A size with
    no valid point is named in the legend."""
    uses_beta = family["algorithm"].iloc[0] == "pc"
    sizes = sorted(family[axis].unique())
    lines = []  # (size's row, colour, best, [(panel, rate, its points on the size's line)])
    for row, (colour, size) in enumerate(zip(_colours(len(sizes)), sizes)):
        surface = family[family[axis] == size]
        best = optimum(surface, int(size))
        panels = []
        if best is not None:
            for panel, (rate, fixed, value) in enumerate(
                    [("eta", "beta", best.beta), ("beta", "eta", best.eta)][: 1 + uses_beta]):
                on_line = surface if value is None else surface[np.isclose(surface[fixed].to_numpy(float), value)]
                panels.append((panel, rate, on_line.sort_values(rate)))
        lines.append((row, colour, best, panels))
    failures = any((~points["valid"]).any() for *_, panels in lines for _, _, points in panels)
    fig = Figure(figsize=(10 if uses_beta else 5.8, 4.6 + 0.15 * len(sizes) * failures), layout="constrained")
    grid = fig.add_gridspec(1 + failures, 1 + uses_beta, height_ratios=[1, 0.06 + 0.05 * len(sizes)][: 1 + failures])
    axes = [fig.add_subplot(grid[0, c]) for c in range(1 + uses_beta)]
    strips = [fig.add_subplot(grid[1, c], sharex=ax) for c, ax in enumerate(axes)] if failures else []
    etas, betas = family_grid(family)
    handles = []
    for row, colour, best, panels in lines:
        size = words(axis, int(sizes[row]))
        if best is None:
            handles.append(Line2D([], [], marker="x", color=colour, linestyle="none", label=f"{size}: {NO_VALID}"))
            continue
        handles.append(Line2D([], [], color=colour, marker="o", ms=3, label=size))
        for panel, rate, points in panels:
            ok = points[points["valid"]]
            axes[panel].errorbar(ok[rate].to_numpy(float), ok["loss_mean"], yerr=ok["loss_std"], color=colour,
                                 marker="o", ms=3, capsize=2)
            axes[panel].plot([getattr(best, rate)], [best.loss], marker="*", ms=14, color=colour,
                             markeredgecolor="k", gid=OPTIMUM_GID, linestyle="none")
            failed = points[~points["valid"]][rate].to_numpy(float)
            if len(failed):
                strips[panel].plot(failed, np.full(len(failed), row), marker="x", ms=7, mew=1.8, color=colour,
                                   linestyle="none", gid=FAILED_GID)
    titles = ["at each size's best β", "at each size's best η"] if uses_beta else [""]
    labels = ["weight learning rate η", "activity learning rate β"]
    for ax, strip, title, label, values in zip(axes, strips or axes, titles, labels, (etas, betas)):
        ax.set(xscale="log", yscale="log", title=title)
        _plain_numbers(ax.yaxis)
        strip.set_xlabel(label)
        if strip is not ax:
            ax.tick_params(labelbottom=False)
            strip.set(ylim=(len(sizes) - 0.5, -0.5), yticks=range(len(sizes)),
                      yticklabels=[words(axis, int(s)) for s in sizes])
            strip.tick_params(axis="y", labelsize=7)
        strip.xaxis.set_ticks(values, [f"{v:g}" for v in values])
        strip.xaxis.set_minor_locator(NullLocator())
        strip.tick_params(axis="x", labelrotation=45)
    axes[0].set_ylabel("min train loss (seed mean)")
    handles += [Line2D([], [], marker="*", ms=12, color="0.6", markeredgecolor="k", linestyle="none",
                       label="optimum"),
                Line2D([], [], marker="|", ms=12, mew=1.5, color="0.4", linestyle="none",
                       label=f"error bars: {BAND_LABEL}")]
    if failures:
        handles.append(Line2D([], [], marker="x", mew=1.8, color="0.4", linestyle="none",
                              label=f"{FAILED_LABEL} (strip below, by size)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6 if uses_beta else 3), fontsize=8,
               frameon=False)
    fig.suptitle(f"{family_title(family, axis)}: transfer across {axis}")
    return fig


def _cell_curves(curves: pd.DataFrame, cell: pd.Series) -> pd.DataFrame:
    """The curves of one cell: `cell` is a row of its surface."""
    keep = np.ones(len(curves), bool)
    for column in ("dataset", "activation", "param", "algorithm", "width", "depth", "inference_steps"):
        if column in curves and column in cell:
            keep &= (curves[column] == cell[column]).to_numpy()
    return curves[keep]


def _point_curves(cell_curves: pd.DataFrame, eta: float, beta: float | None) -> pd.DataFrame:
    """The curves of one (η, β) point of a cell's curves, every seed."""
    at_eta = np.isclose(cell_curves["eta"].to_numpy(float), eta)
    betas = cell_curves["beta"].astype("float64").to_numpy()
    return cell_curves[at_eta & (np.isnan(betas) if beta is None else np.isclose(betas, beta))]


def accuracy_figure(family: pd.DataFrame, curves: pd.DataFrame, axis: Axis) -> Figure | None:
    """Fig. 1 style: test accuracy against step, one line per size at that size's optimum (η, β),
    mean over seeds with ± seed std shaded (named in the legend); a size with no valid point is named
    in the legend. None if the curves hold no evaluation for this family."""
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    sizes = sorted(family[axis].unique())
    handles = []
    drawn = 0
    for colour, size in zip(_colours(len(sizes)), sizes):
        surface = family[family[axis] == size]
        best = optimum(surface, int(size))
        if best is None:
            handles.append(Line2D([], [], marker="x", color=colour, linestyle="none",
                                  label=f"{words(axis, int(size))}: {NO_VALID}"))
            continue
        mine = _point_curves(_cell_curves(curves, surface.iloc[0]), best.eta, best.beta)
        mine = mine[mine["test_acc"].notna()]
        if mine.empty:
            continue
        by_step = mine.groupby("step")["test_acc"].agg(["mean", "std"]).fillna({"std": 0.0})
        (line,) = ax.plot(by_step.index, by_step["mean"], color=colour, marker="o", ms=3, gid=f"{axis}={size}",
                          label=f"{words(axis, int(size))} ({_rates(best.eta, best.beta)})")
        ax.fill_between(by_step.index, by_step["mean"] - by_step["std"], by_step["mean"] + by_step["std"],
                        color=colour, alpha=0.2, linewidth=0)
        handles.append(line)
        drawn += 1
    if not drawn:
        return None
    handles.append(Rectangle((0, 0), 1, 1, facecolor="0.5", alpha=0.3, label=BAND_LABEL))
    ax.set(xlabel="training step", ylabel="test accuracy (%)")
    ax.legend(handles=handles, fontsize=8, title="at each size's optimum", title_fontsize=8)
    fig.suptitle(f"{family_title(family, axis)}: test accuracy")
    return fig


def _neighbours(
    surface: pd.DataFrame, etas: np.ndarray, betas: np.ndarray, best: Optimum
) -> list[tuple[int, pd.Series]]:
    """(direction, surface row) of the optimum (0) and of the grid points one step from it that this
    size measured: lower η (1) and higher η (2) at its β, lower β (3) and higher β (4) at its η."""
    i = int(np.searchsorted(etas, best.eta))
    j = 0 if best.beta is None else int(np.searchsorted(betas, best.beta))
    offsets = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)][: 3 if best.beta is None else 5]
    out = []
    for direction, (di, dj) in enumerate(offsets):
        if not (0 <= i + di < len(etas) and (best.beta is None or 0 <= j + dj < len(betas))):
            continue
        at = np.isclose(surface["eta"].to_numpy(float), etas[i + di])
        if best.beta is not None:
            at &= np.isclose(surface["beta"].to_numpy(float), betas[j + dj])
        if at.any():
            out.append((direction, surface[at].iloc[0]))
    return out


def curves_figure(family: pd.DataFrame, curves: pd.DataFrame, axis: Axis) -> Figure | None:
    """Train loss against step, one panel per size: at the size's optimum (bold black) and at its grid
    neighbours (one step in η at its β, one in β at its η; thin, labelled by their (η, β)), each the
    mean over seeds where every seed has a finite loss, ± seed std shaded (on the log axis the band's
    lower edge is cut at a tenth of the mean, and the legend says so where it is), log y. A point
    where a seed diverged or stopped is dashed and ends in ✕ where its first seed stopped. None if
    the curves hold no train loss for this family."""
    sizes = sorted(family[axis].unique())
    etas, betas = family_grid(family)
    fig = Figure(figsize=(3.3 * len(sizes) + 0.7, 4.8), layout="constrained")
    axes = fig.subplots(1, len(sizes), sharey=True, squeeze=False)[0]
    colours = ["k", *matplotlib.colormaps["tab10"]([0, 1, 2, 3])]  # by `_neighbours`' direction
    drawn = failures = cut = False
    for ax, size in zip(axes, sizes):
        surface = family[family[axis] == size]
        ax.set(title=words(axis, int(size)), xlabel="training step", yscale="log")
        _plain_numbers(ax.yaxis)
        best = optimum(surface, int(size))
        if best is None:
            ax.text(0.5, 0.5, NO_VALID, transform=ax.transAxes, ha="center", va="center", fontsize=8)
            ax.set_xticks([])
            continue
        cell = _cell_curves(curves, surface.iloc[0])
        handles = []
        for direction, point in _neighbours(surface, etas, betas, best):
            beta = None if pd.isna(point.beta) else float(point.beta)
            mean, std = _seed_mean(_point_curves(cell, float(point.eta), beta))
            if mean.empty:
                continue
            drawn = True
            colour, label = colours[direction], _rates(float(point.eta), beta) + (" (optimum)" if not direction else "")
            (line,) = ax.plot(mean.index, mean, color=colour, linewidth=1.0 if direction else 2.2,
                              linestyle="-" if point.valid else "--", gid=NEIGHBOUR_GID if direction else OPTIMUM_GID,
                              label=label, zorder=2 if direction else 3)
            cut = cut or bool((mean - std < mean / 10).any())
            ax.fill_between(mean.index, (mean - std).clip(lower=mean / 10), mean + std, color=colour,
                            alpha=0.08 if direction else 0.2, linewidth=0)
            if point.valid:
                handles.append(line)
                continue
            failures = True
            ax.plot([mean.index[-1]], [mean.iloc[-1]], marker="x", ms=8, mew=2, color=colour, linestyle="none",
                    gid=FAILED_GID, zorder=4)
            handles.append(Line2D([], [], color=colour, linewidth=1.0, linestyle="--", marker="x", mew=1.5,
                                  label=label))
        if handles:
            ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
        else:
            ax.text(0.5, 0.5, "no curves kept", transform=ax.transAxes, ha="center", va="center", fontsize=8)
    if not drawn:
        return None
    axes[0].set_ylabel("train loss (seed mean)")
    band = f"{BAND_LABEL} (lower edge cut at a tenth of the mean)" if cut else BAND_LABEL
    notes = [Rectangle((0, 0), 1, 1, facecolor="0.5", alpha=0.3, label=band)]
    if failures:
        notes.append(Line2D([], [], marker="x", mew=2, color="0.3", linestyle="--",
                            label=f"{FAILED_LABEL}: the mean ends where the first seed stopped"))
    fig.legend(handles=notes, loc="outside lower center", ncols=len(notes), fontsize=8, frameon=False)
    fig.suptitle(f"{family_title(family, axis)}: train loss at each size's optimum and its grid neighbours")
    return fig


def _seed_mean(point: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Mean and std over seeds of `train_loss` per step, at the steps where every seed has a finite
    loss, up to the first step where one has not."""
    seeds = point["seed"].nunique()
    loss = point["train_loss"].astype(float)
    stats = point.assign(train_loss=loss.where(np.isfinite(loss))).groupby("step")["train_loss"]
    stats = stats.agg(["mean", "std", "count"])
    complete = (stats["count"] == seeds).to_numpy()
    stats = stats.iloc[: len(stats) if complete.all() else int(np.argmin(complete))]
    return stats["mean"], stats["std"].fillna(0.0)


class _PlainLog(LogFormatter):
    """The ticks `LogFormatter` labels, written 0.05, 0.1, 0.2 rather than 5e-02 or 5×10⁻²."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _plain_numbers(axis: matplotlib.axis.Axis) -> None:
    """Tick labels of a log axis as plain numbers."""
    axis.set_major_formatter(_PlainLog())
    axis.set_minor_formatter(_PlainLog())


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
    loss against the rates (`transfer_<sweep>_<stem>`) and, where `curves` (`store.load_curves`)
    hold evaluations, test accuracy (`accuracy_<sweep>_<stem>`) and, where they hold train loss,
    train-loss curves near each optimum (`curves_<sweep>_<stem>`); <stem> is `figure_stem`, and
    <sweep>_ is left out when `records` have no sweep column. Only families with two or more sizes
    along `axis` are drawn
    (every family when the records vary no size at all); an `axis` the records do not vary is
    refused (`analysis.check_varied`)."""
    surf = surfaces(records)
    if axis is None:
        axis = varied_axis(records)
    else:
        check_axis(axis)
        check_varied(surf, axis)
    drawn = [(key, family) for key, family in families(surf, axis) if family[axis].nunique() > 1]
    out: dict[str, Figure] = {}
    for key, family in drawn or families(surf, axis):
        stem = (f"{key['sweep']}_" if "sweep" in key else "") + figure_stem(key, axis)
        if key["algorithm"] == "pc":
            out[f"contours_{stem}"] = contour_figure(
                family, axis, probability=optimum_probabilities(family_records(records, key), family, axis),
                edges=stability_edges(family, axis))
            if family["residual"].notna().any():
                out[f"residual_{stem}"] = contour_figure(family, axis, quantity="residual")
        out[f"transfer_{stem}"] = transfer_figure(family, axis)
        if curves is None:
            continue
        if (accuracy := accuracy_figure(family, curves, axis)) is not None:
            out[f"accuracy_{stem}"] = accuracy
        if (losses := curves_figure(family, curves, axis)) is not None:
            out[f"curves_{stem}"] = losses
    return out


def check_output(format: str, dpi: int) -> None:
    """InputError unless `format` is one of `FORMATS` and `dpi` an integer of at least 1."""
    check_choice("format", format, FORMATS)
    check_int("dpi", dpi, minimum=1)


def save_figure(figure: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write a figure whole or not at all, in the format its suffix names (.png, .pdf or .svg; PNG at
    `dpi` pixels per inch). Another suffix or a bad `dpi` is an InputError, and nothing is written."""
    path = Path(path)
    format = path.suffix.removeprefix(".").lower()
    check_output(format, dpi)
    return write_atomic(path, lambda out: figure.savefig(out, dpi=dpi, bbox_inches="tight", format=format))
