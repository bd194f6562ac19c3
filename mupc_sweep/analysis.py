"""Transfer analysis: records table (README, "Reading a sweep") -> loss surfaces, optima, and rate recommendations.

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

from .checks import check_choice
from .errors import InputError

Axis = Literal["depth", "width"]
AXES: tuple[str, ...] = ("depth", "width")
REQUIRED_COLUMNS = (
    "dataset", "activation", "param", "algorithm", "width", "depth", "seed", "eta", "beta",
    "min_train_loss", "status",
)
BASIN_TOLERANCE = 0.10  # a point is in the basin when its loss is within 10 % of the best
DRIFT_DECADES = 0.3  # an optimum moving more than this (a 2× grid step) across the swept sizes drifts
REGRET_OK = 1.10  # transfer holds when the target's loss at the source's optimum is within 10 % of its best
BOOTSTRAP_RESAMPLES = 2000  # seed-bootstrap resamples behind optimum probabilities and the regret interval
BOOTSTRAP_SEED = 0  # fixed, so that a report is reproducible
REGRET_LEVEL = 0.90  # coverage of the regret interval


def check_axis(axis: object) -> None:
    check_choice("axis", axis, AXES)


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
    """InputError naming the columns a records table lacks."""
    missing = [c for c in REQUIRED_COLUMNS if c not in records.columns]
    if missing:
        raise InputError(f"records: the table lacks column(s) {', '.join(missing)}; expected the records of a "
                         "sweep (`load_records`).")
    if records.empty:
        raise InputError("records: the table is empty.")


def surfaces(records: pd.DataFrame) -> pd.DataFrame:
    """Seed-mean surfaces: one row per (cell, η, β) with the mean, std and count of `min_train_loss`
    over seeds, the number of seeds with status ok, and `valid` (all seeds ok). A cell is its sweep,
    settings and shape, as far as the table has those columns."""
    check_records(records)
    df = _plain_beta(records).assign(ok=records["status"].eq("ok"))
    cell = [c for c in (*SETTINGS, "inference_steps") if c in df.columns]
    keys = ["dataset", "activation", "param", "algorithm", *cell, "width", "depth", "eta", "beta"]
    out = df.groupby(keys, as_index=False, dropna=False).agg(
        loss_mean=("min_train_loss", "mean"),
        loss_std=("min_train_loss", "std"),
        n_seeds=("seed", "nunique"),
        n_ok=("ok", "sum"),
    )
    out["loss_std"] = out["loss_std"].fillna(0.0)
    out["valid"] = (out["n_ok"] == out["n_seeds"]) & np.isfinite(out["loss_mean"])
    return out


def _plain_beta(records: pd.DataFrame) -> pd.DataFrame:
    """`records` with β as plain float64: NaN (null) for bp points, which have none."""
    return records.assign(beta=records["beta"].astype("float64"))


def _uses_beta(surface: pd.DataFrame) -> bool:
    return surface["algorithm"].iloc[0] == "pc"


@dataclass(frozen=True)
class Optimum:
    """The best valid grid point of one surface, with its evidence."""

    size: int
    eta: float
    beta: float | None  # None for bp, here and in every field about β
    loss: float
    loss_std: float  # seed spread at the optimum
    n_seeds: int
    refined_eta: float  # quadratic fit of log10 loss on (log10 η, log10 β) around the optimum
    refined_beta: float | None
    basin: int  # valid points within BASIN_TOLERANCE of the best
    basin_eta: tuple[float, float]
    basin_beta: tuple[float, float] | None
    on_edge: bool  # the optimum lies on the border of the grid
    n_valid: int
    n_points: int


def optimum(surface: pd.DataFrame, size: int) -> Optimum | None:
    """The best valid point of one surface (rows of `surfaces` for one size), or None if none is valid."""
    valid = surface[surface["valid"]]
    if valid.empty:
        return None
    best = valid.loc[valid["loss_mean"].idxmin()]
    uses_beta = _uses_beta(surface)
    beta = float(best.beta) if uses_beta else None
    etas, betas = np.sort(surface["eta"].unique()), np.sort(surface["beta"].unique())
    in_basin = valid[valid["loss_mean"] <= best.loss_mean * (1 + BASIN_TOLERANCE)]
    refined_eta, refined_beta = refine(valid, float(best.eta), beta)
    edge = (len(etas) > 1 and best.eta in (etas[0], etas[-1])) or (
        uses_beta and len(betas) > 1 and beta in (betas[0], betas[-1]))
    return Optimum(
        size=int(size), eta=float(best.eta), beta=beta, loss=float(best.loss_mean),
        loss_std=float(best.loss_std), n_seeds=int(best.n_seeds),
        refined_eta=refined_eta, refined_beta=refined_beta,
        basin=len(in_basin),
        basin_eta=(float(in_basin.eta.min()), float(in_basin.eta.max())),
        basin_beta=(float(in_basin.beta.min()), float(in_basin.beta.max())) if uses_beta else None,
        on_edge=bool(edge), n_valid=len(valid), n_points=len(surface),
    )


def refine(valid: pd.DataFrame, eta: float, beta: float | None) -> tuple[float, float | None]:
    """Optimum between grid points: least-squares quadratic in (u, v) = (log10 η, log10 β) of
    log10 loss over the valid points in the 3 × 3 grid window around (η, β); its minimum if the
    fit is convex, clipped to the window, else the grid point itself. A 1-D fit in η when β is
    None (bp) or the grid has one β."""
    window_eta = _window(np.sort(valid["eta"].unique()), eta)
    window_beta = None if beta is None else _window(np.sort(valid["beta"].unique()), beta)
    lo_u, hi_u = np.log10(window_eta.min()), np.log10(window_eta.max())
    if window_beta is None or len(window_beta) == 1:  # 1-D in η
        line = valid[valid["eta"].isin(window_eta) & (True if beta is None else np.isclose(valid["beta"], beta))]
        u, f = np.log10(line["eta"].to_numpy()), np.log10(line["loss_mean"].to_numpy())
        if len(np.unique(u)) < 3:
            return eta, beta
        a, b, _ = np.polyfit(u, f, 2)
        return (float(10 ** np.clip(-b / (2 * a), lo_u, hi_u)) if a > 0 else eta), beta
    near = valid[valid["eta"].isin(window_eta) & valid["beta"].isin(window_beta)]
    u, v = np.log10(near["eta"].to_numpy()), np.log10(near["beta"].to_numpy())
    f = np.log10(near["loss_mean"].to_numpy())
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
    drift: dict | None  # slope of log10 η* and log10 β* per doubling, fitted on `drift_sizes` when ≥ 3
    drift_sizes: list[int]  # the sizes on the source's side of the target, the only ones a fit may use
    target_swept: bool
    regret: float | None  # zero-shot: target's loss at the source's grid optimum over its best; None if it failed
    regret_interval: tuple[float, float] | None  # 90 % seed-bootstrap interval of `regret`; None with one seed
    extrapolated_regret: float | None  # the same at the extrapolated recommendation, when there is one
    optima_coincide: bool | None
    transfer_holds: bool | None  # regret ≤ REGRET_OK
    optimum_probability: list[dict] | None  # per size and grid point, P(optimum) under the seed bootstrap
    stability_edge: list[dict]  # per size, the largest η and β at which every seed stayed ok
    stability_drift: dict | None  # how far the stability edge moves across the swept sizes
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

    The verdict is zero-shot: where the target was swept, `regret` is its seed-mean loss at the grid
    point nearest the source's grid optimum over its best loss, and transfer holds when that is at
    most `REGRET_OK`. The recommendation is the source's grid optimum, unless three or more sizes on
    the source's side of the target show the optimum drifting by more than `DRIFT_DECADES`; then the
    drift (linear in log size) is extrapolated to the target, out of sample: the target's own records
    and sizes beyond it never enter the recommendation.
    """
    check_axis(axis)
    if source == target:
        raise InputError(f"--from and --to are both {source}; give the size to transfer to.")
    surf = surfaces(records)
    if not (surf[axis] == source).any():
        swept = sorted(surf[axis].unique().tolist())
        raise InputError(f"no sweep holds {axis} {source}; swept {axis}s: {', '.join(map(str, swept))}.")
    holding = [(family, rows) for family, rows in families(surf, axis) if (rows[axis] == source).any()]
    swept = [(family, rows) for family, rows in holding if rows[axis].nunique() > 1]
    reports, failed = [], []
    for family, rows in swept or holding:
        try:
            reports.append(_family_report(rows, family_records(records, family), family, axis, source, target))
        except NoSourceOptimum as error:  # one family failed at the source: the others still report
            failed.append(error)
    if not reports:
        raise failed[0]
    for report in reports:
        report.warnings += [f"not reported: {error}" for error in failed]
    return reports


