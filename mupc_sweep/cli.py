"""The `mupc-sweep` command: one function per command. The only place that prints errors and
chooses exit codes: any `errors.Error` is one line on stderr and exit status 2."""

from __future__ import annotations

import itertools
import json
import os
import re
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


# The library's errors name its arguments; a command names its options. Argument -> option, where
# the words differ (`etas[0]` -> `--eta`); the rest is shared by every command.
COMMON_FLAGS = {"results": "--results", "restart=True": "--restart", "sweep": "--sweep", "axis": "--axis"}


def fail(error: Error | str, flags: dict[str, str] | None = None) -> typer.Exit:
    """Print `Error: message` on stderr, with the library's argument names (`flags` and
    `COMMON_FLAGS`) turned into this command's option names; the caller raises the returned exit
    (status 2)."""
    message = str(error)
    names = {**COMMON_FLAGS, **(flags or {})}
    where, colon, rest = message.partition(": ")
    argument = re.sub(r"\[\d+\]$", "", where)
    if colon and argument in names:
        message = f"{names[argument]}: {rest}"
    message = message.replace("restart=True", names["restart=True"])
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def _options(*names: str) -> dict[str, str]:
    """Arguments spelled as this command's options: `batch_size` -> `--batch-size`."""
    return {name: "--" + name.replace("_", "-") for name in names}


TRAIN_FLAGS = {**_options("dataset", "width", "depth", "activation", "param", "algorithm", "inference_steps",
                          "batch_size", "epochs", "eval_every", "chunk"),
               "etas": "--eta", "betas": "--beta", "seeds": "--seed"}


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
    eta: Annotated[list[float], typer.Option(
        help="weight learning rate η (repeat for a grid)")] = [0.5, 0.1, 0.05, 0.01],
    beta: Annotated[list[float], typer.Option(
        help="activity learning rate β (repeat for a grid)")] = [10.0, 1.0, 0.5, 0.1, 0.01],
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
            f"{dataset}: N={width} H={depth} T={cfg.inference_steps} {activation} {param} {algorithm}, "
            f"{len(seeds)} points x {cfg.training_steps(len(data.x_train))} steps (compiling, then training)...",
            err=True,
        )
        bar = ProgressBar("training")
        result = train_cell(
            cfg, data.x_train, data.y_train, data.x_test, data.y_test, seeds, etas, betas, chunk=chunk, progress=bar
        )
        bar.close()
    except Error as error:
        raise fail(error, TRAIN_FLAGS) from None
    table = cell_records(result, dataset).sort_values("min_train_loss", na_position="last")
    columns = ["seed", "eta", "beta", "min_train_loss", "final_train_loss", "step_of_min", "steps_run", "status",
               "test_acc_final", "test_acc_max", "inference_residual"]
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
        raise fail(error, {"dataset": "NAMES", "data_dir": "--data-dir"}) from None


RUN_FLAGS = {**_options("points_per_trial", "cpus_per_trial", "gpus_per_trial", "slots", "data_dir"),
             "spec": "SPEC"}


