"""Transfer analysis: records table (SPEC §7) -> loss surfaces, optima, and rate recommendations.

Pure functions of pandas DataFrames. A *family* is every cell of one sweep that shares dataset,
activation, parameterisation, algorithm, epochs, batch size and the size that is not swept (width
for a depth sweep, depth for a width sweep); along the swept *axis* it has one (η, β) surface per
size. Where a sweep has cells of one size with different inference steps T, T splits the family
too, as "H" (T = H) or the number.

A surface point is *valid* when every seed of it finished with status ``ok``; optima are taken
over valid points only, so a diverged point can never be chosen however low its loss got first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

Axis = Literal["depth", "width"]
AXES: tuple[str, ...] = ("depth", "width")
REQUIRED_COLUMNS = (
    "dataset", "activation", "param", "algorithm", "width", "depth", "seed", "eta", "beta",
    "min_train_loss", "status",
)
BASIN_TOLERANCE = 0.10  # a point is in the basin when its loss is within 10 % of the best
DRIFT_DECADES = 0.3  # an optimum moving more than this (a 2× grid step) across the swept sizes drifts
REGRET_OK = 1.10  # transfer holds when the target's loss at the recommendation is within 10 % of its best


def other_axis(axis: Axis) -> str:
    return "width" if axis == "depth" else "depth"


SETTINGS = ("sweep", "epochs", "batch_size")  # record columns that separate families where present


def family_keys(axis: Axis, columns) -> list[str]:
    """Columns of a table with `columns` that identify a family for a sweep along `axis`."""
    return ["dataset", "activation", "param", "algorithm", other_axis(axis), *(c for c in SETTINGS if c in columns)]


def families(surf: pd.DataFrame, axis: Axis) -> list[tuple[dict, pd.DataFrame]]:
    """The families of a `surfaces` table along `axis`: (the values that identify it, its rows)."""
    keys = family_keys(axis, surf.columns)
    out = []
    for key, rows in surf.groupby(keys):
        family = dict(zip(keys, (k.item() if hasattr(k, "item") else k for k in key)))
        if "inference_steps" in rows and rows.groupby(axis)["inference_steps"].nunique().max() > 1:
            rule = np.where(rows["inference_steps"] == rows["depth"], "H", rows["inference_steps"].astype(str))
            out += [({**family, "inference_steps": t}, part) for t, part in rows.groupby(rule)]
        else:
            out.append((family, rows))
    return out


def check_records(records: pd.DataFrame) -> None:
    """ValueError naming the columns a records table lacks."""
    missing = [c for c in REQUIRED_COLUMNS if c not in records.columns]
    if missing:
        raise ValueError(f"records table lacks column(s) {', '.join(missing)}; expected SPEC §7 records.")
    if records.empty:
        raise ValueError("records table is empty.")


def surfaces(records: pd.DataFrame) -> pd.DataFrame:
    """Seed-mean surfaces: one row per (cell, η, β) with the mean, std and count of `min_train_loss`
    over seeds, the number of seeds with status ok, and `valid` (all seeds ok). A cell is its sweep,
    settings and shape, as far as the table has those columns."""
    check_records(records)
    df = records.assign(beta=records["beta"].astype("float64").fillna(0.0), ok=records["status"].eq("ok"))
    cell = [c for c in (*SETTINGS, "inference_steps") if c in df.columns]
    keys = ["dataset", "activation", "param", "algorithm", *cell, "width", "depth", "eta", "beta"]
    out = df.groupby(keys, as_index=False).agg(
        loss_mean=("min_train_loss", "mean"),
        loss_std=("min_train_loss", "std"),
        n_seeds=("seed", "nunique"),
        n_ok=("ok", "sum"),
    )
    out["loss_std"] = out["loss_std"].fillna(0.0)
    out["valid"] = (out["n_ok"] == out["n_seeds"]) & np.isfinite(out["loss_mean"])
    return out


@dataclass(frozen=True)
class Optimum:
    """The best valid grid point of one surface, with its evidence."""

    size: int
    eta: float
    beta: float
    loss: float
    loss_std: float  # seed spread at the optimum
    n_seeds: int
    refined_eta: float  # quadratic fit of log10 loss on (log10 η, log10 β) around the optimum
    refined_beta: float
    basin: int  # valid points within BASIN_TOLERANCE of the best
    basin_eta: tuple[float, float]
    basin_beta: tuple[float, float]
    on_edge: bool  # the optimum lies on the border of the grid
    n_valid: int
    n_points: int


def optimum(surface: pd.DataFrame, size: int) -> Optimum | None:
    """The best valid point of one surface (rows of `surfaces` for one size), or None if none is valid."""
    valid = surface[surface["valid"]]
    if valid.empty:
        return None
    best = valid.loc[valid["loss_mean"].idxmin()]
    etas, betas = np.sort(surface["eta"].unique()), np.sort(surface["beta"].unique())
    in_basin = valid[valid["loss_mean"] <= best.loss_mean * (1 + BASIN_TOLERANCE)]
    refined_eta, refined_beta = refine(valid, float(best.eta), float(best.beta))
    return Optimum(
        size=int(size), eta=float(best.eta), beta=float(best.beta), loss=float(best.loss_mean),
        loss_std=float(best.loss_std), n_seeds=int(best.n_seeds),
        refined_eta=refined_eta, refined_beta=refined_beta,
        basin=len(in_basin),
        basin_eta=(float(in_basin.eta.min()), float(in_basin.eta.max())),
        basin_beta=(float(in_basin.beta.min()), float(in_basin.beta.max())),
        on_edge=bool(best.eta in (etas[0], etas[-1]) or (len(betas) > 1 and best.beta in (betas[0], betas[-1]))),
        n_valid=len(valid), n_points=len(surface),
    )


def refine(valid: pd.DataFrame, eta: float, beta: float) -> tuple[float, float]:
    """Optimum between grid points: least-squares quadratic in (u, v) = (log10 η, log10 β) of
    log10 loss over the valid points in the 3 × 3 grid window around (η, β); its minimum if the
    fit is convex, clipped to the window, else the grid point itself. A 1-D fit when β is unused."""
    etas, betas = np.sort(valid["eta"].unique()), np.sort(valid["beta"].unique())
    window_eta = _window(etas, eta)
    window_beta = _window(betas, beta)
    near = valid[valid["eta"].isin(window_eta) & valid["beta"].isin(window_beta)]
    u, v = np.log10(near["eta"].to_numpy()), _log_or_zero(near["beta"].to_numpy())
    f = np.log10(near["loss_mean"].to_numpy())
    lo_u, hi_u = np.log10(window_eta.min()), np.log10(window_eta.max())
    if len(window_beta) == 1 or beta <= 0:  # 1-D in η
        if len(np.unique(u)) < 3:
            return eta, beta
        a, b, _ = np.polyfit(u, f, 2)
        return (float(10 ** np.clip(-b / (2 * a), lo_u, hi_u)) if a > 0 else eta), beta
    if len(near) < 6 or len(np.unique(u)) < 3 or len(np.unique(v)) < 3:
        return eta, beta
    design = np.column_stack([np.ones_like(u), u, v, u * u, v * v, u * v])
    c, *_ = np.linalg.lstsq(design, f, rcond=None)
    hessian = np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])
    if np.any(np.linalg.eigvalsh(hessian) <= 0):
        return eta, beta
    u_star, v_star = np.linalg.solve(hessian, -c[1:3])
    lo_v, hi_v = np.log10(window_beta.min()), np.log10(window_beta.max())
    return float(10 ** np.clip(u_star, lo_u, hi_u)), float(10 ** np.clip(v_star, lo_v, hi_v))


def _window(values: np.ndarray, at: float) -> np.ndarray:
    i = int(np.searchsorted(values, at))
    return values[max(i - 1, 0) : i + 2]


def _log_or_zero(values: np.ndarray) -> np.ndarray:
    return np.log10(np.where(values > 0, values, 1.0))


@dataclass
class TransferReport:
    """What `mupc-sweep transfer` reports for one family."""

    family: dict
    axis: str
    source: int
    target: int
    recommended_eta: float
    recommended_beta: float | None
    basis: str  # "source grid optimum" or "extrapolated drift"
    source_optimum: dict
    source_surface: list[dict]  # the seed-mean surface at the source: eta, beta, loss_mean, loss_std, n_seeds, valid
    optima: list[dict]  # the optimum at every swept size of the family
    drift: dict | None  # slope of log10 η* and log10 β* per doubling of size, when ≥ 3 sizes
    target_swept: bool
    regret: float | None  # target's seed-mean loss at the recommended grid point over its best; None if it failed
    optima_coincide: bool | None
    transfer_holds: bool | None
    warnings: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # sizes with missing or failed cells

    def to_dict(self) -> dict:
        return asdict(self)


def transfer(
    records: pd.DataFrame, *, source: int, target: int, axis: Axis = "depth"
) -> list[TransferReport]:
    """One report per family holding `source` along `axis`: the recommended (η, β) for `target`.
    Families swept along `axis` are reported alone when there are any: a width sweep's one-depth
    families say nothing about depth.

    The recommendation is the source's grid optimum (a tested point; the refined estimate between
    grid points is reported beside it, as evidence); if three or more sizes were swept and the
    optimum drifts by more than `DRIFT_DECADES` over the swept range, the drift is extrapolated
    (linear in log size) to the target instead. Where the target was swept,
    the regret is its loss at the grid point nearest the recommendation over its best loss.
    """
    if axis not in AXES:
        raise ValueError(f"axis must be one of {', '.join(AXES)}; got {axis!r}.")
    if source == target:
        raise ValueError(f"--from and --to are both {source}; give the size to transfer to.")
    surf = surfaces(records)
    if not (surf[axis] == source).any():
        swept = sorted(surf[axis].unique().tolist())
        raise ValueError(f"no sweep holds {axis} {source}; swept {axis}s: {', '.join(map(str, swept))}.")
    holding = [(family, rows) for family, rows in families(surf, axis) if (rows[axis] == source).any()]
    swept = [(family, rows) for family, rows in holding if rows[axis].nunique() > 1]
    return [_family_report(rows, family, axis, source, target) for family, rows in swept or holding]


def _family_report(rows: pd.DataFrame, family: dict, axis: Axis, source: int, target: int) -> TransferReport:
    uses_beta = family["algorithm"] == "pc"
    optima, incomplete = {}, []
    for size, surface in rows.groupby(axis):
        opt = optimum(surface, int(size))
        if opt is None:
            incomplete.append(f"{axis} {size}: no valid point (every point diverged or stopped)")
            continue
        optima[int(size)] = opt
        if opt.n_valid < opt.n_points:
            incomplete.append(f"{axis} {size}: {opt.n_points - opt.n_valid} of {opt.n_points} points failed")
    warnings = []
    if source not in optima:
        raise ValueError(f"{axis} {source} of {_describe(family)} has no valid point to transfer from.")
    src = optima[source]
    eta, beta, basis = src.eta, src.beta, "source grid optimum"
    drift = _drift(optima, uses_beta)
    if drift is not None and drift["drifts"]:
        eta = float(10 ** (drift["log_eta_intercept"] + drift["log_eta_slope"] * np.log2(target)))
        if uses_beta:
            beta = float(10 ** (drift["log_beta_intercept"] + drift["log_beta_slope"] * np.log2(target)))
        basis = "extrapolated drift"
        warnings.append(
            f"the optimum drifts with {axis} ({signed(drift['log_eta_slope'])} decades of η and "
            f"{signed(drift['log_beta_slope'])} of β per doubling): rates do not transfer unchanged; "
            "the recommendation is extrapolated"
        )
    if src.on_edge:
        warnings.append(f"the optimum at {axis} {source} lies on the edge of the grid; widen the grid")
    if src.basin == 1:
        warnings.append(f"the optimum at {axis} {source} is sharp: no other point within {BASIN_TOLERANCE:.0%}")
    regret = coincide = holds = None
    target_swept = target in optima
    if target_swept:
        tgt_rows = rows[rows[axis] == target]
        nearest = _nearest(tgt_rows, eta, beta)
        tgt = optima[target]
        regret = float(nearest.loss_mean / tgt.loss) if nearest.valid else None
        coincide = bool(np.isclose(tgt.eta, src.eta) and np.isclose(tgt.beta, src.beta))
        holds = regret is not None and regret <= REGRET_OK
        if regret is None:
            warnings.append(
                f"transfer does not hold at {axis} {target}: the grid point nearest the recommendation "
                f"(η={nearest.eta:g}, β={nearest.beta:g}) diverged or stopped there"
            )
        elif not holds:
            warnings.append(
                f"transfer does not hold at {axis} {target}: the recommended point's loss is "
                f"{regret:.2f}x the best there (at η={tgt.eta:g}, β={tgt.beta:g})"
            )
    return TransferReport(
        family=family, axis=axis, source=source, target=target,
        recommended_eta=eta, recommended_beta=beta if uses_beta else None, basis=basis,
        source_optimum=asdict(src), source_surface=_surface_points(rows[rows[axis] == source]),
        optima=[asdict(o) for o in optima.values()], drift=drift,
        target_swept=target_swept, regret=regret, optima_coincide=coincide, transfer_holds=holds,
        warnings=warnings, incomplete=incomplete,
    )


def signed(x: float) -> str:
    """x to two decimals with its sign; a value that rounds to zero reads +0.00, never -0.00."""
    return f"{round(x, 2) + 0.0:+.2f}"


def _drift(optima: dict[int, Optimum], uses_beta: bool) -> dict | None:
    """Linear fits of log10 η* and log10 β* on log2 size; `drifts` when either moves by more than
    0.3 decades (a 2× grid step) across the swept range."""
    if len(optima) < 3:
        return None
    sizes = np.log2(np.array(sorted(optima)))
    log_eta = np.log10([optima[s].eta for s in sorted(optima)])
    log_beta = np.log10([optima[s].beta if uses_beta else 1.0 for s in sorted(optima)])
    eta_slope, eta_icpt = np.polyfit(sizes, log_eta, 1)
    beta_slope, beta_icpt = np.polyfit(sizes, log_beta, 1)
    span = sizes.max() - sizes.min()
    drifts = bool(max(abs(eta_slope), abs(beta_slope)) * span > DRIFT_DECADES)
    return dict(
        log_eta_slope=float(eta_slope), log_eta_intercept=float(eta_icpt),
        log_beta_slope=float(beta_slope), log_beta_intercept=float(beta_icpt), drifts=drifts,
    )


def _surface_points(surface: pd.DataFrame) -> list[dict]:
    columns = ["eta", "beta", "loss_mean", "loss_std", "n_seeds", "valid"]
    return surface.sort_values(["eta", "beta"])[columns].to_dict("records")  # plain Python values


def _nearest(surface: pd.DataFrame, eta: float, beta: float) -> pd.Series:
    """The grid point nearest (η, β) in log space."""
    d = (np.log10(surface["eta"]) - np.log10(eta)) ** 2 + (_log_or_zero(surface["beta"].to_numpy()) - np.log10(
        beta if beta > 0 else 1.0)) ** 2
    return surface.loc[d.idxmin()]


def _describe(family: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in family.items())
