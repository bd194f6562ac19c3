"""Reports as text, markdown and JSON: what `transfer`, `status`, `train` and `run` print (pure; no I/O)."""

from __future__ import annotations

import math

import pandas as pd

from .analysis import (
    WORTH_FACTOR,
    BASIN_TOLERANCE,
    REGRET_LEVEL,
    REGRET_OK,
    TransferReport,
    beta_of,
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


def plan_text(plan: pd.DataFrame, *, where: str) -> str:
    """What `run --dry-run` prints for a `driver.plan_sweep` table: per cell its role, the points to
    train now, their trials and estimated cost, and for a transfer sweep's patches the least and most
    points later stages may train; then the estimated wall time on the plan's slots (`where` says
    whose slots), beside one trial per cell and, for a transfer sweep, beside the full grid."""
    a = plan.attrs
    now = plan[plan.points > 0]
    later = plan[plan.later_most > 0]
    if now.empty and later.empty:
        return "nothing to train: every point has a record"
    transfer = (plan.role != "grid").any()
    columns = ["cell_id", "role", "points", "trials", "points_per_trial", "s_per_trial", "tflops"] + (
        ["later_least", "later_most"] if len(later) else [])
    shown = plan[columns if transfer else [c for c in columns if c != "role"]].rename(
        columns={"s_per_trial": "est. s/trial", "tflops": "TFLOP", "later_least": "later: least",
                 "later_most": "later: most"})
    rates = f"at the {a['device']} rates measured in benchmarks/RESULTS.md"
    lines = [shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"), "",
             f"{len(now)} cells, {now.points.sum()} points to train now in {now.trials.sum()} trials, "
             f"{now.tflops.sum():.3g} TFLOP (matrix products of training and evaluation)"]
    if len(later):
        lines.append(f"later stages (patches placed at their source's optimum, regions grown while their best is "
                     f"on their edge): {later.later_least.sum()} to {later.later_most.sum()} points")
        lines.append(f"estimated wall time on {a['slots']} slot(s) ({where}), {rates}: {_hours(a['wall_s'])} "
                     f"at least, {_hours(a['wall_most_s'])} at most; one trial per cell now: "
                     f"{_hours(a['unsharded_s'])}")
    else:
        lines.append(f"estimated wall time on {a['slots']} slot(s) ({where}), {rates}: {_hours(a['wall_s'])}; "
                     f"one trial per cell: {_hours(a['unsharded_s'])}")
    if transfer:
        lines.append(f"the full grid at every size, for comparison: {_hours(a['full_grid_s'])} "
                     f"({100 * a['wall_s'] / a['full_grid_s']:.0f} % of it at least)")
    lines += [f"WARNING: {problem}; `run` refuses this sweep here" for problem in a.get("memory_problems", [])]
    return "\n".join(lines)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.3g} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def strict_json(value):
    """`value` made fit for strict JSON: NaN (a missing number) as null, ±inf (an unbounded regret
    interval, say) as the strings "inf" and "-inf", which `float()` reads back, so that no reader
    mistakes an infinite bound for a missing one."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def transfer_document(
    reports: list[TransferReport], *, axis: str, source: int, target: int, left_out: list[str]
) -> dict:
    """The one JSON object `mupc-sweep transfer --json` prints (`schema` 1): the question (axis,
    source, target), each family's `to_dict()` and the cells or files analysis left out, made
    `strict_json`, so that `json.dumps(..., allow_nan=False)` takes it."""
    return strict_json({"schema": 1, "axis": axis, "source": source, "target": target,
                           "families": [r.to_dict() for r in reports], "left_out": list(left_out)})


def transfer_repr(r: TransferReport) -> str:
    """One line: the family, the recommended rates, the regret and the verdict."""
    beta = f", β={r.recommended_beta:.3g}" if r.recommended_beta is not None else ""
    if r.target_swept:
        regret = "failed" if r.regret is None else f"{r.regret:.3f}"
        verdict = f"regret {regret}: {_holds(r)}"
    else:
        verdict = f"{r.axis} {r.target} not swept: no verdict"
    return f"<TransferReport {_heading(r)}; recommended η={r.recommended_eta:.3g}{beta}; {verdict}>"


def transfer_text(r: TransferReport) -> str:
    """The report of one family: the verdict first, then the recommendation and its evidence."""
    src, uses_beta = r.source_optimum, r.recommended_beta is not None
    lines = [
        _heading(r),
        f"  {_verdict(r)}",
        *_verdict_notes(r),
        *[f"  {line}" for line in _patch_line(r)],
        f"  recommended   {_recommendation(r)}",
        f"  refined between grid points: {_refined(r)}",
        f"  at {r.axis} {r.source}: grid optimum {_rates(src['eta'], src['beta'] if uses_beta else None)}, min loss "
        f"{src['loss']:.4g} ± {src['loss_std']:.2g} over {src['n_seeds']} seed(s); {src['basin']} point(s) within "
        f"{BASIN_TOLERANCE * 100:g} % of it (η {src['basin_eta'][0]:g}–{src['basin_eta'][1]:g}"
        + (f", β {src['basin_beta'][0]:g}–{src['basin_beta'][1]:g})" if uses_beta else ")"),
        *surface_table(r.source_surface, src, uses_beta=uses_beta),
        *_size_table(r),
        _drift_line(r),
        *_worth_lines(r),
        *_margin_lines(r),
        *_residual_lines(r),
    ]
    lines += [f"  failed: {item}" for item in r.failures]
    lines += [f"  WARNING: {w}" for w in r.warnings]
    return "\n".join(lines)


def _worth_lines(r: TransferReport) -> list[str]:
    """A row per size: the worth of the transfer there and the flatness of its optimum."""
    worth = {int(w["size"]): w for w in r.worth.to_dict("records")}
    header = [r.axis, "excess", "gain", "pays", "η below", "η above", "β below", "β above"]
    rows = [header]
    for f in r.flatness.to_dict("records"):
        w = worth.get(int(f["size"]))
        pays = "" if w is None else "—" if pd.isna(w["pays"]) else "yes" if w["pays"] else "no"
        rows.append([str(f["size"]), "" if w is None else _number(w["excess"]), "" if w is None else
                     _number(w["gain"]), pays,
                     *(_number(f[c], "x") for c in ("eta_below", "eta_above", "beta_below", "beta_above"))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return [f"  worth and flatness by {r.axis} (excess: the loss at the source's optimum over the size's best, − 1; "
            f"gain: the previous size's best over this one's, − 1; pays where the excess is at most "
            f"{WORTH_FACTOR:g} of the gain; flatness: the loss one grid step from the optimum over its own):",
            *("    " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)]


def _margin_lines(r: TransferReport) -> list[str]:
    m = r.stability_margin
    if m is None:
        return []
    edge = ", ".join(f"{'η' if rate == 'eta' else 'β'} ≈ {m[f'{rate}_edge']:.3g}" for rate in ("eta", "beta")
                     if m[f"{rate}_edge"] is not None)
    verdict = ("the recommendation lies at least a grid step inside it" if m["inside"] else
               "the recommendation was moved inside it (see the warning)" if m["eta"] is not None else
               "no source point lies a grid step inside it")
    return [f"  stability margin: the stability edge extrapolated to {r.axis} {r.target} is {edge}; {verdict}"]


def _residual_lines(r: TransferReport) -> list[str]:
    source, target = r.inference_residual["source"], r.inference_residual["target"]
    if source is None and target is None:
        return []
    at_target = "" if target is None else f", {target:.3g} at the transferred point at {r.axis} {r.target}"
    at_source = "not measured" if source is None else f"{source:.3g}"
    return [f"  inference residual (‖∇F(z_T)‖ / ‖∇F(z_0)‖ after the T inference steps; 0 at equilibrium, 1 where "
            f"inference did not move): {at_source} at the source's optimum{at_target}"]


def _number(value, unit: str = "") -> str:
    if value is None or pd.isna(value):
        return "–"
    return "∞" if math.isinf(value) else f"{value:.3g}{unit}"


def transfer_markdown(r: TransferReport) -> str:
    """The report for a notebook: the verdict, the recommendation and a table of the optima by size."""
    header, *rows = _size_rows(r)
    lines = [f"**{_heading(r)}**", "", _verdict(r), ""]
    lines += [f"*{line}*" for line in _patch_line(r)] + ([""] if r.target_patch else [])
    lines += [f"recommended {_recommendation(r)}; refined between grid points: {_refined(r)}", ""]
    lines += ["| " + " | ".join(row) + " |" for row in (header, ["---"] * len(header), *rows)]
    lines += ["", *(f"- warning: {w}" for w in r.warnings)] if r.warnings else []
    return "\n".join(lines)


def _heading(r: TransferReport) -> str:
    f, fixed = r.family, other_axis(r.axis)
    where = f"{f['sweep']}: " if "sweep" in f else ""
    steps = f", T = {f['inference_steps']}" if "inference_steps" in f else ""
    return (f"{where}{f['dataset']} {f['activation']} {f['param']} {f['algorithm']}, {fixed} {f[fixed]}{steps}: "
            f"{r.axis} {r.source} -> {r.target}")


def _holds(r: TransferReport) -> str:
    return "transfer holds" if r.transfer_holds else "transfer does NOT hold"


def _verdict(r: TransferReport) -> str:
    if not r.target_swept:
        return f"verdict: {r.axis} {r.target} was not swept, so there is no zero-shot regret to report"
    if r.regret is None:
        regret = "the source's optimum failed there (diverged or stopped)"
    else:
        regret = f"zero-shot regret {r.regret:.3f}"
        if r.regret_interval is not None:
            lo, hi = r.regret_interval
            regret += f" ({REGRET_LEVEL * 100:g} % seed-bootstrap interval {_ratio(lo)}–{_ratio(hi)})"
        else:
            regret += " (one seed: no interval)"
    return (f"verdict at {r.axis} {r.target}: {regret}: {_holds(r)} (it holds where the regret is at most "
            f"{REGRET_OK:g}); optima {'coincide' if r.optima_coincide else 'differ'}")


def _verdict_notes(r: TransferReport) -> list[str]:
    if not r.target_swept:
        return []
    lines = ["    zero-shot regret: the target's loss at the source's grid optimum over its best loss"]
    if r.basis == "extrapolated drift":
        extrapolated = (f"{r.extrapolated_regret:.3f}" if r.extrapolated_regret is not None
                        else "failed (the nearest grid point diverged or stopped)")
        lines.append(f"    extrapolated regret (at the recommendation below): {extrapolated}")
    return lines


def _patch_line(r: TransferReport) -> list[str]:
    """The target's patch, where its best is over a patch of the grid: its size, ranges and where
    it lies around the source's optimum."""
    p = r.target_patch
    if p is None:
        return []
    n_grid = p["n_eta"] * (p["n_beta"] or 1)
    size = f"{p['n_eta']} × {p['n_beta']}" if p["beta"] is not None else f"{p['n_eta']}"
    measured = f" ({p['n_points']} of them measured)" if p["n_points"] < n_grid else ""
    ranges = f"η {p['eta'][0]:g}–{p['eta'][1]:g}"
    ranges += f", β {p['beta'][0]:g}–{p['beta'][1]:g}" if p["beta"] else ""
    steps = f"{_steps(p['eta_steps'])} grid steps in η" + (f", {_steps(p['beta_steps'])} in β" if p["beta"] else "")
    return [f"target's best is over its patch: {size} grid points{measured}, {ranges} "
            f"(from the source optimum: {steps})"]


