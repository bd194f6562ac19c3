"""The `mupc-sweep` command: one function per command. The only place that prints errors and
chooses exit codes: any `errors.Error` is one line on stderr and exit status 2."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from .cell import CellConfig
from .errors import Error

app = typer.Typer(help="Hyperparameter-transfer sweeps for μPC predictive-coding networks.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets: find, verify and cache MNIST and Fashion-MNIST.", no_args_is_help=True)
app.add_typer(data_app, name="data")

Results = Annotated[Path, typer.Option("--results", help="results directory")]
DataDir = Annotated[Path | None, typer.Option(help="directory with the four IDX files")]


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


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="mnist or fashion_mnist")] = "mnist",
    width: Annotated[int, typer.Option(help="N, units per hidden layer")] = 64,
    depth: Annotated[int, typer.Option(help="H, hidden layers")] = 8,
    activation: Annotated[str, typer.Option(help="linear, tanh or relu")] = CellConfig.activation,
    param: Annotated[str, typer.Option(help="mupc or sp")] = CellConfig.param,
    algorithm: Annotated[str, typer.Option(help="pc or bp")] = CellConfig.algorithm,
    inference_steps: Annotated[int | None, typer.Option(help="T (default: depth)")] = CellConfig.inference_steps,
    batch_size: Annotated[int, typer.Option()] = CellConfig.batch_size,
    epochs: Annotated[float, typer.Option()] = CellConfig.epochs,
    eval_every: Annotated[int, typer.Option(help="steps between test evaluations")] = CellConfig.eval_every,
    eta: Annotated[list[float], typer.Option(help="weight learning rate η (repeat for a grid)")] = [0.5, 0.1, 0.05, 0.01],
    beta: Annotated[list[float], typer.Option(help="activity learning rate β (repeat for a grid)")] = [10.0, 1.0, 0.5, 0.1, 0.01],
    seed: Annotated[list[int], typer.Option(help="seed (repeat for several)")] = [0],
    data_dir: DataDir = None,
    chunk: Annotated[int | None, typer.Option(help="points vmapped together (default: by device)")] = None,
) -> None:
    """Train one cell: every (seed, η, β) point of a grid at once, then print a row per point.

    Example: mupc-sweep train --width 128 --depth 16 --activation relu --eta 0.1 --beta 1 --beta 0.5
    """
    from .checks import check_distinct, check_int
    from .console import ProgressBar
    from .data import load_dataset
    from .device import xla_flags
    from .records import cell_records
    from .report import best_text
    from .train import train_cell

    os.environ["XLA_FLAGS"] = xla_flags(os.environ)  # before JAX opens a device
    try:
        cfg = CellConfig(
            width=width, depth=depth, activation=activation, param=param, algorithm=algorithm,
            inference_steps=inference_steps, batch_size=batch_size, epochs=epochs, eval_every=eval_every,
        )
        for option, values in (("--seed", seed), ("--eta", eta), ("--beta", beta)):
            check_distinct(option, values)
        betas = beta if algorithm == "pc" else [float("nan")]
        seeds, etas, betas = zip(*itertools.product(seed, eta, betas))
        cfg.check_points(seeds, etas, betas)
        if chunk is not None:
            check_int("chunk", chunk, minimum=1)
        data = load_dataset(dataset, data_dir)
        cfg.check_steps(len(data.x_train))
        typer.echo(
            f"{dataset}: N={width} H={depth} T={cfg.steps} {activation} {param} {algorithm}, "
            f"{len(seeds)} points x {cfg.n_steps(len(data.x_train))} steps (compiling, then training)...",
            err=True,
        )
        bar = ProgressBar("training")
        result = train_cell(
            cfg, data.x_train, data.y_train, data.x_test, data.y_test, seeds, etas, betas, chunk=chunk, progress=bar
        )
        bar.close()
    except Error as error:
        raise fail(str(error)) from None
    table = cell_records(result, dataset).sort_values("min_train_loss", na_position="last")
    columns = ["seed", "eta", "beta", "min_train_loss", "final_train_loss", "step_of_min", "steps_run", "status",
               "test_acc_final", "test_acc_max"]
    typer.echo(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    typer.echo(f"\n{best_text(table)}   ({result.wall_s:.1f} s on {result.device})")


@data_app.command("fetch")
def data_fetch(
    names: Annotated[list[str] | None, typer.Argument(help="datasets (default: mnist fashion_mnist)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="read from this directory instead of the usual sources")] = None,
) -> None:
    """Find each dataset through the source chain, verify its checksums and cache it.

    Example: mupc-sweep data fetch mnist
    """
    from .checks import check_choice
    from .data import DATASETS, cache_dir, load_raw

    names = names or list(DATASETS)
    try:
        for name in names:
            check_choice("dataset", name, DATASETS)  # every name before any fetch
        for name in names:
            load_raw(name, data_dir)
            typer.echo(f"{name}: verified ({data_dir or cache_dir() / name})")
    except Error as error:
        raise fail(str(error)) from None


@app.command()
def run(
    spec_file: Annotated[Path, typer.Argument(help="sweep spec (YAML)", metavar="SPEC")],
    results: Results = Path("results"),
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join (host:port of its head, or auto; default $RAY_ADDRESS, else Ray embedded here)")] = None,
    cpus_per_cell: Annotated[float | None, typer.Option(help="override resources.cpu of the spec")] = None,
    gpus_per_cell: Annotated[float | None, typer.Option(help="override resources.gpu of the spec (fractions share a GPU)")] = None,
    dry_run: Annotated[bool, typer.Option(help="list the cells, points and estimated FLOPs; train nothing")] = False,
    restart: Annotated[bool, typer.Option(help="delete this sweep's earlier records and start over")] = False,
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option("--out", hidden=True, help="old name of --results")] = None,
) -> None:
    """Train every cell of a sweep that has no records yet, one Ray Tune trial per cell.

    Each finished cell is written at once, so an interrupted sweep resumes where it stopped.

    Example: mupc-sweep run sweeps/quick.yaml --results results
    """
    from .console import ProgressBar, SweepProgress
    from .data import load_dataset
    from .errors import InputError
    from .runner import N_TRAIN, check_resumable, pending, plan, prepare
    from .spec import load_spec, with_resources
    from .sweep import SweepEvents, check_fits, connect, disconnect, resolve_address, run_trials

    results = out if out is not None else results
    try:
        if results.exists() and not results.is_dir():
            raise InputError(f"--results: {results} is a file, not a results directory.")
        spec = with_resources(load_spec(spec_file), cpu=cpus_per_cell, gpu=gpus_per_cell)
        check_resumable(spec, results, restart=restart)
        table = plan(spec)
        for cell in spec.cells():
            cell.check_steps(N_TRAIN)
        if dry_run:
            typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
            typer.echo(f"\n{len(table)} cells, {table.points.sum()} points, {table.tflops.sum():.3g} TFLOP "
                       "(matrix products of training and evaluation)")
            return
        data = load_dataset(spec.dataset, data_dir)
        for cell in spec.cells():
            cell.check_steps(len(data.x_train))
    except Error as error:
        raise fail(str(error)) from None
    cost = dict(zip(table.cell_id, table.tflops))
    todo = sorted(pending(spec, results) if not restart else spec.cells(), key=lambda c: -cost[c.cell_id])
    # longest first, so that no trial slot sits idle while one long cell finishes last
    if not todo:
        prepare(spec, results, restart=False)
        typer.echo(f"{spec.name}: all {len(table)} cells done -> {results / spec.name}", err=True)
        return
    try:
        cluster = connect(address)
        warning = check_fits(spec, strict=resolve_address(address) is None)
    except Error as error:
        disconnect()
        raise fail(str(error)) from None
    try:
        try:
            prepare(spec, results, restart=restart)
        except OSError as error:
            raise fail(f"cannot write the results under {results}: {error}.") from None
        typer.echo(f"{spec.name}: {len(table)} cells, {len(table) - len(todo)} done, {len(todo)} to train "
                   f"-> {results / spec.name}\n{cluster}; {spec.cpu:g} CPU, {spec.gpu:g} GPU per cell", err=True)
        if warning:
            typer.echo(f"Warning: {warning}", err=True)
        bar = ProgressBar("sweep")
        shown = SweepProgress({c.cell_id: cost[c.cell_id] for c in todo}, bar, typer.echo)
        events = SweepEvents(progress=shown.progress, done=shown.done, retry=shown.retry, failed=shown.failed)
        failures = run_trials(spec, data, results, todo, events)
        bar.close()
    finally:
        disconnect()
    left = pending(spec, results)
    if left:
        failed = f" ({len(failures)} failed, noted in {results / spec.name / 'failed'})" if failures else ""
        typer.echo(f"{len(left)} of {len(table)} cells are not done{failed}; run the same command again to "
                   "train them.", err=True)
        raise typer.Exit(code=1)


@app.command()
def status(results: Results = Path("results")) -> None:
    """Each sweep under RESULTS: cells done and pending, and the best point of every finished cell.

    Example: mupc-sweep status --results results
    """
    import pandas as pd

    from .report import best_text
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
        except Error as error:
            typer.echo(f"{name}: unreadable spec.yaml ({error})")
            continue
        cells, todo = spec.cells(), pending(spec, results)
        typer.echo(f"{name} (spec {spec_hash}): {len(cells) - len(todo)}/{len(cells)} cells done, {len(todo)} pending")
        for cell in cells:
            file = records_dir(results, name) / f"{cell.cell_id}.parquet"
            if cell not in todo:
                line = best_text(pd.read_parquet(file))
            elif file.exists():
                line = "records file damaged, incomplete or not this tool's (a rerun retrains it)"
            elif error := read_failure(results, name, cell.cell_id):
                line = f"failed: {error} (a rerun retries it)"
            else:
                line = "pending"
            typer.echo(f"  {cell.cell_id}: {line}")


@app.command()
def plot(
    results: Results = Path("results"),
    axis: Annotated[str | None, typer.Option(help="depth or width (default: the one the sweep varies most)")] = None,
    sweep: Annotated[str | None, typer.Option(help="only this sweep")] = None,
) -> None:
    """Draw transfer contours (Fig. 5), loss-against-rate and test-accuracy curves (Fig. 1).

    The PNGs go to RESULTS/<sweep>/plots/; accuracy curves where evaluations were kept.

    Example: mupc-sweep plot --results results --sweep paper-depth
    """
    from .analysis import AXES, check_axis
    from .errors import ResultsError
    from .plots import figures, save_figure
    from .store import load_curves, load_records, sweeps

    try:
        if axis is not None:
            check_axis(axis)
        names = [sweep] if sweep else sweeps(results)
        if not names:
            raise ResultsError(f"no records under {results}: run a sweep first (results/<sweep>/records/*.parquet).")
        drawn = {}
        for name in names:
            records = load_records(results, name)
            along = axis or max(AXES, key=lambda a: records[a].nunique())
            for stem, figure in figures(records, axis=along, curves=load_curves(results, name)).items():
                drawn[Path(results) / name / "plots" / f"{stem}.png"] = figure
    except Error as error:
        raise fail(str(error)) from None
    for path, figure in drawn.items():
        typer.echo(str(save_figure(figure, path)))


@app.command()
def transfer(
    source: Annotated[int, typer.Option("--from", help="size the sweep tuned (e.g. depth 8)")],
    target: Annotated[int, typer.Option("--to", help="size to recommend rates for (e.g. depth 128)")],
    axis: Annotated[str, typer.Option(help="depth or width")] = "depth",
    results: Results = Path("results"),
    sweep: Annotated[str | None, typer.Option(help="only this sweep")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Recommend (η, β) for a larger model from a smaller one's sweep, with the zero-shot verdict.

    Example: mupc-sweep transfer --from 8 --to 128 --axis depth
    """
    from .analysis import transfer as recommend
    from .errors import InputError
    from .report import finite_or_null, transfer_text
    from .store import load_records

    try:
        if source <= 0 or target <= 0:
            raise InputError(f"--from, --to: sizes must be positive; got --from {source} --to {target}.")
        if source >= target:
            raise InputError(f"--from ({source}) must be smaller than --to ({target}): rates transfer from a small "
                             "model to a larger one.")
        reports = recommend(load_records(results, sweep), source=source, target=target, axis=axis)
    except Error as error:
        raise fail(str(error)) from None
    if as_json:
        report = {"axis": axis, "from": source, "to": target, "families": [r.to_dict() for r in reports]}
        typer.echo(json.dumps(finite_or_null(report), allow_nan=False))
        return
    for report in reports:
        typer.echo(transfer_text(report))
