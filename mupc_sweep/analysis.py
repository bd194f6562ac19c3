"""Transfer analysis: records table (README, "Reading a sweep") -> loss surfaces, optima, and rate recommendations.

Pure functions of pandas DataFrames. A *family* is every cell of one sweep that shares dataset,
activation, parameterisation, algorithm, epochs, batch size and the size that is not swept (width
for a depth sweep, depth for a width sweep); along the swept *axis* it has one (η, β) surface per
size. Where a sweep has cells of one size with different inference steps T, T splits the family
too, as "H" (T = H) or the number.

A surface point is *valid* when every seed of it finished with status ``ok``; optima are taken
over valid points only, so a diverged point can never be chosen however low its loss got first.
A size need not hold every point of the family's grid: a *patch* (`grid.targets: patch`) is a
rectangle of it around the source's optimum, and *extension* points (`grid.extend`) lie beyond the
grid's ends. Every result is taken over the points a size measured; an unmeasured point is never
read as a failed one. β is null for bp points: <NA> in tables, None in scalars.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, fields
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
WORTH_FACTOR = 0.5  # transfer pays where its excess loss is at most this share of what the size step gained
EDGE_SIZES = 3  # sizes below the target with a measured stability edge before it is extrapolated
RESIDUAL_HIGH = 0.5  # an inference residual above this: inference stopped far from its equilibrium
NULLABLE = {"beta": "Float64", "refined_beta": "Float64", "beta_beyond_measured": "boolean"}  # <NA> for bp


def check_axis(axis: object) -> None:
    """InputError unless `axis` is depth or width."""
    check_choice("axis", axis, AXES)


def other_axis(axis: Axis) -> str:
    return "width" if axis == "depth" else "depth"


def check_varied(surf: pd.DataFrame, axis: Axis) -> None:
    """InputError unless some family of `surf` (a `surfaces` table) has two or more sizes along
    `axis`; the message names the axes the records do vary, and their sizes."""
    if any(rows[axis].nunique() > 1 for _, rows in families(surf, axis)):
        return
    varied = [a for a in AXES if any(rows[a].nunique() > 1 for _, rows in families(surf, a))]
    sizes = "; ".join(f"{a} {', '.join(map(str, sorted(surf[a].unique().tolist())))}" for a in varied)
    raise InputError(f"axis: the records vary no {axis}s" + (f"; they vary {sizes}" if varied else
                                                             " nor anything else (one size only)") + ".")


def varied_axis(records: pd.DataFrame) -> Axis:
    """The axis `records` vary most: the one with more distinct sizes, depth on a tie."""
    check_records(records)
    return "width" if records["width"].nunique() > records["depth"].nunique() else "depth"


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
    over seeds, the number of seeds with status ok, `valid` (all seeds ok), `extension` (a point
    beyond the spec's grid; False where the records have no such column) and `residual`, the
    seed-mean inference residual (NaN for bp and for records written before it was measured). A cell is its sweep,
    settings and shape, as far as the table has those columns. β is <NA> for bp."""
    check_records(records)
    extension = records["extension"].fillna(False).astype(bool) if "extension" in records.columns else False
    residual = records["inference_residual"].astype(float) if "inference_residual" in records.columns else np.nan
    df = records.assign(beta=records["beta"].astype("Float64"), ok=records["status"].eq("ok"), extension=extension,
                        residual=residual)
    cell = [c for c in (*SETTINGS, "inference_steps") if c in df.columns]
    keys = ["dataset", "activation", "param", "algorithm", *cell, "width", "depth", "eta", "beta"]
    out = df.groupby(keys, as_index=False, dropna=False).agg(
        loss_mean=("min_train_loss", "mean"),
        loss_std=("min_train_loss", "std"),
        n_seeds=("seed", "nunique"),
        n_ok=("ok", "sum"),
        extension=("extension", "any"),
        residual=("residual", "mean"),
    )
    out["loss_std"] = out["loss_std"].fillna(0.0)
    out["valid"] = (out["n_ok"] == out["n_seeds"]) & np.isfinite(out["loss_mean"])
    return out


def _uses_beta(surface: pd.DataFrame) -> bool:
    return surface["algorithm"].iloc[0] == "pc"