class NoSourceOptimum(InputError):
    """Every point of a family failed at the source size."""


def family_records(records: pd.DataFrame, family: dict) -> pd.DataFrame:
    """The rows of `records` that belong to `family` (as `families` names it)."""
    mask = np.ones(len(records), bool)
    for key, value in family.items():
        if key == "inference_steps":
            rule = np.where(records["inference_steps"] == records["depth"], "H", records["inference_steps"].astype(str))
            mask &= rule == value
        else:
            mask &= (records[key] == value).to_numpy()
    return records[mask]


def _family_report(
    rows: pd.DataFrame, records: pd.DataFrame, family: dict, axis: Axis, source: int, target: int
) -> TransferReport:
    uses_beta = family["algorithm"] == "pc"
    optima, incomplete = _optima(rows, axis)
    if source not in optima:
        raise NoSourceOptimum(f"{axis} {source} of {_describe(family)} has no valid point to transfer from.")
    src = optima[source]
    warnings = []
    # Out of sample: only sizes on the source's side of the target may inform the recommendation.
    drift_sizes = sorted(s for s in optima if (s < target if source < target else s > target))
    drift = _drift({s: optima[s] for s in drift_sizes}, uses_beta)
    eta, beta, basis = src.eta, src.beta, "source grid optimum"
    if drift is not None and drift["drifts"]:
        eta = float(10 ** (drift["log_eta_intercept"] + drift["log_eta_slope"] * np.log2(target)))
        if uses_beta:
            beta = float(10 ** (drift["log_beta_intercept"] + drift["log_beta_slope"] * np.log2(target)))
        basis = "extrapolated drift"
        of_beta = f" and {signed(drift['log_beta_slope'])} of β" if uses_beta else ""
        warnings.append(
            f"the optimum drifts with {axis} ({signed(drift['log_eta_slope'])} decades of η{of_beta} per doubling "
            f"over {axis} {sizes_text(drift_sizes)}): rates do not transfer unchanged; the recommendation is "
            "extrapolated"
        )
    if src.on_edge:
        warnings.append(f"the optimum at {axis} {source} lies on the edge of the grid; widen the grid")
    if src.basin == 1:
        warnings.append(f"the optimum at {axis} {source} is sharp: no other point within {BASIN_TOLERANCE:.0%}")

    by_size = {int(size): surface for size, surface in rows.groupby(axis)}
    regret = interval = extrapolated = coincide = holds = None
    target_swept = target in by_size
    if target_swept and target not in optima:  # swept, and every point failed there
        holds = False
        warnings.append(f"transfer does not hold at {axis} {target}: every point diverged or stopped there")
    elif target_swept:
        tgt_surface, tgt = by_size[target], optima[target]
        regret = _regret(tgt_surface, src.eta, src.beta, tgt.loss)
        if basis == "extrapolated drift":
            extrapolated = _regret(tgt_surface, eta, beta, tgt.loss)
        src_means, tgt_means = (bootstrap_means(records[records[axis] == size], by_size[size], size=size)
                                for size in (source, target))
        if src_means is not None and tgt_means is not None:
            interval = regret_interval(by_size[source], src_means, tgt_surface, tgt_means)
        coincide = bool(np.isclose(tgt.eta, src.eta) and (tgt.beta is None or np.isclose(tgt.beta, src.beta)))
        holds = regret is not None and regret <= REGRET_OK
        if regret is None:
            near = _nearest(tgt_surface, src.eta, src.beta)
            warnings.append(
                f"transfer does not hold at {axis} {target}: the grid point nearest the source's optimum "
                f"({_rates_text(near.eta, _beta_of(near.beta))}) diverged or stopped there"
            )
        elif not holds:
            warnings.append(
                f"transfer does not hold at {axis} {target}: the source's optimum reaches "
                f"{regret:.2f}x the best loss there (at {_rates_text(tgt.eta, tgt.beta)})"
            )
    edges = stability_edges(rows, axis)
    return TransferReport(
        family=family, axis=axis, source=source, target=target,
        recommended_eta=eta, recommended_beta=beta if uses_beta else None, basis=basis,
        source_optimum=asdict(src), source_surface=_surface_points(by_size[source]),
        optima=[asdict(o) for o in optima.values()], drift=drift, drift_sizes=drift_sizes,
        target_swept=target_swept, regret=regret, regret_interval=interval, extrapolated_regret=extrapolated,
        optima_coincide=coincide, transfer_holds=holds, optimum_probability=optimum_probabilities(records, rows, axis),
        stability_edge=edges, stability_drift=_edge_drift(edges, uses_beta),
        warnings=warnings, incomplete=incomplete,
    )


