"""Reports as text and JSON: what `transfer`, `status`, `train` and `run` print (pure; no I/O)."""

from __future__ import annotations

import math

import pandas as pd

from .analysis import (
    BASIN_TOLERANCE,
    REGRET_LEVEL,
    REGRET_OK,
    TransferReport,
    optimum,
    other_axis,
    signed,
    sizes_text,
    surfaces,
)


def best_text(records: pd.DataFrame) -> str:
    """One line on a cell's records: its best valid point and how many points finished ok."""
    best = optimum(surfaces(records), 0)
    if best is None:
        return "no valid point (every point diverged or stopped)"
    beta = f" β={best.beta:g}" if records.algorithm.iloc[0] == "pc" else ""
    return f"best η={best.eta:g}{beta} min loss {best.loss:.4g} ({best.n_valid}/{best.n_points} points ok)"


def plan_text(table: pd.DataFrame, *, slots: int, where: str, wall_s: float, unsharded_s: float, device: str) -> str:
    """What `run --dry-run` prints: per cell its pending points, trials and estimated cost, then the
    estimated wall time on `slots` trial slots with these trials and with one trial per cell."""
    if table.empty:
        return "nothing to train: every point has a record"
    shown = table.rename(columns={"s_per_trial": "est. s/trial", "tflops": "TFLOP"})
    lines = [shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"), "",
             f"{len(table)} cells, {table.points.sum()} points to train in {table.trials.sum()} trials, "
             f"{table.tflops.sum():.3g} TFLOP (matrix products of training and evaluation)",
             f"estimated wall time on {slots} slot(s) ({where}), at the {device} rates measured in "
             f"benchmarks/RESULTS.md: {_hours(wall_s)}; one trial per cell: {_hours(unsharded_s)}"]
    return "\n".join(lines)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def cell_status(whole: list[pd.DataFrame], damaged: list[str], failure: str | None, n_points: int,
                n_pending: int) -> str:
    """One line on a cell of a kept sweep, from its whole records files, the names of its damaged
    ones and its failure note: its best point once complete, else its points done and pending."""
    if not n_pending:
        return best_text(pd.concat(whole))
    notes = [f"{n_points - n_pending}/{n_points} points done, {n_pending} pending" if n_pending < n_points
             else "pending"]
    if damaged:
        notes.append(f"records file damaged, incomplete or not this tool's: {', '.join(damaged)} (a rerun retrains it)")
    if failure:
        notes.append(f"failed: {failure} (a rerun retries it)")
    return "; ".join(notes)


def finite_or_null(value):
    """`value` with every non-finite float (NaN, ±inf) replaced by None, so the JSON is strict."""
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    return value


def transfer_text(r: TransferReport) -> str:
    """The report of one family: the verdict first, then the recommendation and its evidence."""
    f, src, uses_beta = r.family, r.source_optimum, r.recommended_beta is not None
    fixed = other_axis(r.axis)
    where = f"{f['sweep']}: " if "sweep" in f else ""
    steps = f", T = {f['inference_steps']}" if "inference_steps" in f else ""
    beta = f", β = {r.recommended_beta:.3g}" if uses_beta else ""
    basis = r.basis if r.drift is None or not r.drift["drifts"] else (
        f"{r.basis} over {r.axis} {sizes_text(r.drift_sizes)}")
    lines = [
        f"{where}{f['dataset']} {f['activation']} {f['param']} {f['algorithm']}, {fixed} {f[fixed]}{steps}: "
        f"{r.axis} {r.source} -> {r.target}",
        *_verdict_lines(r),
        f"  recommended   η = {r.recommended_eta:.3g}{beta}   ({basis})",
        f"  refined between grid points: η ≈ {src['refined_eta']:.3g}"
        + (f", β ≈ {src['refined_beta']:.3g}" if uses_beta else ""),
        f"  at {r.axis} {r.source}: grid optimum {_rates(src['eta'], src['beta'] if uses_beta else None)}, min loss "
        f"{src['loss']:.4g} ± {src['loss_std']:.2g} over {src['n_seeds']} seed(s); {src['basin']} point(s) within "
        f"{BASIN_TOLERANCE * 100:g} % of it (η {src['basin_eta'][0]:g}–{src['basin_eta'][1]:g}"
        + (f", β {src['basin_beta'][0]:g}–{src['basin_beta'][1]:g})" if uses_beta else ")"),
        *surface_table(r.source_surface, src, uses_beta=uses_beta),
        *_size_table(r),
        _drift_line(r),
    ]
    lines += [f"  incomplete: {item}" for item in r.incomplete]
    lines += [f"  WARNING: {w}" for w in r.warnings]
    return "\n".join(lines)


