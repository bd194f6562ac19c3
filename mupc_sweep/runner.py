"""A sweep's plan and bookkeeping: which cells are pending, what they cost, how one cell is trained.

The store is the source of truth: a cell is done when its records file exists, so a re-run skips
it and never duplicates a row, and a killed run loses at most the cells in flight. The spec as run
is kept at results/<sweep>/spec.yaml with its hash; a changed spec under the same name is refused
unless the user asks to start over. `sweep.py` fans the pending cells out with Ray.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

from .cost import eval_flops, step_flops
from .atomic import write_text_atomic
from .data import Dataset
from .records import cell_curves, cell_records
from .cell import CellConfig
from .errors import SpecError
from .spec import SweepSpec, parse_spec
from .store import curves_dir, failures_dir, holds_cell, records_dir
from .train import train_cell

N_CLASSES = 10
D_IN = 784
N_TRAIN = 60000  # training examples of MNIST and of Fashion-MNIST


def spec_path(results: Path, name: str) -> Path:
    return Path(results) / name / "spec.yaml"


def kept_spec(results: Path, name: str) -> tuple[SweepSpec, str] | None:
    """The spec a sweep was run with and its hash, or None."""
    path = spec_path(results, name)
    if not path.is_file():
        return None
    kept = _read_kept(path)
    return parse_spec(kept.get("spec"), default_name=name), kept.get("spec_hash", "")


def _read_kept(path: Path) -> dict:
    """The kept spec file's mapping; SpecError naming the file if it is not one."""
    try:
        kept = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SpecError(f"{path} is unreadable ({type(error).__name__}); delete it, or pass --restart.") from None
    if not isinstance(kept, dict):
        raise SpecError(f"{path} does not hold a kept spec; delete it, or pass --restart.")
    return kept


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
        previous = _read_kept(kept).get("spec_hash")
        if previous != spec.spec_hash():
            raise SpecError(
                f"{kept.parent} was run with a different spec (hash {previous}, now {spec.spec_hash()}); "
                "rename the sweep, or pass --restart to delete its records and start over."
            )


def prepare(spec: SweepSpec, results: Path, *, restart: bool) -> None:
    """Create results/<sweep>/ with the spec as run; with `restart`, delete earlier records first."""
    check_resumable(spec, results, restart=restart)
    folder = Path(results) / spec.name
    if restart:
        for old in (records_dir, curves_dir, failures_dir):
            shutil.rmtree(old(results, spec.name), ignore_errors=True)
        shutil.rmtree(folder / "plots", ignore_errors=True)
    for stale in (*records_dir(results, spec.name).glob(".*.tmp"), *curves_dir(results, spec.name).glob(".*.tmp")):
        stale.unlink()  # left by a run killed in the middle of a write
    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"spec_hash": spec.spec_hash(), "spec": spec.to_raw()}, sort_keys=False)
    write_text_atomic(spec_path(results, spec.name), text)


def pending(spec: SweepSpec, results: Path) -> list[CellConfig]:
    """Cells without a whole records file (`store.holds_cell`): a damaged one is trained again and
    replaced."""
    done = records_dir(results, spec.name)
    return [cell for cell in spec.cells()
            if not holds_cell(done / f"{cell.cell_id}.parquet", len(spec.points(cell.algorithm)))]


def plan(spec: SweepSpec, n_train: int = N_TRAIN, n_test: int = 10000) -> pd.DataFrame:
    """One row per cell: points, steps, and the matrix-product FLOPs of training and evaluation."""
    rows = []
    for cfg in spec.cells():
        points = len(spec.points(cfg.algorithm))
        steps = cfg.n_steps(n_train)
        per_step = step_flops(
            algorithm=cfg.algorithm, d_in=D_IN, width=cfg.width, depth=cfg.depth, d_out=N_CLASSES,
            inference_steps=cfg.steps, batch_size=cfg.batch_size,
        )
        evals = steps // cfg.eval_every + 1
        per_eval = eval_flops(d_in=D_IN, width=cfg.width, depth=cfg.depth, d_out=N_CLASSES, n_examples=n_test)
        rows.append(dict(cell_id=cfg.cell_id, points=points, steps=steps,
                         tflops=points * (steps * per_step + evals * per_eval) / 1e12))
    return pd.DataFrame(rows)


def run_cell(
    spec: SweepSpec, cell: CellConfig, data: Dataset, progress: Callable[[float], None] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train one cell's grid; its records and curves (not yet written)."""
    seeds, etas, betas = zip(*spec.points(cell.algorithm))
    result = train_cell(
        cell, data.x_train, data.y_train, data.x_test, data.y_test, seeds, etas, betas, progress=progress
    )
    return cell_records(result, spec.dataset), cell_curves(result, spec.dataset, every=spec.curves_every)
