"""Command line: the only place that prints errors and chooses exit codes (2 for bad input)."""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Hyperparameter-transfer sweeps for μPC predictive-coding networks.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets: find, verify and cache MNIST and Fashion-MNIST.", no_args_is_help=True)
app.add_typer(data_app, name="data")


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
    from .data import DatasetError, load_dataset
    from .records import cell_records
    from .train import CellConfig, check_grid, check_steps, train_cell

    try:
        cfg = CellConfig(
            width=width, depth=depth, activation=activation, param=param, algorithm=algorithm,
            inference_steps=inference_steps, batch_size=batch_size, epochs=epochs, eval_every=eval_every,
        )
        betas = beta if algorithm == "pc" else [float("nan")]
        check_grid(cfg, eta, betas)
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
    best = table.iloc[0]
    typer.echo(
        f"\nbest: eta={best.eta:g} beta={best.beta:g} min_train_loss={best.min_train_loss:.4g} "
        f"test_acc_final={best.test_acc_final:.1f}%   ({result.wall_s:.1f} s on {result.device})"
    )


@data_app.command("fetch")
def data_fetch(
    names: Annotated[list[str] | None, typer.Argument(help="datasets (default: mnist fashion_mnist)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="read from this directory instead of the usual sources")] = None,
) -> None:
    """Find each dataset through the source chain, verify its checksums and cache it.

    Example: mupc-sweep data fetch mnist
    """
    from .data import DATASETS, DatasetError, cache_dir, load_raw

    for name in names or list(DATASETS):
        try:
            load_raw(name, data_dir)
        except (ValueError, DatasetError) as error:
            raise fail(str(error)) from None
        typer.echo(f"{name}: verified ({data_dir or cache_dir() / name})")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
