"""Command line: the only place that prints errors and chooses exit codes (2 for bad input)."""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Hyperparameter-transfer sweeps for μPC predictive-coding networks.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets: find, verify and cache MNIST and Fashion-MNIST.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        from .records import code_version

        typer.echo(f"mupc-sweep {code_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option(
        "--version", help="print the version and exit", callback=_print_version, is_eager=True)] = False,
) -> None:
    """Hyperparameter-transfer sweeps for μPC predictive-coding networks."""


def fail(message: str) -> typer.Exit:
    """Print `Error: message` on stderr; the caller raises the returned exit (status 2)."""
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


class ProgressBar:
    """A one-line progress bar with ETA on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, width: int = 30) -> None:
        self.label, self.width, self.start = label, width, time.perf_counter()
        self.live = sys.stderr.isatty()

    def __call__(self, fraction: float) -> None:
        if not self.live or fraction <= 0:
            return
        fraction = min(fraction, 1.0)
        elapsed = time.perf_counter() - self.start
        eta = elapsed * (1 - fraction) / fraction
        filled = int(self.width * fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {100 * fraction:3.0f}%  ETA {_duration(eta)}  ")
        sys.stderr.flush()

    def close_line(self) -> None:
        """Clear the bar's line so that a report can be printed in its place."""
        if self.live:
            sys.stderr.write("\r\033[K")

    def close(self) -> None:
        if self.live:
            sys.stderr.write("\n")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="mnist or fashion_mnist")] = "mnist",
    width: Annotated[int, typer.Option(help="N, units per hidden layer")] = 64,
    depth: Annotated[int, typer.Option(help="H, hidden layers")] = 8,
    activation: Annotated[str, typer.Option(help="linear, tanh or relu")] = "tanh",
    param: Annotated[str, typer.Option(help="mupc or sp")] = "mupc",
    algorithm: Annotated[str, typer.Option(help="pc or bp")] = "pc",
    inference_steps: Annotated[int | None, typer.Option(help="T (default: depth)")] = None,
    batch_size: Annotated[int, typer.Option()] = 64,
    epochs: Annotated[float, typer.Option()] = 0.5,
    eval_every: Annotated[int, typer.Option(help="steps between test evaluations")] = 300,
    eta: Annotated[list[float], typer.Option(help="weight learning rate η (repeat for a grid)")] = [0.5, 0.1, 0.05, 0.01],
    beta: Annotated[list[float], typer.Option(help="activity learning rate β (repeat for a grid)")] = [10.0, 1.0, 0.5, 0.1, 0.01],
    seed: Annotated[list[int], typer.Option(help="seed (repeat for several)")] = [0],
    data_dir: Annotated[Path | None, typer.Option(help="directory with the four IDX files")] = None,
    chunk: Annotated[int | None, typer.Option(help="points vmapped together (default: by device)")] = None,
) -> None:
    """Train one cell: every (seed, η, β) point of a grid at once, then print a row per point.

    Example: mupc-sweep train --width 128 --depth 16 --activation relu --eta 0.1 --beta 1 --beta 0.5
    """
    import numpy as np

    from .data import DatasetError, load_dataset
    from .records import cell_records
    from .train import CellConfig, check_chunk, check_grid, check_seeds, check_steps, train_cell, xla_flags

    os.environ["XLA_FLAGS"] = xla_flags(os.environ)  # before JAX opens a device
    try:
        cfg = CellConfig(
            width=width, depth=depth, activation=activation, param=param, algorithm=algorithm,
            inference_steps=inference_steps, batch_size=batch_size, epochs=epochs, eval_every=eval_every,
        )
        betas = beta if algorithm == "pc" else [float("nan")]
        for option, values in (("--seed", seed), ("--eta", eta), ("--beta", beta)):
            if len(set(values)) != len(values):
                raise ValueError(f"{option} repeats a value ({', '.join(map(str, values))}); give each once.")
        check_grid(cfg, eta, betas)
        check_seeds(np.asarray(seed))
        check_chunk(chunk)
        seeds, etas, betas = zip(*itertools.product(seed, eta, betas))
        data = load_dataset(dataset, data_dir)
        check_steps(cfg, len(data.x_train))
        n_steps = cfg.n_steps(len(data.x_train))
        typer.echo(
            f"{dataset}: N={width} H={depth} T={cfg.steps} {activation} {param} {algorithm}, "
            f"{len(seeds)} points x {n_steps} steps (compiling, then training)...",
            err=True,
        )
        bar = ProgressBar("training")
        result = train_cell(
            cfg, data.x_train, data.y_train, data.x_test, data.y_test, seeds, etas, betas, chunk=chunk, progress=bar
        )
        bar.close()
    except (ValueError, DatasetError) as error:
        raise fail(str(error)) from None
    table = cell_records(result, dataset).sort_values("min_train_loss", na_position="last")
    columns = ["seed", "eta", "beta", "min_train_loss", "final_train_loss", "step_of_min", "steps_run", "status",
               "test_acc_final", "test_acc_max"]
    typer.echo(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    typer.echo(f"\n{_best_text(table)}   ({result.wall_s:.1f} s on {result.device})")


@data_app.command("fetch")
def data_fetch(
    names: Annotated[list[str] | None, typer.Argument(help="datasets (default: mnist fashion_mnist)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="read from this directory instead of the usual sources")] = None,
) -> None:
    """Find each dataset through the source chain, verify its checksums and cache it.

    Example: mupc-sweep data fetch mnist
    """
    from .data import DATASETS, DatasetError, cache_dir, load_raw

    names = names or list(DATASETS)
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        raise fail(f"dataset must be one of {', '.join(DATASETS)}; got {', '.join(map(repr, unknown))}.")
    for name in names:
        try:
            load_raw(name, data_dir)
        except (ValueError, DatasetError) as error:
            raise fail(str(error)) from None
        typer.echo(f"{name}: verified ({data_dir or cache_dir() / name})")


@app.command()
def run(
    spec_file: Annotated[Path, typer.Argument(help="sweep spec (YAML)", metavar="SPEC")],
    out: Annotated[Path, typer.Option(help="results directory")] = Path("results"),
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join (host:port of its head, or auto; default $RAY_ADDRESS, else Ray embedded here)")] = None,
    cpus_per_cell: Annotated[float | None, typer.Option(help="override resources.cpu of the spec")] = None,
    gpus_per_cell: Annotated[float | None, typer.Option(help="override resources.gpu of the spec (fractions share a GPU)")] = None,
    dry_run: Annotated[bool, typer.Option(help="list the cells, points and estimated FLOPs; train nothing")] = False,
    restart: Annotated[bool, typer.Option(help="delete this sweep's earlier records and start over")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="directory with the four IDX files")] = None,
) -> None:
    """Train every cell of a sweep that has no records yet, one Ray Tune trial per cell.

    Each finished cell is written at once, so an interrupted sweep resumes where it stopped.

    Example: mupc-sweep run sweeps/quick.yaml
    """
    from .data import DatasetError, load_dataset
    from .runner import N_TRAIN, check_resumable, pending, plan, prepare
    from .spec import load_spec, with_resources
    from .sweep import ClusterError, check_fits, connect, disconnect, resolve_address, run_trials
    from .train import check_steps

    try:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file, not a results directory.")
        spec = with_resources(load_spec(spec_file), cpu=cpus_per_cell, gpu=gpus_per_cell)
        check_resumable(spec, out, restart=restart)
        table = plan(spec)
        for cell in spec.cells():
            check_steps(cell.config, N_TRAIN)
        if dry_run:
            typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
            typer.echo(f"\n{len(table)} cells, {table.points.sum()} points, {table.tflops.sum():.3g} TFLOP "
                       "(matrix products of training and evaluation)")
            return
        data = load_dataset(spec.dataset, data_dir)
        for cell in spec.cells():
            check_steps(cell.config, len(data.x_train))
    except (ValueError, DatasetError) as error:
        raise fail(str(error)) from None
    cost = dict(zip(table.cell_id, table.tflops))
    todo = sorted(pending(spec, out) if not restart else spec.cells(), key=lambda c: -cost[c.cell_id])
    # longest first, so that no trial slot sits idle while one long cell finishes last
    if not todo:
        prepare(spec, out, restart=False)
        typer.echo(f"{spec.name}: all {len(table)} cells done -> {out / spec.name}", err=True)
        return
    try:
        cluster = connect(address)
        warning = check_fits(spec, strict=resolve_address(address) is None)
    except ClusterError as error:
        disconnect()
        raise fail(str(error)) from None
    try:
        try:
            prepare(spec, out, restart=restart)
        except OSError as error:
            raise fail(f"cannot write the results under {out}: {error}.") from None
        typer.echo(f"{spec.name}: {len(table)} cells, {len(table) - len(todo)} done, {len(todo)} to train "
                   f"-> {out / spec.name}\n{cluster}; {spec.cpu:g} CPU, {spec.gpu:g} GPU per cell", err=True)
        if warning:
            typer.echo(f"Warning: {warning}", err=True)
        bar = ProgressBar("sweep")
        failures = run_trials(spec, data, out, todo, _sweep_events(cost, todo, bar))
        bar.close()
    finally:
        disconnect()
    left = pending(spec, out)
    if left:
        failed = f" ({len(failures)} failed, noted in {out / spec.name / 'failed'})" if failures else ""
        typer.echo(f"{len(left)} of {len(table)} cells are not done{failed}; run the same command again to "
                   "train them.", err=True)
        raise typer.Exit(code=1)


def _sweep_events(cost: dict[str, float], todo, bar: ProgressBar):
    """Progress on `bar` weighted by each cell's cost, and a line per finished, retried or failed cell."""
    from .sweep import SweepEvents

    total = sum(cost[c.cell_id] for c in todo)
    running: dict[str, float] = {}
    finished = [0.0]

    def progress(cell_id: str, fraction: float) -> None:
        running[cell_id] = fraction * cost[cell_id]
        bar((finished[0] + sum(running.values())) / total)

    def line(text: str) -> None:
        bar.close_line()
        typer.echo(text)
        bar((finished[0] + sum(running.values())) / total)

    def done(cell_id: str, records) -> None:
        running.pop(cell_id, None)
        finished[0] += cost[cell_id]
        line(f"{cell_id}: {_best_text(records)}  ({records.wall_s.iloc[0]:.1f} s on {records.device.iloc[0]})")

    def retry(cell_id: str, error: str) -> None:
        running.pop(cell_id, None)
        line(f"{cell_id}: retrying after a failure: {error}")

    def failed(cell_id: str, error: str) -> None:
        running.pop(cell_id, None)
        finished[0] += cost[cell_id]
        line(f"{cell_id}: FAILED: {error}")

    return SweepEvents(progress=progress, done=done, retry=retry, failed=failed)


def _best_text(records) -> str:
    from .analysis import optimum, surfaces

    best = optimum(surfaces(records), 0)
    if best is None:
        return "no valid point (every point diverged or stopped)"
    beta = f" β={best.beta:g}" if records.algorithm.iloc[0] == "pc" else ""
    return f"best η={best.eta:g}{beta} min loss {best.loss:.4g} ({best.n_valid}/{best.n_points} points ok)"


@app.command()
def status(results: Annotated[Path, typer.Argument(help="results directory")] = Path("results")) -> None:
    """Each sweep under RESULTS: cells done and pending, and the best point of every finished cell.

    Example: mupc-sweep status results
    """
    import pandas as pd

    from .runner import kept_spec, pending, spec_path
    from .store import read_failure, records_dir, sweeps

    kept = [p.parent.name for p in Path(results).glob("*/spec.yaml")] if Path(results).is_dir() else []
    names = sorted(set(kept) | set(sweeps(results)))
    if not names:
        raise fail(f"no sweeps under {results}: run one with `mupc-sweep run SPEC`.")
    for name in names:
        if not spec_path(results, name).is_file():
            typer.echo(f"{name}: records but no spec.yaml (restore it, or run its spec again with --restart)")
            continue
        try:
            spec, spec_hash = kept_spec(results, name)
        except ValueError as error:
            typer.echo(f"{name}: unreadable spec.yaml ({error})")
            continue
        cells, todo = spec.cells(), pending(spec, results)
        typer.echo(f"{name} (spec {spec_hash}): {len(cells) - len(todo)}/{len(cells)} cells done, {len(todo)} pending")
        for cell in cells:
            file = records_dir(results, name) / f"{cell.cell_id}.parquet"
            if cell not in todo:
                line = _best_text(pd.read_parquet(file))
            elif file.exists():
                line = "records file damaged, incomplete or not this tool's (a rerun retrains it)"
            elif error := read_failure(results, name, cell.cell_id):
                line = f"failed: {error} (a rerun retries it)"
            else:
                line = "pending"
            typer.echo(f"  {cell.cell_id}: {line}")


@app.command()
def plot(
    results: Annotated[Path, typer.Argument(help="results directory")] = Path("results"),
    axis: Annotated[str | None, typer.Option(help="depth or width (default: the one the sweep varies most)")] = None,
    sweep: Annotated[str | None, typer.Option(help="only this sweep")] = None,
) -> None:
    """Draw transfer contours (Fig. 5), loss-against-rate and test-accuracy curves (Fig. 1).

    The PNGs go to RESULTS/<sweep>/plots/; accuracy curves where evaluations were kept.

    Example: mupc-sweep plot results --sweep paper-depth
    """
    from .analysis import AXES, families, other_axis, surfaces
    from .plots import accuracy_figure, contour_figure, transfer_figure
    from .store import ResultsError, read_curves, read_records, sweeps

    try:
        if axis is not None and axis not in AXES:
            raise ValueError(f"axis must be one of {', '.join(AXES)}; got {axis!r}.")
        names = [sweep] if sweep else sweeps(results)
        if not names:
            raise ResultsError(f"no records under {results}: run a sweep first (results/<sweep>/records/*.parquet).")
        figures = {}
        for name in names:
            surf, curves = surfaces(read_records(results, name)), read_curves(results, name)
            along = axis or max(AXES, key=lambda a: surf[a].nunique())
            fixed = other_axis(along)
            for key, family in families(surf, along):
                steps = f"_T{key['inference_steps']}" if "inference_steps" in key else ""
                stem = (f"{key['dataset']}_{key['activation']}_{key['param']}_{key['algorithm']}"
                        f"_{'N' if along == 'depth' else 'H'}{key[fixed]}{steps}_by_{along}")
                plots = Path(results) / name / "plots"
                if (family["beta"] > 0).any():
                    figures[plots / f"contours_{stem}.png"] = contour_figure(family, along)
                figures[plots / f"transfer_{stem}.png"] = transfer_figure(family, along)
                if curves is not None and (accuracy := accuracy_figure(family, curves, along)) is not None:
                    figures[plots / f"accuracy_{stem}.png"] = accuracy
    except (ValueError, ResultsError) as error:
        raise fail(str(error)) from None
    for path, figure in figures.items():
        _save(figure, path)
        typer.echo(str(path))


def _save(figure, path: Path) -> None:
    """Write a PNG whole or not at all."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(figure)
    tmp.replace(path)


def _surface_table(points: list[dict], best: dict, *, uses_beta: bool) -> list[str]:
    """The seed-mean min loss at the source as text: a row per η, a column per β; * the optimum,
    ✕ a point where a seed diverged or stopped."""
    etas = sorted({p["eta"] for p in points}, reverse=True)
    betas = sorted({p["beta"] for p in points}, reverse=True) if uses_beta else [0.0]
    at = {(p["eta"], p["beta"]): p for p in points}

    def cell(eta: float, beta: float) -> str:
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


@app.command()
def transfer(
    source: Annotated[int, typer.Option("--from", help="size the sweep tuned (e.g. depth 8)")],
    target: Annotated[int, typer.Option("--to", help="size to recommend rates for (e.g. depth 128)")],
    axis: Annotated[str, typer.Option(help="depth or width")] = "depth",
    results: Annotated[Path, typer.Option(help="results directory")] = Path("results"),
    sweep: Annotated[str | None, typer.Option(help="only this sweep")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Recommend (η, β) for a larger model from a smaller one's sweep, with the evidence.

    Example: mupc-sweep transfer --from 8 --to 128 --axis depth
    """
    import json

    from .analysis import transfer as recommend
    from .store import ResultsError, read_records

    try:
        if source <= 0 or target <= 0:
            raise ValueError(f"sizes must be positive; got --from {source} --to {target}.")
        if source >= target:
            raise ValueError(f"--from ({source}) must be smaller than --to ({target}): rates transfer from a small "
                             "model to a larger one.")
        reports = recommend(read_records(results, sweep), source=source, target=target, axis=axis)
    except (ValueError, ResultsError) as error:
        raise fail(str(error)) from None
    if as_json:
        report = {"axis": axis, "from": source, "to": target, "families": [r.to_dict() for r in reports]}
        typer.echo(json.dumps(_finite_or_null(report), allow_nan=False))
        return
    for report in reports:
        typer.echo(_transfer_text(report))


def _finite_or_null(value):
    """`value` with every non-finite float (NaN, ±inf) replaced by None, so the JSON is strict."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    return value


def _transfer_text(r) -> str:
    from .analysis import other_axis, signed

    f, src = r.family, r.source_optimum
    beta = f", β = {r.recommended_beta:.3g}" if r.recommended_beta is not None else ""
    grid_beta = f", β = {src['beta']:g}" if r.recommended_beta is not None else ""
    fixed = other_axis(r.axis)
    where = f"{f['sweep']}: " if "sweep" in f else ""
    steps = f", T = {f['inference_steps']}" if "inference_steps" in f else ""
    lines = [
        f"{where}{f['dataset']} {f['activation']} {f['param']} {f['algorithm']}, {fixed} {f[fixed]}{steps}: "
        f"{r.axis} {r.source} -> {r.target}",
        f"  recommended   η = {r.recommended_eta:.3g}{beta}   ({r.basis})",
        f"  refined between grid points: η ≈ {src['refined_eta']:.3g}"
        + (f", β ≈ {src['refined_beta']:.3g}" if r.recommended_beta is not None else ""),
        f"  at {r.axis} {r.source}: grid optimum η = {src['eta']:g}{grid_beta}, min loss {src['loss']:.4g} "
        f"± {src['loss_std']:.2g} over {src['n_seeds']} seed(s); {src['basin']} point(s) within 10 % of it "
        f"(η {src['basin_eta'][0]:g}–{src['basin_eta'][1]:g}, β {src['basin_beta'][0]:g}–{src['basin_beta'][1]:g})",
        *_surface_table(r.source_surface, src, uses_beta=r.recommended_beta is not None),
        "  optimum by " + r.axis + ": " + ", ".join(f"{o['size']}: (η {o['eta']:g}, β {o['beta']:g})" for o in r.optima),
    ]
    if r.drift is not None:
        lines.append(f"  drift per doubling: {signed(r.drift['log_eta_slope'])} decades of η, "
                     f"{signed(r.drift['log_beta_slope'])} of β ({'drifts' if r.drift['drifts'] else 'stable'})")
    if r.target_swept:
        verdict = "transfer holds" if r.transfer_holds else "transfer does NOT hold"
        regret = f"regret {r.regret:.3f}" if r.regret is not None else "the recommended point failed there"
        lines.append(f"  at {r.axis} {r.target}: {regret} (loss at the recommendation / best), "
                     f"optima {'coincide' if r.optima_coincide else 'differ'}: {verdict}")
    else:
        lines.append(f"  {r.axis} {r.target} was not swept: no regret to report")
    lines += [f"  incomplete: {item}" for item in r.incomplete]
    lines += [f"  WARNING: {w}" for w in r.warnings]
    return "\n".join(lines)