def family_grid(family: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The rate values a family measured at any size, extension points included, ascending:
    (η values, β values); no β values for bp."""
    return np.sort(family["eta"].unique()), np.sort(family["beta"].dropna().unique().astype(float))


def is_patch(surface: pd.DataFrame, family: pd.DataFrame) -> bool:
    """Whether one size's surface lacks a point of its family's grid: every η the family measured
    off its extensions, at every such β."""
    grid = family[~family["extension"]]
    n_grid = grid["eta"].nunique() * max(grid["beta"].nunique(), 1)  # bp: no β values
    return int((~surface["extension"]).sum()) < n_grid


def patch_extent(surface: pd.DataFrame, family: pd.DataFrame, eta: float, beta: float | None) -> dict | None:
    """Where `surface` (one size of `family`) is a patch: the rectangle of its measured points, as
    η and β ranges, its size in grid points (`n_eta` × `n_beta`, of which `n_points` measured) and
    the grid steps from (η, β) to its low and high ends in each rate (`eta_steps`, `beta_steps`);
    None where the size holds the whole grid. β fields are None for bp."""
    if not is_patch(surface, family):
        return None
    extent = {"n_points": len(surface)}
    for rate, values, at in zip(("eta", "beta"), family_grid(family), (eta, beta)):
        if at is None:
            extent |= {rate: None, f"n_{rate}": None, f"{rate}_steps": None}
            continue
        lo, hi = float(surface[rate].min()), float(surface[rate].max())
        i_lo, i_hi, i_at = (_grid_index(values, v) for v in (lo, hi, at))
        extent |= {rate: (lo, hi), f"n_{rate}": i_hi - i_lo + 1, f"{rate}_steps": (i_lo - i_at, i_hi - i_at)}
    return extent


def _grid_index(values: np.ndarray, at: float) -> int:
    """The index of the grid value nearest `at` in log space."""
    return int(np.argmin(np.abs(np.log10(values) - np.log10(at))))


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
    refined_clipped: bool  # the fit's minimum lay outside its 3 × 3 window: the refined rates are the window's edge
    basin: int  # valid points within BASIN_TOLERANCE of the best
    basin_eta: tuple[float, float]
    basin_beta: tuple[float, float] | None
    on_edge: bool  # the optimum ends its measured line in η (at its β) or in β (at its η)
    n_valid: int
    n_points: int  # points measured, extension points included
    n_extension: int  # points measured beyond the spec's grid (grid.extend)
    residual: float | None  # seed-mean inference residual at the optimum; None where not measured


def optimum(surface: pd.DataFrame, size: int) -> Optimum | None:
    """The best valid point of one surface (rows of `surfaces` for one size), or None if none is valid."""
    valid = surface[surface["valid"]]
    if valid.empty:
        return None
    best = valid.loc[valid["loss_mean"].idxmin()]
    uses_beta = _uses_beta(surface)
    eta, beta = float(best.eta), float(best.beta) if uses_beta else None
    in_basin = valid[valid["loss_mean"] <= best.loss_mean * (1 + BASIN_TOLERANCE)]
    refined_eta, refined_beta, refined_clipped = refine(valid, eta, beta)
    return Optimum(
        size=int(size), eta=eta, beta=beta, loss=float(best.loss_mean),
        loss_std=float(best.loss_std), n_seeds=int(best.n_seeds),
        refined_eta=refined_eta, refined_beta=refined_beta, refined_clipped=refined_clipped,
        basin=len(in_basin),
        basin_eta=(float(in_basin.eta.min()), float(in_basin.eta.max())),
        basin_beta=(float(in_basin.beta.min()), float(in_basin.beta.max())) if uses_beta else None,
        on_edge=_on_edge(surface, eta, beta), n_valid=len(valid), n_points=len(surface),
        n_extension=int(surface["extension"].sum()),
        residual=None if pd.isna(best.residual) else float(best.residual),
    )


def _on_edge(surface: pd.DataFrame, eta: float, beta: float | None) -> bool:
    """Whether (η, β) is the smallest or largest measured η at its β, or β at its η, where the
    surface has more than one value of that rate."""
    along_eta = surface["eta"] if beta is None else surface.loc[np.isclose(surface["beta"], beta), "eta"]
    edge = surface["eta"].nunique() > 1 and eta in (along_eta.min(), along_eta.max())
    if beta is not None:
        along_beta = surface.loc[np.isclose(surface["eta"], eta), "beta"]
        edge = edge or (surface["beta"].nunique() > 1 and beta in (along_beta.min(), along_beta.max()))
    return bool(edge)


def refine(valid: pd.DataFrame, eta: float, beta: float | None) -> tuple[float, float | None, bool]:
    """Optimum between grid points: least-squares quadratic in (u, v) = (log10 η, log10 β) of
    log10 loss over the valid points in the 3 × 3 grid window around (η, β); its minimum if the
    fit is convex, clipped to the window (and `clipped` says so), else the grid point itself. A 1-D fit in η when β is
    None (bp) or the grid has one β."""
    window_eta = _window(np.sort(valid["eta"].unique()), eta)
    window_beta = None if beta is None else _window(np.sort(valid["beta"].unique()), beta)
    lo_u, hi_u = np.log10(window_eta.min()), np.log10(window_eta.max())
    if window_beta is None or len(window_beta) == 1:  # 1-D in η
        line = valid[valid["eta"].isin(window_eta) & (True if beta is None else np.isclose(valid["beta"], beta))]
        u, f = np.log10(line["eta"].to_numpy(float)), np.log10(line["loss_mean"].to_numpy(float))
        if len(np.unique(u)) < 3:
            return eta, beta, False
        a, b, _ = np.polyfit(u, f, 2)
        if a <= 0:
            return eta, beta, False
        u_star = -b / (2 * a)
        return float(10 ** np.clip(u_star, lo_u, hi_u)), beta, bool(not lo_u <= u_star <= hi_u)
    near = valid[valid["eta"].isin(window_eta) & valid["beta"].isin(window_beta)]
    u, v = np.log10(near["eta"].to_numpy(float)), np.log10(near["beta"].to_numpy(float))
    f = np.log10(near["loss_mean"].to_numpy(float))
    if len(near) < 6 or len(np.unique(u)) < 3 or len(np.unique(v)) < 3:
        return eta, beta, False
    design = np.column_stack([np.ones_like(u), u, v, u * u, v * v, u * v])
    c, *_ = np.linalg.lstsq(design, f, rcond=None)
    hessian = np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])
    if np.any(np.linalg.eigvalsh(hessian) <= 0):
        return eta, beta, False
    u_star, v_star = np.linalg.solve(hessian, -c[1:3])
    lo_v, hi_v = np.log10(window_beta.min()), np.log10(window_beta.max())
    clipped = not (lo_u <= u_star <= hi_u and lo_v <= v_star <= hi_v)
    return float(10 ** np.clip(u_star, lo_u, hi_u)), float(10 ** np.clip(v_star, lo_v, hi_v)), bool(clipped)


def _window(values: np.ndarray, at: float) -> np.ndarray:
    i = int(np.searchsorted(values, at))
    return values[max(i - 1, 0) : i + 2]


@dataclass(eq=False)
class TransferReport:
    """What `mupc-sweep transfer` reports for one family: `text()` as the command prints it,
    `to_dict()` as `--json` holds it (plain Python: lists of dicts for the tables, None for β of
    bp), and a short repr and a markdown summary for a notebook. Tables are DataFrames."""

    family: dict
    axis: str
    source: int
    target: int
    recommended_eta: float
    recommended_beta: float | None
    basis: str  # "source grid optimum" or "extrapolated drift"
    source_optimum: dict  # the `Optimum` fields at the source
    source_surface: pd.DataFrame  # the source's surface: eta, beta, loss_mean, loss_std, n_seeds, valid, extension
    optima: pd.DataFrame  # a row per swept size with a valid point: the `Optimum` fields and `patch`
    drift: dict | None  # slope of log10 η* and log10 β* per doubling, fitted on `drift_sizes` when ≥ 3
    drift_sizes: list[int]  # the swept sizes below the target, the only ones a fit may use
    target_swept: bool
    target_patch: dict | None  # `patch_extent` of the target: its best is over these points only
    regret: float | None  # zero-shot: target's loss at the source's grid optimum over its best; None if it failed
    regret_interval: tuple[float, float] | None  # 90 % seed-bootstrap interval of `regret`; None with one seed
    extrapolated_regret: float | None  # the same at the extrapolated recommendation, when there is one
    optima_coincide: bool | None
    transfer_holds: bool | None  # regret ≤ REGRET_OK
    optimum_probability: pd.DataFrame | None  # size, eta, beta, probability: P(optimum) under the seed bootstrap
    stability_edge: pd.DataFrame  # per size, the largest η and β at which every seed stayed ok (`stability_edges`)
    stability_drift: dict | None  # how far the stability edge moves across the swept sizes
    worth: pd.DataFrame  # per size above the source: the transferred point's excess loss beside the size step's gain
    flatness: pd.DataFrame  # per size: the loss one grid step from the optimum over the optimum's, each way
    stability_margin: dict | None  # the stability edge extrapolated to the target, and the recommendation inside it
    inference_residual: dict  # seed-mean residual at the source's optimum and at the target's point ("source", "target")
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # sizes where points diverged or stopped

    def __repr__(self) -> str:
        from .report import transfer_repr

        return transfer_repr(self)

    def text(self) -> str:
        """The report as `mupc-sweep transfer` prints it."""
        from .report import transfer_text

        return transfer_text(self)

    def _repr_markdown_(self) -> str:
        from .report import transfer_markdown

        return transfer_markdown(self)

    def to_dict(self) -> dict:
        """Every field as plain Python: tables as lists of dicts, null values as None."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: object) -> object:
    """A table as a list of dicts of Python values (None where null); anything else unchanged."""
    if isinstance(value, pd.DataFrame):
        return value.astype(object).where(value.notna(), None).to_dict("records")
    return value


def _table(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """Rows as a DataFrame with `columns`, the β columns nullable (<NA> for bp)."""
    return pd.DataFrame(rows, columns=columns).astype({c: t for c, t in NULLABLE.items() if c in columns})


def _check_size(name: str, value: object) -> None:
    """InputError unless `value` is a positive integer (a width or depth)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name}: must be a positive integer; got {value!r}.")


def transfer(
    records: pd.DataFrame, *, source: int, target: int, axis: Axis = "depth"
) -> list[TransferReport]:
    """One report per family swept along `axis` that holds `source`: the recommended (η, β) for the
    larger `target`. Records that vary no size along `axis` are refused (`check_varied`).

    The verdict is zero-shot: where the target was swept, `regret` is its seed-mean loss at the
    measured point nearest the source's grid optimum over its best measured loss, and transfer holds
    when that is at most `REGRET_OK`. The recommendation is the source's grid optimum, unless three
    or more sizes below the target show the optimum drifting by more than `DRIFT_DECADES`; then the
    drift (linear in log size) is extrapolated to the target, out of sample: the target's own records
    and sizes beyond it never enter the recommendation.
    """
    check_axis(axis)
    _check_size("source", source)
    _check_size("target", target)
    if source >= target:
        raise InputError(f"source: must be smaller than target (rates transfer from a small model to a larger one); "
                         f"got source {source}, target {target}.")
    surf = surfaces(records)
    check_varied(surf, axis)
    swept = [(family, rows) for family, rows in families(surf, axis) if rows[axis].nunique() > 1]
    holding = [(family, rows) for family, rows in swept if (rows[axis] == source).any()]
    if not holding:
        sizes = sorted({int(s) for _, rows in swept for s in rows[axis].unique()})
        raise InputError(f"source: no sweep holds {axis} {source}; swept {axis}s: {', '.join(map(str, sizes))}.")
    reports, failed = [], []
    for family, rows in holding:
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
    optima, failures = _optima(rows, axis)
    if source not in optima:
        raise NoSourceOptimum(f"{axis} {source} of {_describe(family)} has no valid point to transfer from.")
    src = optima[source]
    warnings = []
    # Out of sample: only sizes below the target may inform the recommendation.
    drift_sizes = sorted(s for s in optima if s < target)
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
        extended = f" (its {src.n_extension} extension point(s) included)" if src.n_extension else ""
        warnings.append(f"the optimum at {axis} {source} lies on the edge of the grid{extended}; widen the grid "
                        "(grid.extend widens it automatically)")
    if src.basin == 1:
        warnings.append(f"the optimum at {axis} {source} is sharp: no other point within {BASIN_TOLERANCE:.0%}")

    by_size = {int(size): surface for size, surface in rows.groupby(axis)}
    target_swept = target in by_size
    target_patch = patch_extent(by_size[target], rows, src.eta, src.beta) if target_swept else None
    verdict = _target_verdict(by_size, optima, records, rows, axis, src, target, eta, beta, basis)
    warnings += verdict.pop("warnings")
    residuals = {"source": src.residual, "target": _residual_at(by_size.get(target), src.eta, src.beta)}
    warnings += _residual_warnings(residuals, axis, source, target)
    edges = stability_edges(rows, axis)
    drift_of_edges = _edge_drift(edges, rows, uses_beta)
    margin = stability_margin(edges, drift_of_edges, by_size[source], rows, target, eta, beta)
    if margin is not None and not margin["inside"]:
        warnings.append(margin["reason"])
        if margin["eta"] is not None:
            eta, beta, basis = margin["eta"], margin["beta"] if uses_beta else None, "stability margin"
    table = _table([asdict(o) for o in optima.values()], [f.name for f in fields(Optimum)])
    return TransferReport(
        family=family, axis=axis, source=source, target=target,
        recommended_eta=eta, recommended_beta=beta if uses_beta else None, basis=basis,
        source_optimum=asdict(src), source_surface=_surface_points(by_size[source]),
        optima=table.assign(patch=[is_patch(by_size[size], rows) for size in optima]),
        drift=drift, drift_sizes=drift_sizes, target_swept=target_swept, target_patch=target_patch, **verdict,
        optimum_probability=optimum_probabilities(records, rows, axis),
        stability_edge=edges, stability_drift=drift_of_edges, worth=transfer_worth(rows, axis, src, optima),
        flatness=flatness(rows, axis, optima), stability_margin=margin, inference_residual=residuals,
        warnings=warnings, failures=failures,
    )


def _target_verdict(by_size: dict[int, pd.DataFrame], optima: dict[int, Optimum], records: pd.DataFrame,
                    family: pd.DataFrame, axis: Axis, src: Optimum, target: int, eta: float, beta: float | None,
                    basis: str) -> dict:
    """The zero-shot verdict at `target` (the `TransferReport` fields regret, regret_interval,
    extrapolated_regret, optima_coincide and transfer_holds, all None where the target was not swept)
    and the warnings it calls for."""
    out = dict(regret=None, regret_interval=None, extrapolated_regret=None, optima_coincide=None,
               transfer_holds=None, warnings=[])
    if target not in by_size:
        return out
    if target not in optima:  # swept, and every point failed there
        out["transfer_holds"] = False
        out["warnings"].append(f"transfer does not hold at {axis} {target}: every point diverged or stopped there")
        return out
    surface, tgt = by_size[target], optima[target]
    regret = _regret(surface, src.eta, src.beta, tgt.loss)
    if basis == "extrapolated drift":
        out["extrapolated_regret"] = _regret(surface, eta, beta, tgt.loss)
    src_means, tgt_means = (bootstrap_means(records[records[axis] == size], by_size[size], size=size)
                            for size in (src.size, target))
    if src_means is not None and tgt_means is not None:
        out["regret_interval"] = regret_interval(by_size[src.size], src_means, surface, tgt_means)
    out["optima_coincide"] = bool(np.isclose(tgt.eta, src.eta) and (tgt.beta is None or np.isclose(tgt.beta, src.beta)))
    out["regret"], out["transfer_holds"] = regret, regret is not None and regret <= REGRET_OK
    if regret is None:
        near = _nearest(surface, src.eta, src.beta)
        out["warnings"].append(f"transfer does not hold at {axis} {target}: the grid point nearest the source's optimum "
                               f"({_rates_text(near.eta, beta_of(near.beta))}) diverged or stopped there")
    elif not out["transfer_holds"]:
        out["warnings"].append(f"transfer does not hold at {axis} {target}: the source's optimum reaches "
                               f"{regret:.2f}x the best loss there (at {_rates_text(tgt.eta, tgt.beta)})")
    if is_patch(surface, family) and _on_patch_border(surface, family, tgt.eta, tgt.beta):
        out["warnings"].append(
            f"the best point at {axis} {target} ({_rates_text(tgt.eta, tgt.beta)}) lies on the border of its patch, "
            "where the grid goes on: a better point may lie outside the patch, so the zero-shot regret may be "
            "understated")
    return out


def _residual_warnings(residuals: dict, axis: Axis, source: int, target: int) -> list[str]:
    """A warning where the inference residual at the source's optimum or the transferred point is
    above `RESIDUAL_HIGH`."""
    out = []
    for where, value in residuals.items():
        if value is not None and value > RESIDUAL_HIGH:
            size, point = (source, "the source optimum") if where == "source" else (target, "the transferred point")
            out.append(f"inference stopped far from its equilibrium at {axis} {size} (residual {value:.2f} at "
                       f"{point}): the verdict may reflect unfinished inference as much as the rates; more inference "
                       "steps (network.inference_steps) tell the two apart")
    return out


def _residual_at(surface: pd.DataFrame | None, eta: float, beta: float | None) -> float | None:
    """The seed-mean inference residual at the measured point nearest (η, β); None where none."""
    if surface is None or surface.empty:
        return None
    value = _nearest(surface, eta, beta)["residual"]
    return None if pd.isna(value) else float(value)


def _on_patch_border(surface: pd.DataFrame, family: pd.DataFrame, eta: float, beta: float | None) -> bool:
    """Whether (η, β) lies at an end of the surface's measured range of η or β where the family's
    grid goes on beyond it."""
    for rate, values, at in zip(("eta", "beta"), family_grid(family), (eta, beta)):
        if at is None:
            continue
        lo, hi = surface[rate].min(), surface[rate].max()
        if (at == lo and at > values[0]) or (at == hi and at < values[-1]):
            return True
    return False


def _optima(rows: pd.DataFrame, axis: Axis) -> tuple[dict[int, Optimum], list[str]]:
    """The optimum at every size of a family with a valid point, and a line per size with failures."""
    optima, failures = {}, []
    for size, surface in rows.groupby(axis):
        opt = optimum(surface, int(size))
        if opt is None:
            failures.append(f"{axis} {size}: no valid point (every point diverged or stopped)")
            continue
        optima[int(size)] = opt
        if opt.n_valid < opt.n_points:
            failures.append(f"{axis} {size}: {opt.n_points - opt.n_valid} of {opt.n_points} grid points had a seed "
                            "diverge or stop")
    return optima, failures


def _regret(surface: pd.DataFrame, eta: float, beta: float | None, best: float) -> float | None:
    """The loss at the measured point nearest (η, β) over `best`; None where that point failed."""
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
    points = _nan_beta(surface)[["eta", "beta"]].reset_index(drop=True).assign(point=lambda d: np.arange(len(d)))
    rows = _nan_beta(records)[["eta", "beta", "seed", "min_train_loss"]].merge(points, on=["eta", "beta"])
    seeds = np.unique(rows["seed"])  # merge matches a NaN β with a NaN β: bp points pair up too
    n_seeds = len(seeds)
    if n_seeds < 2:
        return None
    losses = np.full((len(points), n_seeds), np.nan)  # (P, K)
    losses[rows["point"].to_numpy(), np.searchsorted(seeds, rows["seed"])] = rows["min_train_loss"]
    rng = np.random.default_rng([BOOTSTRAP_SEED, size])
    draws = rng.integers(0, n_seeds, size=(BOOTSTRAP_RESAMPLES, n_seeds))  # (R, K)
    with warnings.catch_warnings():  # a point some seeds lack (a patch's, beside a full run's) draws none of
        warnings.simplefilter("ignore", RuntimeWarning)  # its seeds in some resamples: NaN there, never the optimum
        means = np.nanmean(losses[:, draws], axis=2).T  # (R, P)
    valid = surface["valid"].to_numpy(bool)
    return np.where(valid[None, :] & np.isfinite(means), means, np.inf)


def _nan_beta(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with β as plain float64, NaN for bp: for merging on β."""
    return table.assign(beta=table["beta"].astype("float64"))


def optimum_probability(surface: pd.DataFrame, means: np.ndarray) -> pd.DataFrame:
    """Each grid point's probability of being the optimum under the seed bootstrap (`means` from
    `bootstrap_means`): eta, beta, probability, most probable first, points never chosen left out."""
    counts = np.bincount(means.argmin(axis=1), minlength=means.shape[1])
    order = np.argsort(-counts, kind="stable")
    rows = [{"eta": float(surface["eta"].iloc[i]), "beta": beta_of(surface["beta"].iloc[i]),
             "probability": float(counts[i] / len(means))} for i in order if counts[i] > 0]
    return _table(rows, ["eta", "beta", "probability"])


def regret_interval(
    source: pd.DataFrame, source_means: np.ndarray, target: pd.DataFrame, target_means: np.ndarray
) -> tuple[float, float]:
    """The `REGRET_LEVEL` interval of the zero-shot regret under the seed bootstrap: in each resample,
    the target's loss at the measured point nearest the source's optimum over the target's best.
    Source and target seeds are drawn independently; inf where that point failed at the target."""
    nearest = np.array([target.index.get_loc(_nearest(target, e, beta_of(b)).name)
                        for e, b in zip(source["eta"], source["beta"])])
    at = nearest[source_means.argmin(axis=1)]
    picked = target_means[np.arange(len(target_means)), at]
    with np.errstate(invalid="ignore"):
        regrets = np.where(np.isfinite(picked), picked / target_means.min(axis=1), np.inf)
    lo = np.quantile(regrets, (1 - REGRET_LEVEL) / 2, method="lower")  # order statistics: no inf − inf
    hi = np.quantile(regrets, (1 + REGRET_LEVEL) / 2, method="higher")
    return float(lo), float(hi)


def optimum_probabilities(records: pd.DataFrame, surf: pd.DataFrame, axis: Axis) -> pd.DataFrame | None:
    """`optimum_probability` at every size of one family with a valid point: size, eta, beta,
    probability. `records` and `surf` hold that family only. None if some size has one seed."""
    tables = []
    for size, surface in surf.groupby(axis):
        if not surface["valid"].any():
            continue
        means = bootstrap_means(records[records[axis] == size], surface, size=int(size))
        if means is None:
            return None
        tables.append(optimum_probability(surface, means).assign(size=int(size)))
    columns = ["size", "eta", "beta", "probability"]
    return pd.concat(tables, ignore_index=True)[columns] if tables else _table([], columns)


def stability_edges(surf: pd.DataFrame, axis: Axis) -> pd.DataFrame:
    """At every size of one family with a valid point, over its measured points: the largest η at
    which every seed stayed ok at the optimum's β, and the largest β at the optimum's η (<NA> for
    bp). `eta_beyond_measured` (`beta_beyond_measured`) when that is the largest value measured on
    the line, so that the real edge lies beyond the measured points: an unmeasured point is never
    read as an unstable one."""
    edges = []
    for size, surface in surf.groupby(axis):
        best = optimum(surface, int(size))
        if best is None:
            continue
        line = surface if best.beta is None else surface[np.isclose(surface["beta"], best.beta)]
        eta = line.loc[line["valid"], "eta"].max()
        edge = {"size": int(size), "eta": float(eta), "eta_beyond_measured": bool(eta == line["eta"].max()),
                "beta": None, "beta_beyond_measured": None}
        if best.beta is not None:
            line = surface[np.isclose(surface["eta"], best.eta)]
            beta = line.loc[line["valid"], "beta"].max()
            edge |= {"beta": float(beta), "beta_beyond_measured": bool(beta == line["beta"].max())}
        edges.append(edge)
    return _table(edges, ["size", "eta", "eta_beyond_measured", "beta", "beta_beyond_measured"])


def _edge_drift(edges: pd.DataFrame, family: pd.DataFrame, uses_beta: bool) -> dict | None:
    """How far the stability edge moves across sizes: the span (max − min) of log10 of each edge,
    in decades, over the sizes whose edge was found or lies beyond the family's whole grid (an edge
    cut short by a patch says nothing; a span is None with fewer than two), and `drifts` when
    either span exceeds `DRIFT_DECADES`. None when neither rate has a span."""
    spans = {"eta": None, "beta": None}
    for rate in ("eta", "beta") if uses_beta else ("eta",):
        known = edges[~(edges[f"{rate}_beyond_measured"] & (edges[rate] < family[rate].max()))]
        if len(known) >= 2:
            spans[rate] = float(np.ptp(np.log10(known[rate].to_numpy(float))))
    moved = [v for v in spans.values() if v is not None]
    if not moved:
        return None
    return {"eta_decades": spans["eta"], "beta_decades": spans["beta"], "drifts": bool(max(moved) > DRIFT_DECADES)}


def transfer_worth(rows: pd.DataFrame, axis: Axis, source: Optimum, optima: dict[int, Optimum]) -> pd.DataFrame:
    """Whether transferring pays at each size above the source (Ghosh, Wu & Bietti 2025, "fast"
    transfer): `excess`, the loss of the source's optimum there over that size's best, minus 1 (the
    zero-shot regret − 1; inf where it failed), beside `gain`, the previous swept size's best loss
    over this size's, minus 1 (what the size step bought). `pays` where the excess is at most
    `WORTH_FACTOR` of the gain; null where the step gained nothing (gain ≤ 0)."""
    sizes = sorted(optima)
    out = []
    for previous, size in zip(sizes, sizes[1:]):
        if size <= source.size:
            continue
        regret = _regret(rows[rows[axis] == size], source.eta, source.beta, optima[size].loss)
        excess = np.inf if regret is None else regret - 1
        gain = optima[previous].loss / optima[size].loss - 1
        out.append(dict(size=size, previous=previous, excess=excess, gain=gain,
                        pays=bool(excess <= WORTH_FACTOR * gain) if gain > 0 else None))
    return pd.DataFrame(out, columns=["size", "previous", "excess", "gain", "pays"]).astype({"pays": "boolean"})


def flatness(rows: pd.DataFrame, axis: Axis, optima: dict[int, Optimum]) -> pd.DataFrame:
    """How flat each size's optimum is: the seed-mean loss one grid step below and above it in η (at
    its β) and in β (at its η), over its own; inf where that neighbour failed, null where it was not
    measured (the grid's or a patch's edge; β for bp)."""
    out = []
    for size, best in optima.items():
        surface = rows[rows[axis] == size]
        row = {"size": size}
        for rate, other, value, other_value in (("eta", "beta", best.eta, best.beta), ("beta", "eta", best.beta, best.eta)):
            line = surface if other_value is None or rate == "eta" and best.beta is None else surface[
                np.isclose(surface[other].astype(float), other_value)]
            values = np.sort(line[rate].dropna().unique().astype(float)) if value is not None else np.array([])
            i = int(np.searchsorted(values, value)) if value is not None else 0
            for side, j in (("below", i - 1), ("above", i + 1)):
                ratio = None
                if value is not None and 0 <= j < len(values):
                    neighbour = line[np.isclose(line[rate].astype(float), values[j])].iloc[0]
                    ratio = float(neighbour.loss_mean / best.loss) if neighbour.valid else np.inf
                row[f"{rate}_{side}"] = ratio
        out.append(row)
    columns = ["size", "eta_below", "eta_above", "beta_below", "beta_above"]
    return pd.DataFrame(out, columns=columns).astype({c: "Float64" for c in columns[1:]})


def extrapolated_edge(edges: pd.DataFrame, size: int, *, uses_beta: bool) -> dict:
    """Each rate's stability edge (`stability_edges`) extrapolated to `size` out of sample: a line in
    log10 edge over log2 size through the `EDGE_SIZES` or more smaller sizes whose edge was measured
    (not beyond the measured points). {"eta_edge": …, "beta_edge": …}, None where too few are known."""
    out = {"eta_edge": None, "beta_edge": None}
    for rate in ("eta", "beta") if uses_beta else ("eta",):
        known = edges[(edges["size"] < size) & ~edges[f"{rate}_beyond_measured"].astype(bool)]
        if len(known) >= EDGE_SIZES:
            slope, intercept = np.polyfit(np.log2(known["size"].to_numpy(float)),
                                          np.log10(known[rate].to_numpy(float)), 1)
            out[f"{rate}_edge"] = float(10 ** (intercept + slope * np.log2(size)))
    return out


def stability_margin(edges: pd.DataFrame, drift: dict | None, source: pd.DataFrame, family: pd.DataFrame,
                     target: int, eta: float, beta: float | None) -> dict | None:
    """Where the stability edge drifts with size: each rate's edge extrapolated to `target` (a line
    in log10 edge over log2 size, out of sample: the `EDGE_SIZES` or more sizes below the target
    whose edge was measured), and whether the recommended (η, β) lies inside it by at least one grid
    step (the family grid's mean ratio). When it does not, the best valid source point that does
    (None if none) and the reason. None where the edge does not drift or too few edges are known."""
    if drift is None or not drift["drifts"]:
        return None
    grid = dict(zip(("eta", "beta"), family_grid(family)))
    out = {**extrapolated_edge(edges, target, uses_beta=beta is not None), "eta_step": None, "beta_step": None}
    for rate in ("eta", "beta"):
        if out[f"{rate}_edge"] is not None and len(grid[rate]) >= 2:
            out[f"{rate}_step"] = float((grid[rate][-1] / grid[rate][0]) ** (1 / (len(grid[rate]) - 1)))
        else:
            out[f"{rate}_edge"] = None
    if out["eta_edge"] is None and out["beta_edge"] is None:
        return None

    def inside(e: float, b: float | None) -> bool:
        return all(out[f"{r}_edge"] is None or v * out[f"{r}_step"] <= out[f"{r}_edge"] * (1 + 1e-9)
                   for r, v in (("eta", e), ("beta", b)) if v is not None)

    out["inside"] = inside(eta, beta)
    out["eta"] = out["beta"] = out["reason"] = None
    if not out["inside"]:
        valid = source[source["valid"]]
        safe = valid[[inside(float(e), beta_of(b)) for e, b in zip(valid["eta"], valid["beta"])]]
        edge = ", ".join(f"{'η' if r == 'eta' else 'β'} ≈ {out[f'{r}_edge']:.3g}" for r in ("eta", "beta")
                         if out[f"{r}_edge"] is not None)
        out["reason"] = (f"the stability edge moves with size; extrapolated to {target} it lies at {edge}, less than "
                         f"a grid step beyond the recommended {_rates_text(eta, beta)}")
        if len(safe):
            pick = safe.loc[safe["loss_mean"].idxmin()]
            best = valid["loss_mean"].min()
            out |= {"eta": float(pick.eta), "beta": beta_of(pick.beta)}
            out["reason"] += (f": recommended instead the best source point at least a grid step inside it, "
                              f"{_rates_text(out['eta'], out['beta'])} ({pick.loss_mean / best:.2f}x the source's best "
                              "loss there)")
        else:
            out["reason"] += ": no source point lies a grid step inside it"
    return out


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


def _surface_points(surface: pd.DataFrame) -> pd.DataFrame:
    """One size's surface as a report table, sorted by η then β."""
    columns = ["eta", "beta", "loss_mean", "loss_std", "n_seeds", "valid", "extension"]
    return surface.sort_values(["eta", "beta"])[columns].reset_index(drop=True)


def _nearest(surface: pd.DataFrame, eta: float, beta: float | None) -> pd.Series:
    """The measured point nearest (η, β) in log space (nearest η alone when β is None: bp)."""
    d = (np.log10(surface["eta"]) - np.log10(eta)) ** 2
    if beta is not None:
        d = d + (np.log10(surface["beta"].astype(float)) - np.log10(beta)) ** 2
    return surface.loc[d.idxmin()]


def beta_of(value: float) -> float | None:
    """A grid point's β as reported: None where it has none (bp)."""
    return None if pd.isna(value) else float(value)


def _rates_text(eta: float, beta: float | None) -> str:
    return f"η={eta:g}" + (f", β={beta:g}" if beta is not None else "")


def _describe(family: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in family.items())