def _verdict_lines(r: TransferReport) -> list[str]:
    if not r.target_swept:
        return [f"  verdict: {r.axis} {r.target} was not swept, so there is no zero-shot regret to report"]
    holds = "transfer holds" if r.transfer_holds else "transfer does NOT hold"
    if r.regret is None:
        regret = "the source's optimum failed there (diverged or stopped)"
    else:
        regret = f"zero-shot regret {r.regret:.3f}"
        if r.regret_interval is not None:
            lo, hi = r.regret_interval
            regret += f" ({REGRET_LEVEL * 100:g} % seed-bootstrap interval {_ratio(lo)}–{_ratio(hi)})"
        else:
            regret += " (one seed: no interval)"
    lines = [f"  verdict at {r.axis} {r.target}: {regret}: {holds} (regret ≤ {REGRET_OK:g}); optima "
             f"{'coincide' if r.optima_coincide else 'differ'}",
             "    zero-shot regret: the target's loss at the source's grid optimum over its best loss"]
    if r.basis == "extrapolated drift":
        extrapolated = (f"{r.extrapolated_regret:.3f}" if r.extrapolated_regret is not None
                        else "failed (the nearest grid point diverged or stopped)")
        lines.append(f"    extrapolated regret (at the recommendation below): {extrapolated}")
    return lines


def _drift_line(r: TransferReport) -> str:
    side = "below" if r.source < r.target else "above"
    if r.drift is None:
        return (f"  no extrapolation: {len(r.drift_sizes)} swept size(s) {side} {r.axis} {r.target} "
                f"({sizes_text(r.drift_sizes)}); a drift fit needs 3")
    of_beta = f", {signed(r.drift['log_beta_slope'])} of β" if r.recommended_beta is not None else ""
    return (f"  drift per doubling over {r.axis} {sizes_text(r.drift_sizes)} (the sizes {side} the target): "
            f"{signed(r.drift['log_eta_slope'])} decades of η{of_beta} "
            f"({'drifts' if r.drift['drifts'] else 'stable'})")


def _size_table(r: TransferReport) -> list[str]:
    """A row per swept size: grid optimum, its loss, the bootstrap's three most probable optima and
    the stability edge (≥: the grid's largest rate, so the real edge lies beyond)."""
    uses_beta = r.recommended_beta is not None
    edges = {e["size"]: e for e in r.stability_edge}
    header = [r.axis, "grid optimum", "min loss", "P(optimum), top three", "stability edge"]
    rows = [header]
    for o in r.optima:
        if r.optimum_probability is None:
            top = "one seed: none"
        else:
            top = ", ".join(f"{_rates(p['eta'], p['beta'] if uses_beta else None)} {p['probability']:.2f}"
                            for p in [p for p in r.optimum_probability if p["size"] == o["size"]][:3])
        e = edges[o["size"]]
        edge = f"η {_edge(e['eta'], e['eta_at_grid_edge'])}" + (
            f", β {_edge(e['beta'], e['beta_at_grid_edge'])}" if uses_beta else "")
        rows.append([str(o["size"]), _rates(o["eta"], o["beta"] if uses_beta else None), f"{o['loss']:.4g}", top, edge])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  by " + r.axis + " (P: seed bootstrap; stability edge: the largest rate with every seed ok at the "
             "optimum's other rate, ≥ where that is the grid's edge):"]
    lines += ["    " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    d = r.stability_drift
    if d is not None:
        moved = f"η {d['eta_decades']:.2f} decades" + (f", β {d['beta_decades']:.2f}" if uses_beta else "")
        lines.append(f"  stability edge across {r.axis}: moves {moved} ({'drifts' if d['drifts'] else 'stable'})")
    return lines


def surface_table(points: list[dict], best: dict, *, uses_beta: bool) -> list[str]:
    """The seed-mean min loss at the source as text: a row per η, a column per β; * the optimum,
    ✕ a point where a seed diverged or stopped."""
    etas = sorted({p["eta"] for p in points}, reverse=True)
    betas = sorted({p["beta"] for p in points}, reverse=True) if uses_beta else [None]
    at = {(p["eta"], p["beta"]): p for p in points}

    def cell(eta: float, beta: float | None) -> str:
        point = at.get((eta, beta))
        if point is None:
            return ""
        if not point["valid"]:
            return "✕"
        mark = "*" if (eta, beta) == (best["eta"], best["beta"]) else ""
        return f"{mark}{point['loss_mean']:.3g}"

    header = "η \\ β" if uses_beta else "η"
    rows = [[header, *(f"{b:g}" for b in betas)] if uses_beta else [header, "min loss"]]
    rows += [[f"{eta:g}", *(cell(eta, beta) for beta in betas)] for eta in etas]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    title = "  seed-mean min train loss at the source (* optimum, ✕ a seed diverged or stopped):"
    return [title, *("    " + "  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows)]


def _edge(value: float, at_grid_edge: bool) -> str:
    return f"≥ {value:g}" if at_grid_edge else f"{value:g}"


def _ratio(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "∞ (the point failed in some resamples)"


def _rates(eta: float, beta: float | None) -> str:
    return f"(η {eta:g}, β {beta:g})" if beta is not None else f"(η {eta:g})"
