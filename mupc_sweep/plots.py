"""Figures from seed-mean surfaces (`analysis.surfaces`): each function draws and returns a Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .analysis import Axis, optimum  # noqa: E402

OPTIMUM_GID = "optimum"
FAILED_GID = "failed"


def _title(width: int, depth: int) -> str:
    return f"N = {width}, H = {depth}"


def contour_figure(family: pd.DataFrame, axis: Axis) -> Figure:
    """Fig. 5: one panel per size along `axis`; x = β, y = η (log); colour = log10 seed-mean min
    train loss on one scale for all panels; ★ the optimum; ✕ points where a seed diverged or stopped."""
    sizes = sorted(family[axis].unique())
    fig, axes = plt.subplots(
        1, len(sizes), figsize=(3.4 * len(sizes) + 1.2, 3.8), sharey=True, squeeze=False, layout="constrained"
    )
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
    fig.legend(handles=markers, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    mappable = plt.cm.ScalarMappable(norm=norm, cmap="viridis")
    fig.colorbar(mappable, ax=axes[0].tolist(), label="log10 min train loss (seed mean)")
    fig.suptitle(_family_title(family, axis))
    return fig


def _grid_ticks(ax, xs: np.ndarray, ys: np.ndarray) -> None:
    """Ticks at the grid values, limits padded so edge markers show whole."""
    for values, axis, limits in ((xs, ax.xaxis, ax.set_xlim), (ys, ax.yaxis, ax.set_ylim)):
        axis.set_ticks(values, [f"{v:g}" for v in values])
        axis.set_minor_locator(plt.NullLocator())
        limits(values.min() / 1.25, values.max() * 1.25)
    ax.tick_params(axis="x", labelrotation=45)


def transfer_figure(family: pd.DataFrame, axis: Axis) -> Figure:
    """μP-style transfer: seed-mean min loss against η (at each size's best β) and against β (at its
    best η), one line per size, ± seed std as error bars, each line's optimum marked."""
    uses_beta = bool((family["beta"] > 0).any())
    fig, axes = plt.subplots(1, 2 if uses_beta else 1, figsize=(11 if uses_beta else 5.5, 4), squeeze=False)
    colours = plt.cm.plasma(np.linspace(0, 0.85, family[axis].nunique()))
    for colour, (size, surface) in zip(colours, family.groupby(axis)):
        best = optimum(surface, int(size))
        if best is None:
            continue
        panels = [(axes[0][0], "eta", "beta", best.beta), (axes[0][-1], "beta", "eta", best.eta)]
        for ax, rate, fixed, value in panels[: 1 + uses_beta]:
            line = surface[np.isclose(surface[fixed], value) & surface["valid"]].sort_values(rate)
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
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = plt.cm.plasma(np.linspace(0, 0.85, family[axis].nunique()))
    drawn = 0
    for colour, (size, surface) in zip(colours, family.groupby(axis)):
        best = optimum(surface, int(size))
        if best is None:
            continue
        row = surface.iloc[0]
        mine = curves[
            (curves.width == row.width) & (curves.depth == row.depth) & (curves.activation == row.activation)
            & (curves.param == row.param) & (curves.algorithm == row.algorithm) & (curves.dataset == row.dataset)
            & np.isclose(curves.eta, best.eta) & np.isclose(curves.beta, best.beta) & curves.test_acc.notna()
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
        plt.close(fig)
        return None
    ax.set(xlabel="training step", ylabel="test accuracy (%)", title=_family_title(family, axis))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


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