def _steps(span: tuple[int, int]) -> str:
    return "…".join(f"{v:+d}".replace("-", "−") for v in span)


def _recommendation(r: TransferReport) -> str:
    beta = f", β = {r.recommended_beta:.3g}" if r.recommended_beta is not None else ""
    basis = r.basis if r.drift is None or not r.drift["drifts"] else (
        f"{r.basis} over {r.axis} {sizes_text(r.drift_sizes)}")
    return f"η = {r.recommended_eta:.3g}{beta}   ({basis})"


def _refined(r: TransferReport) -> str:
    src = r.source_optimum
    clipped = " (the fit's minimum lies beyond its 3 × 3 window: clipped to the window's edge)" if src[
        "refined_clipped"] else ""
    return (f"η ≈ {src['refined_eta']:.3g}" + (f", β ≈ {src['refined_beta']:.3g}" if r.recommended_beta is not None
                                               else "") + clipped)


def _drift_line(r: TransferReport) -> str:
    if r.drift is None:
        return (f"  no extrapolation: {len(r.drift_sizes)} swept size(s) below {r.axis} {r.target} "
                f"({sizes_text(r.drift_sizes)}); a drift fit needs 3")
    of_beta = f", {signed(r.drift['log_beta_slope'])} of β" if r.recommended_beta is not None else ""
    return (f"  drift per doubling over {r.axis} {sizes_text(r.drift_sizes)} (the sizes below the target): "
            f"{signed(r.drift['log_eta_slope'])} decades of η{of_beta} "
            f"({'drifts' if r.drift['drifts'] else 'stable'})")