@app.command()
def run(
    spec_file: Annotated[Path, typer.Argument(help="sweep spec (YAML)", metavar="SPEC")],
    results: Results = Path("results"),
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join (host:port of its head, or auto; default $RAY_ADDRESS, else Ray embedded "
             "here)")] = None,
    points_per_trial: Annotated[int | None, typer.Option(
        help="points a trial trains at most (default: resources.points_per_trial, else sized from the "
             "cluster)")] = None,
    cpus_per_trial: Annotated[float | None, typer.Option(help="override resources.cpu of the spec")] = None,
    gpus_per_trial: Annotated[float | None, typer.Option(
        help="override resources.gpu of the spec (fractions share a GPU)")] = None,
    dry_run: Annotated[bool, typer.Option(
        help="show the trials, their estimated cost and wall time; train nothing")] = False,
    slots: Annotated[int | None, typer.Option(help="with --dry-run: plan for this many trial slots")] = None,
    restart: Annotated[bool, typer.Option(help="delete this sweep's earlier records and start over")] = False,
    in_process: Annotated[bool, typer.Option(
        help="train the trials one after another in this process, without Ray (to debug, or where Ray is "
             "missing)")] = False,
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option("--out", hidden=True, help="old name of --results")] = None,
    cpus_per_cell: Annotated[float | None, typer.Option(hidden=True, help="old name of --cpus-per-trial")] = None,
    gpus_per_cell: Annotated[float | None, typer.Option(hidden=True, help="old name of --gpus-per-trial")] = None,
) -> None:
    """Train every point of a sweep that has no record yet, in Ray Tune trials of whole cells or shards.

    Each finished trial is written at once, so an interrupted sweep resumes where it stopped. A spec
    may grow between runs (more widths, depths, rates or seeds): only the new points train.

    Example: mupc-sweep run sweeps/quick.yaml --results results
    """
    from .driver import InProcess, plan_sweep, run_sweep
    from .report import plan_text

    resources = dict(points_per_trial=points_per_trial,
                     cpus_per_trial=cpus_per_trial if cpus_per_cell is None else cpus_per_cell,
                     gpus_per_trial=gpus_per_trial if gpus_per_cell is None else gpus_per_cell)
    results = out if out is not None else results
    try:
        if dry_run:
            plan = plan_sweep(spec_file, results=results, slots=slots, restart=restart, **resources)
            typer.echo(plan_text(plan, where="--slots" if slots else "this machine"))
            return
        outcome = run_sweep(spec_file, results=results, address=address, restart=restart, data_dir=data_dir,
                            executor=InProcess() if in_process else None, **resources)
    except Error as error:
        raise fail(error, RUN_FLAGS) from None
    except KeyboardInterrupt:
        typer.echo(f"Interrupted. Every trial that finished is kept under {results}/ (`mupc-sweep status --results "
                   f"{results}` shows them); run the same command again to train the rest.", err=True)
        raise typer.Exit(code=130) from None
    if not outcome.complete:
        failed = (f" ({len(outcome.failed)} trials failed, noted in {outcome.results / outcome.sweep / 'failed'})"
                  if outcome.failed else "")
        for line in outcome.left_out:
            typer.echo(f"left out: {line}", err=True)
        typer.echo(f"{len(outcome.left_out)} cells are not done{failed}; run the same command again to train "
                   "them.", err=True)
        raise typer.Exit(code=1)


@app.command()
def status(
    results: Results = Path("results"),
    sweep: Annotated[str | None, typer.Option(help="only this sweep")] = None,
) -> None:
    """Each sweep under RESULTS: cells done, points done and pending, the best point of every finished cell.

    Example: mupc-sweep status --results results
    """
    from .status import status_text, sweep_status

    try:
        table = sweep_status(results, sweep)
    except Error as error:
        raise fail(error) from None
    typer.echo(status_text(table))


@app.command()
def plot(
    results: Results = Path("results"),
    axis: Annotated[str | None, typer.Option(help="depth or width (default: the one the sweep varies most)")] = None,
    sweep: Annotated[str | None, typer.Option(help="only this sweep")] = None,
    format: Annotated[str, typer.Option("--format", help="png, pdf or svg")] = "png",
    dpi: Annotated[int, typer.Option(help="pixels per inch of a PNG")] = 200,
) -> None:
    """Draw transfer contours (Fig. 5), loss against the rates, test accuracy (Fig. 1) and train-loss curves.

    The files (PNG, or --format pdf or svg) go to RESULTS/<sweep>/plots/; accuracy and train-loss
    curves where curves were kept.

    Example: mupc-sweep plot --results results --sweep paper-depth --format pdf
    """
    from .plots import check_output, figures, save_figure
    from .store import left_out, load_curves, load_records, sweeps

    try:
        check_output(format, dpi)
        drawn = {}
        for name in [sweep] if sweep else sweeps(results) or [None]:
            for line in left_out(results, name):
                typer.echo(f"left out, not drawn: {line}", err=True)
            for stem, figure in figures(load_records(results, name), axis=axis,
                                        curves=load_curves(results, name)).items():
                drawn[Path(results) / name / "plots" / f"{stem}.{format}"] = figure
    except Error as error:
        raise fail(error, {"format": "--format", "dpi": "--dpi"}) from None
    for path, figure in drawn.items():
        typer.echo(str(save_figure(figure, path, dpi=dpi)))


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
    from .report import transfer_document
    from .store import left_out, load_records

    partial: list[str] = []
    try:
        partial = left_out(results, sweep)
        reports = recommend(load_records(results, sweep), source=source, target=target, axis=axis)
    except Error as error:
        for line in partial:  # what analysis could not use may be why it has nothing to say
            typer.echo(f"left out: {line}", err=True)
        raise fail(error, {"source": "--from", "target": "--to"}) from None
    if as_json:
        document = transfer_document(reports, axis=axis, source=source, target=target, left_out=partial)
        typer.echo(json.dumps(document, allow_nan=False))
        return
    for report in reports:
        typer.echo(report.text())
    for line in partial:
        typer.echo(f"left out: {line}")