def _optima(rows: pd.DataFrame, axis: Axis) -> tuple[dict[int, Optimum], list[str]]:
    """The optimum at every size of a family with a valid point, and a line per size with failures."""
    optima, incomplete = {}, []
    for size, surface in rows.groupby(axis):
        opt = optimum(surface, int(size))
        if opt is None:
            incomplete.append(f"{axis} {size}: no valid point (every point diverged or stopped)")
            continue
        optima[int(size)] = opt
        if opt.n_valid < opt.n_points:
            incomplete.append(f"{axis} {size}: {opt.n_points - opt.n_valid} of {opt.n_points} points failed")
    return optima, incomplete


def _regret(surface: pd.DataFrame, eta: float, beta: float | None, best: float) -> float | None:
    """The loss at the grid point nearest (η, β) over `best`; None where that point failed."""
    near = _nearest(surface, eta, beta)
    return float(near.loss_mean / best) if near.valid else None


def sizes_text(sizes: list[int]) -> str:
    return ", ".join(map(str, sizes))


def bootstrap_means(records: pd.DataFrame, surface: pd.DataFrame, *, size: int) -> np.ndarray | None:
    """Seed bootstrap of one surface: (R, P) seed-mean min loss of each row of `surface` over the
    seeds drawn with replacement, R = `BOOTSTRAP_RESAMPLES`; inf at invalid points (validity is the
    full sample's: a point where any seed failed never becomes the optimum). None with one seed.
    The draws come from a generator seeded by (`BOOTSTRAP_SEED`, size): reproducible, and one size's
    draws do not depend on which other sizes were swept."""
    points = surface[["eta", "beta"]].reset_index(drop=True).assign(point=lambda d: np.arange(len(d)))
    rows = _plain_beta(records)[["eta", "beta", "seed", "min_train_loss"]].merge(points, on=["eta", "beta"])
    seeds = np.unique(rows["seed"])  # merge matches a null β with a null β: bp points pair up too
    n_seeds = len(seeds)
    if n_seeds < 2:
        return None
    losses = np.full((len(points), n_seeds), np.nan)  # (P, K)
    losses[rows["point"].to_numpy(), np.searchsorted(seeds, rows["seed"])] = rows["min_train_loss"]
    rng = np.random.default_rng([BOOTSTRAP_SEED, size])
    draws = rng.integers(0, n_seeds, size=(BOOTSTRAP_RESAMPLES, n_seeds))  # (R, K)
    with np.errstate(invalid="ignore"):
        means = np.nanmean(losses[:, draws], axis=2).T  # (R, P)
    valid = surface["valid"].to_numpy(bool)
    return np.where(valid[None, :] & np.isfinite(means), means, np.inf)