def _size_rows(r: TransferReport) -> list[list[str]]:
    """A header and a row per swept size: grid optimum, its loss, the bootstrap's three most probable
    optima, the stability edge (≥: the largest rate measured on its line, so the real edge lies
    beyond) and the points measured (a patch of the grid, extension points)."""
    uses_beta = r.recommended_beta is not None
    edges = {e["size"]: e for e in r.stability_edge.to_dict("records")}
    rows = [[r.axis, "grid optimum", "min loss", "P(optimum), top three", "stability edge", "points"]]
    for o in r.optima.to_dict("records"):
        if r.optimum_probability is None:
            top = "one seed: none"
        else:
            mine = r.optimum_probability[r.optimum_probability["size"] == o["size"]].head(3)
            top = ", ".join(f"{_rates(p['eta'], p['beta'] if uses_beta else None)} {p['probability']:.2f}"
                            for p in mine.to_dict("records"))
        e = edges[o["size"]]
        edge = f"η {_edge(e['eta'], e['eta_beyond_measured'])}" + (
            f", β {_edge(e['beta'], e['beta_beyond_measured'])}" if uses_beta else "")
        notes = [note for note, shown in (("patch", o["patch"]), (f"{o['n_extension']} extension", o["n_extension"]))
                 if shown]
        points = f"{o['n_points']}" + (f" ({', '.join(notes)})" if notes else "")
        rows.append([str(o["size"]), _rates(o["eta"], o["beta"] if uses_beta else None), f"{o['loss']:.4g}", top,
                     edge, points])
    return rows