DIAGNOSE_FLAGS = {**_options("activation", "batch_size", "spectrum_examples", "eta", "beta", "lanczos_steps", "name",
                             "dataset", "data_dir", "steps"),
                  "widths": "--width", "depths": "--depth", "params": "--param", "seeds": "--seed"}


@app.command()
def diagnose(
    width: Annotated[list[int], typer.Option(help="N, units per hidden layer (repeat for several)")] = [16, 32, 64],
    depth: Annotated[list[int], typer.Option(help="H, hidden layers (repeat for several)")] = [4, 8, 16],
    param: Annotated[list[str], typer.Option(help="mupc or sp (repeat for both)")] = ["mupc", "sp"],
    seed: Annotated[list[int], typer.Option(help="seed (repeat for several)")] = [0],
    steps: Annotated[list[int], typer.Option(help="measure after this many training steps, 0 at initialisation "
                                                  "(repeat for several)")] = [0, 100],
    activation: Annotated[str, typer.Option(help="linear, tanh or relu")] = CellConfig.activation,
    batch_size: Annotated[int, typer.Option(
        help="B: the batch size of the training steps and of the probe batch (the first B test examples) "
             "the diagnostics measure")] = CellConfig.batch_size,
    eta: Annotated[float, typer.Option(help="weight learning rate η of the training steps")] = 0.01,
    beta: Annotated[float, typer.Option(help="activity learning rate β of inference, in training and after")] = 10.0,
    spectrum_examples: Annotated[int, typer.Option(help="probe examples whose activity-Hessian spectrum is "
                                                        "computed (the first of the batch)")] = 4,
    lanczos_steps: Annotated[int, typer.Option(help="Lanczos iterations per Hessian (exact at H·N)")] = 256,
    name: Annotated[str, typer.Option(help="write to RESULTS/diagnose/NAME/")] = "default",
    dataset: Annotated[str, typer.Option(help="mnist or fashion_mnist")] = "mnist",
    results: Results = Path("results"),
    data_dir: DataDir = None,
    examples: Annotated[int | None, typer.Option(hidden=True, help="old name of --batch-size")] = None,
) -> None:
    """Coord check and activity-Hessian conditioning of a grid of networks, at initialisation and after
    training steps (the paper's Figs. 2, 4 and A.29; README, "Diagnostics").

    Writes coord.parquet, spectrum.parquet and the figures against width and depth, in float64.

    Example: mupc-sweep diagnose --width 32 --width 64 --depth 4 --depth 16 --steps 0 --steps 100 --name tanh
    """
    import jax

    from .atomic import write_atomic
    from .console import ProgressBar
    from .coord import coord_check, summary
    from .coord_plots import coord_figures
    from .data import load_dataset
    from .device import xla_flags
    from .errors import InputError
    from .plots import save_figure

    os.environ["XLA_FLAGS"] = xla_flags(os.environ)  # before JAX opens a device
    folder = results / "diagnose" / name
    try:
        if name in ("", ".", "..") or Path(name).name != name:
            raise InputError(f"name: must be a plain folder name; got {name!r}.")
        if results.exists() and not results.is_dir():
            raise InputError(f"results: {results} is a file, not a results directory.")
        data = load_dataset(dataset, data_dir)
        bar = ProgressBar("diagnose")
        with jax.enable_x64(True):
            check = coord_check(data, widths=width, depths=depth, params=param, seeds=seed, steps=steps,
                                activation=activation, batch_size=batch_size if examples is None else examples,
                                spectrum_examples=spectrum_examples,
                                eta=eta, beta=beta, lanczos_steps=lanczos_steps, progress=bar)
        bar.close()
    except Error as error:
        raise fail(error, DIAGNOSE_FLAGS) from None
    for stem, table in (("coord", check.coord), ("spectrum", check.spectrum)):
        typer.echo(str(write_atomic(folder / f"{stem}.parquet", lambda out, t=table: t.to_parquet(out, index=False))))
    for stem, figure in coord_figures(check.coord, check.spectrum).items():
        typer.echo(str(save_figure(figure, folder / f"{stem}.png")))
    typer.echo(summary(check).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