def optimum_probability(surface: pd.DataFrame, means: np.ndarray) -> list[dict]:
    """Each grid point's probability of being the optimum under the seed bootstrap (`means` from
    `bootstrap_means`): eta, beta, probability, most probable first, points never chosen left out."""
    counts = np.bincount(means.argmin(axis=1), minlength=means.shape[1])
    order = np.argsort(-counts, kind="stable")
    return [
        {"eta": float(surface["eta"].iloc[i]), "beta": _beta_of(surface["beta"].iloc[i]),
         "probability": float(counts[i] / len(means))}
        for i in order if counts[i] > 0
    ]


def regret_interval(
    source: pd.DataFrame, source_means: np.ndarray, target: pd.DataFrame, target_means: np.ndarray
) -> tuple[float, float]:
    """The `REGRET_LEVEL` interval of the zero-shot regret under the seed bootstrap: in each resample,
    the target's loss at the grid point nearest the source's optimum over the target's best.
    Source and target seeds are drawn independently; inf where that point failed at the target."""
    nearest = np.array([target.index.get_loc(_nearest(target, e, _beta_of(b)).name)
                        for e, b in zip(source["eta"], source["beta"])])
    at = nearest[source_means.argmin(axis=1)]
    picked = target_means[np.arange(len(target_means)), at]
    with np.errstate(invalid="ignore"):
        regrets = np.where(np.isfinite(picked), picked / target_means.min(axis=1), np.inf)
    lo = np.quantile(regrets, (1 - REGRET_LEVEL) / 2, method="lower")  # order statistics: no inf − inf
    hi = np.quantile(regrets, (1 + REGRET_LEVEL) / 2, method="higher")
    return float(lo), float(hi)


