"""One trial of a sweep: train its points of one cell and turn the result into records and curves.
Runs wherever trials run (a Ray worker, or the driver's own process with `driver.InProcess`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from .data import Dataset
from .records import cell_curves, cell_records
from .regions import is_extension
from .shards import Trial
from .spec import SweepSpec
from .train import train_cell, train_cell_compiles


def run_trial(
    spec: SweepSpec, trial: Trial, data: Dataset, progress: Callable[[float], None] | None = None, *, pad: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Train one trial's points; its records (with `extension` marking points beyond the spec's
    grid), its curves (not yet written) and how many programs it compiled. With `pad` (GPU trials)
    the points are padded to `trial.size` with copies of the last, whose results are dropped, so
    that every trial of the cell runs one compiled program; every trial draws the weights of all the
    spec's seeds for the same reason. A point's result does not depend on its trial: its weights and
    batches come from its seed alone."""
    points = list(trial.points)
    padded = points + points[-1:] * (trial.size - len(points) if pad else 0)
    seeds = [seed for seed, _, _ in padded]
    etas = [eta for _, eta, _ in padded]
    betas = [math.nan if beta is None else beta for _, _, beta in padded]
    before = train_cell_compiles()
    result = train_cell(trial.cell, data.x_train, data.y_train, data.x_test, data.y_test, seeds, etas, betas,
                        seed_pool=spec.seeds, progress=progress, residual_every=spec.curves_every).take(len(points))
    compiles = train_cell_compiles() - before
    records = cell_records(result, spec.dataset).assign(
        extension=[is_extension(spec, eta, beta) for _, eta, beta in points])
    return records, cell_curves(result, spec.dataset, every=spec.curves_every), compiles