def _size_table(r: TransferReport) -> list[str]:
    """`_size_rows` as aligned text, and how far the stability edge moves."""
    uses_beta, rows = r.recommended_beta is not None, _size_rows(r)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  by " + r.axis + " (P: seed bootstrap; stability edge: the largest rate with every seed ok at the "
             "optimum's other rate, ≥ where that is the largest measured; points: measured at that size):"]
    lines += ["    " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    d = r.stability_drift
    if d is not None:
        rates = (("η", "eta_decades"), ("β", "beta_decades")) if uses_beta else (("η", "eta_decades"),)
        moved = ", ".join(f"{rate} {d[key]:.2f} decades" if d[key] is not None else
                          f"{rate} unknown (its edge was cut short by a patch at all but one {r.axis})"
                          for rate, key in rates)
        lines.append(f"  stability edge across {r.axis}: moves {moved} ({'drifts' if d['drifts'] else 'stable'})")
    return lines


def surface_table(points: pd.DataFrame, best: dict, *, uses_beta: bool) -> list[str]:
    """The seed-mean min loss at the source as text: a row per η, a column per β; * the optimum,
    ✕ a point where a seed diverged or stopped, + a point beyond the spec's grid (grid.extend)."""
    etas = sorted(points["eta"].unique(), reverse=True)
    betas = sorted(points["beta"].unique(), reverse=True) if uses_beta else [None]
    at = {(p["eta"], beta_of(p["beta"])): p for p in points.to_dict("records")}

    def cell(eta: float, beta: float | None) -> str:
        point = at.get((eta, beta))
        if point is None:
            return ""
        if not point["valid"]:
            return "✕"
        mark = ("*" if (eta, beta) == (best["eta"], best["beta"]) else "") + ("+" if point["extension"] else "")
        return f"{mark}{point['loss_mean']:.3g}"

    header = "η \\ β" if uses_beta else "η"
    rows = [[header, *(f"{b:g}" for b in betas)] if uses_beta else [header, "min loss"]]
    rows += [[f"{eta:g}", *(cell(eta, beta) for beta in betas)] for eta in etas]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    extension = ", + beyond the spec's grid (grid.extend)" if points["extension"].any() else ""
    title = f"  seed-mean min train loss at the source (* optimum, ✕ a seed diverged or stopped{extension}):"
    return [title, *("    " + "  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows)]


def _edge(value: float, beyond_measured: bool) -> str:
    return f"≥ {value:g}" if beyond_measured else f"{value:g}"


def _ratio(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "∞ (the point failed in some resamples)"


def _rates(eta: float, beta: float | None) -> str:
    return f"(η {eta:g}, β {beta:g})" if beta is not None else f"(η {eta:g})"