def optimum_probabilities(records: pd.DataFrame, surf: pd.DataFrame, axis: Axis) -> list[dict] | None:
    """`optimum_probability` at every size of one family with a valid point: size, eta, beta,
    probability. `records` and `surf` hold that family only. None if some size has one seed."""
    out = []
    for size, surface in surf.groupby(axis):
        if not surface["valid"].any():
            continue
        means = bootstrap_means(records[records[axis] == size], surface, size=int(size))
        if means is None:
            return None
        out += [{"size": int(size), **point} for point in optimum_probability(surface, means)]
    return out


def stability_edges(surf: pd.DataFrame, axis: Axis) -> list[dict]:
    """At every size of one family with a valid point, the largest η at which every seed stayed ok
    at the optimum's β, and the largest β at the optimum's η (None for bp); `*_at_grid_edge` when
    that is the grid's largest value, so that the real edge lies beyond the grid."""
    edges = []
    for size, surface in surf.groupby(axis):
        best = optimum(surface, int(size))
        if best is None:
            continue
        valid = surface[surface["valid"]]
        line = valid if best.beta is None else valid[np.isclose(valid["beta"], best.beta)]
        eta = line["eta"].max()
        edge = {"size": int(size), "eta": float(eta), "eta_at_grid_edge": bool(np.isclose(eta, surface["eta"].max())),
                "beta": None, "beta_at_grid_edge": None}
        if best.beta is not None:
            beta = valid[np.isclose(valid["eta"], best.eta)]["beta"].max()
            edge |= {"beta": float(beta), "beta_at_grid_edge": bool(np.isclose(beta, surface["beta"].max()))}
        edges.append(edge)
    return edges


def _edge_drift(edges: list[dict], uses_beta: bool) -> dict | None:
    """How far the stability edge moves across sizes: the span (max − min) of log10 of each edge,
    in decades, and `drifts` when either exceeds `DRIFT_DECADES`. None with fewer than two sizes."""
    if len(edges) < 2:
        return None
    spans = {rate: float(np.ptp(np.log10([e[rate] for e in edges]))) if (rate == "eta" or uses_beta) else None
             for rate in ("eta", "beta")}
    moved = [v for v in spans.values() if v is not None]
    return {"eta_decades": spans["eta"], "beta_decades": spans["beta"], "drifts": bool(max(moved) > DRIFT_DECADES)}


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
    """The surface as plain Python values, β None for bp."""
    columns = ["eta", "beta", "loss_mean", "loss_std", "n_seeds", "valid"]
    points = surface.sort_values(["eta", "beta"])[columns].to_dict("records")
    return [{**p, "beta": _beta_of(p["beta"])} for p in points]


def _nearest(surface: pd.DataFrame, eta: float, beta: float | None) -> pd.Series:
    """The grid point nearest (η, β) in log space (nearest η alone when β is None: bp)."""
    d = (np.log10(surface["eta"]) - np.log10(eta)) ** 2
    if beta is not None:
        d = d + (np.log10(surface["beta"]) - np.log10(beta)) ** 2
    return surface.loc[d.idxmin()]


def _beta_of(value: float) -> float | None:
    """A grid point's β as reported: None where it has none (bp)."""
    return None if pd.isna(value) else float(value)


def _rates_text(eta: float, beta: float | None) -> str:
    return f"η={eta:g}" + (f", β={beta:g}" if beta is not None else "")


def _describe(family: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in family.items())
