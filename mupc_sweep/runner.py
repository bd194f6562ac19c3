"""A sweep's bookkeeping: which points are still to train, what cells cost, the kept spec, and how
one trial is trained.

The store is the source of truth: a point is done when a whole records file holds it, so a re-run
trains only the missing points, whatever shards trained the others, and never duplicates a row; a
killed run loses at most the trials in flight. The spec as run is kept at results/<sweep>/spec.yaml
with its hash; a changed spec under the same name is refused unless the user asks to start over.
`sweep.py` fans the trials out with Ray.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

from .atomic import write_text_atomic
from .cell import CellConfig
from .cost import point_seconds
from .data import Dataset
from .errors import SpecError
from .records import cell_curves, cell_records
from .shards import Trial, plan_trials
from .spec import SweepSpec
from .store import cell_files, curves_dir, done_points, failures_dir, read_kept, records_dir, spec_path
from .train import train_cell, train_cell_compiles


def check_resumable(spec: SweepSpec, results: Path, *, restart: bool) -> None:
    """Refuse a spec that changed under the same name, or records kept without their spec, unless
    `restart`; writes nothing."""
    kept = spec_path(results, spec.name)
    if not restart and not kept.is_file() and any(records_dir(results, spec.name).glob("*.parquet")):
        raise SpecError(
            f"{kept.parent} holds records but no spec.yaml, so whether they came from this spec cannot be "
            "told; restore its spec.yaml, rename the sweep, or pass --restart to delete its records and start over."
        )
    if kept.is_file() and not restart:
        previous = read_kept(kept).get("spec_hash")
        if previous != spec.spec_hash():
            raise SpecError(
                f"{kept.parent} was run with a different spec (hash {previous}, now {spec.spec_hash()}); "
                "rename the sweep, or pass --restart to delete its records and start over."
            )


def prepare(spec: SweepSpec, results: Path, *, restart: bool) -> None:
    """Create results/<sweep>/ with the spec as run; with `restart`, delete earlier records first.
    Run by the driver holding the sweep's lock, it also removes what an earlier run left behind:
    half-written temporary files, records files that are not whole (their points are pending and
    their new shards will be named by the new plan) with their curves, and the last run's failure
    notes (this run notes its own)."""
    check_resumable(spec, results, restart=restart)
    folder = Path(results) / spec.name
    if restart:
        for old in (records_dir, curves_dir):
            shutil.rmtree(old(results, spec.name), ignore_errors=True)
        shutil.rmtree(folder / "plots", ignore_errors=True)
    shutil.rmtree(failures_dir(results, spec.name), ignore_errors=True)
    for stale in (*records_dir(results, spec.name).glob(".*.tmp"), *curves_dir(results, spec.name).glob(".*.tmp")):
        stale.unlink()  # left by a run killed in the middle of a write
    for damaged in [f for f in records_dir(results, spec.name).glob("*.parquet") if done_points(f) is None]:
        (curves_dir(results, spec.name) / damaged.name).unlink(missing_ok=True)
        damaged.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"spec_hash": spec.spec_hash(), "spec": spec.to_raw()}, sort_keys=False)
    write_text_atomic(spec_path(results, spec.name), text)


def pending_points(spec: SweepSpec, results: Path) -> dict[CellConfig, list[int]]:
    """Per cell, the indices (into `spec.points`) of the points that no whole records file holds;
    a damaged file's points are pending again (`prepare` removes the file before they are retrained)."""
    out = {}
    for cell in spec.cells():
        files = [done_points(f) for f in cell_files(results, spec.name, cell.cell_id)]
        done = pd.concat([f for f in files if f is not None] or [pd.DataFrame(columns=["seed", "eta", "beta"])])
        keys = {_key(*row) for row in done.itertuples(index=False)}
        out[cell] = [i for i, point in enumerate(spec.points(cell.algorithm)) if _key(*point) not in keys]
    return out


def _key(seed, eta, beta) -> tuple:
    """A point as a comparable key: β NaN (bp) as None."""
    return int(seed), float(eta), None if beta is None or math.isnan(beta) else float(beta)


def pending(spec: SweepSpec, results: Path) -> list[CellConfig]:
    """The cells with points still to train."""
    return [cell for cell, points in pending_points(spec, results).items() if points]


def trials_for(spec: SweepSpec, todo: dict[CellConfig, list[int]], slots: int, *, sharded: bool = True) -> list[Trial]:
    """The trials that train the points `todo` holds per cell on `slots` trial slots, longest first:
    shards as `spec.points_per_trial` says or sized automatically (`shards.plan_trials`); with
    `sharded` False, one trial per cell (to compare)."""
    device = "gpu" if spec.gpu > 0 else "cpu"
    return plan_trials(
        todo, {c: len(spec.points(c.algorithm)) for c in todo}, {c: point_seconds(c, device) for c in todo},
        slots=slots, points_per_trial=spec.points_per_trial if sharded else 10**9, gpu=spec.gpu > 0)


def run_trial(
    spec: SweepSpec, trial: Trial, data: Dataset, progress: Callable[[float], None] | None = None, *, pad: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Train one trial's points; its records, its curves (not yet written) and how many programs it
    compiled. With `pad` (GPU trials) the points are padded to `trial.size` with copies of the last,
    whose results are dropped, so that every trial of the cell runs one compiled program; every
    trial draws the weights of all the spec's seeds for the same reason. A point's result does not
    depend on its trial: its weights and batches come from its seed alone."""
    points = [spec.points(trial.cell.algorithm)[i] for i in trial.points]
    padded = points + points[-1:] * (trial.size - len(points) if pad else 0)
    seeds, etas, betas = zip(*padded)
    before = train_cell_compiles()
    result = train_cell(trial.cell, data.x_train, data.y_train, data.x_test, data.y_test, seeds, etas, betas,
                        seed_pool=spec.seeds, progress=progress).take(len(points))
    compiles = train_cell_compiles() - before
    return cell_records(result, spec.dataset), cell_curves(result, spec.dataset, every=spec.curves_every), compiles
