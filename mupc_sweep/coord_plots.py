"""Figures of a coord check (`coord.coord_check`), as microsoft/mup's `plot_coord_data` draws them: the
per-layer statistics (the paper's Fig. A.29) and the activity-Hessian condition number (Figs. 2 and 4)
against width or depth, one line per training step. Figures are `matplotlib.figure.Figure`s (no
pyplot); networks whose training diverged are not drawn."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from .analysis import Axis, check_axis, other_axis

# the quantities of `coord.coord_check`'s coord table, in panel order
QUANTITY_LABELS = {"z": "RMS of feedforward z_l", "error": "RMS of e_l after inference",
                   "energy": "energy per layer ½‖e_l‖²"}
CONDITION_LABEL = "κ(H_z) = |λ_max| / |λ_min|"
SYMBOL = {"width": "N", "depth": "H"}


def _fixed(table: pd.DataFrame, axis: Axis, at: int | None) -> tuple[pd.DataFrame, int]:
    """The rows at one value of the other axis (default: its largest), those of diverged networks dropped."""
    check_axis(axis)
    fixed = other_axis(axis)
    at = int(table[fixed].max()) if at is None else at
    return table[(table[fixed] == at) & (table["status"] == "ok")], at


def _panel(ax, lines: pd.DataFrame, axis: Axis, centre: str, title: str, ylabel: str) -> None:
    """Lines per step of the column `centre` against `axis`, shaded between the columns lo and hi."""
    steps = sorted(lines["step"].unique())
    colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.85, max(len(steps), 1)))
    for colour, step in zip(colours, steps):
        line = lines[lines["step"] == step].sort_values(axis)
        ax.plot(line[axis], line[centre], marker="o", ms=3, color=colour, label=f"step {step}")
        ax.fill_between(line[axis], line["lo"], line["hi"], color=colour, alpha=0.15)
    ax.set(xscale="log", yscale="log", xlabel=f"{axis} {SYMBOL[axis]}", ylabel=ylabel, title=title)
    sizes = sorted(lines[axis].unique())
    ax.set_xticks(sizes, [f"{v:g}" for v in sizes])
    ax.xaxis.set_minor_locator(NullLocator())


def coord_figure(coord: pd.DataFrame, axis: Axis = "depth", *, at: int | None = None) -> Figure:
    """One panel per param and quantity (z, error, energy): each line, a training step, is the mean over
    layers of the seed-mean value against `axis`, shaded over the layers' interquartile range (after
    T = H steps the lowest layers' errors have barely moved from zero); the other axis held at `at`
    (default: its largest value). Log scales."""
    rows, at = _fixed(coord, axis, at)
    params, quantities = sorted(coord["param"].unique()), [q for q in QUANTITY_LABELS if q in set(coord["quantity"])]
    fig = Figure(figsize=(4 * len(quantities), 3.2 * len(params)), layout="constrained")
    axes = fig.subplots(len(params), len(quantities), squeeze=False)
    for row, param in zip(axes, params):
        for ax, quantity in zip(row, quantities):
            mine = rows[(rows["param"] == param) & (rows["quantity"] == quantity)]
            per_layer = mine.groupby([axis, "step", "layer"])["value"].mean().reset_index()
            by_size = per_layer.groupby([axis, "step"])["value"]
            lines = by_size.agg(mean="mean", lo=lambda v: v.quantile(0.25), hi=lambda v: v.quantile(0.75))
            lines = lines.reset_index()
            _panel(ax, lines, axis, "mean", f"{param}: {quantity}", QUANTITY_LABELS[quantity])
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"coord check, {coord['activation'].iloc[0]}, {SYMBOL[other_axis(axis)]} = {at}: "
                 "mean over layers (line) and their interquartile range (band)")
    return fig


def condition_figure(spectrum: pd.DataFrame, axis: Axis = "depth", *, at: int | None = None) -> Figure:
    """One panel per param: κ of the activity Hessian against `axis`, one line per training step, the
    median over seeds and probe examples, shaded over their range; the other axis held at `at`."""
    rows, at = _fixed(spectrum, axis, at)
    params = sorted(spectrum["param"].unique())
    fig = Figure(figsize=(4 * len(params), 3.4), layout="constrained")
    axes = fig.subplots(1, len(params), squeeze=False)[0]
    for ax, param in zip(axes, params):
        mine = rows[rows["param"] == param]
        lines = mine.groupby([axis, "step"])["condition"].agg(median="median", lo="min", hi="max").reset_index()
        _panel(ax, lines, axis, "median", param, CONDITION_LABEL)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"activity-Hessian conditioning, {spectrum['activation'].iloc[0]}, {SYMBOL[other_axis(axis)]} = {at}")
    return fig


def coord_figures(coord: pd.DataFrame, spectrum: pd.DataFrame) -> dict[str, Figure]:
    """Both figures against each axis the grid varies, at every value of the other axis, keyed by file
    stem: coord_by_depth_N64, condition_by_width_H8, …"""
    out: dict[str, Figure] = {}
    for axis in ("width", "depth"):
        if coord[axis].nunique() < 2:
            continue
        fixed = other_axis(axis)
        for at in sorted(coord[fixed].unique()):
            suffix = f"by_{axis}_{SYMBOL[fixed]}{at}"
            out[f"coord_{suffix}"] = coord_figure(coord, axis, at=int(at))
            out[f"condition_{suffix}"] = condition_figure(spectrum, axis, at=int(at))
    return out
