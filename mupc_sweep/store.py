"""Records on disk (README, "Sweeps"): results/<sweep>/records/<cell_id>.parquet, one file per
finished cell, and the cell's curves under results/<sweep>/curves/.

Each file is written atomically (`atomic.write_atomic`), so a reader sees a cell whole or not at
all, and a rewrite of the same cell replaces its rows instead of adding to them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import write_atomic, write_text_atomic
from .errors import ResultsError


# The columns every records file holds (README, "Reading a sweep"), and the columns that name one of its points.
RECORD_COLUMNS = (
    "sweep", "cell_id", "dataset", "activation", "param", "algorithm", "width", "depth", "inference_steps",
    "batch_size", "epochs", "seed", "eta", "beta", "min_train_loss", "final_train_loss", "step_of_min", "steps_run",
    "status", "test_acc_final", "test_acc_max", "wall_s", "device", "code_version", "jax_version", "created_at",
)
POINT_KEY = ["cell_id", "seed", "eta", "beta"]


def records_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "records"


def curves_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "curves"


def failures_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "failed"


def _failure_path(results: Path, sweep: str, cell_id: str) -> Path:
    return failures_dir(results, sweep) / f"{cell_id}.txt"


def write_cell(results: Path, sweep: str, cell_id: str, records: pd.DataFrame) -> Path:
    """Write one cell's rows (adding `sweep` and `cell_id`) to its own Parquet file, atomically."""
    return _write(records_dir(results, sweep) / f"{cell_id}.parquet", records.assign(sweep=sweep, cell_id=cell_id))


def write_curves(results: Path, sweep: str, cell_id: str, curves: pd.DataFrame) -> Path:
    """Write one cell's curves (`records.cell_curves`) beside its records, atomically."""
    return _write(curves_dir(results, sweep) / f"{cell_id}.parquet", curves.assign(sweep=sweep, cell_id=cell_id))


def write_failure(results: Path, sweep: str, cell_id: str, error: str) -> Path:
    """Note that a cell's trial failed (with its error) so that `status` can say so; a rerun retries it."""
    return write_text_atomic(_failure_path(results, sweep, cell_id), error + "\n")


def clear_failure(results: Path, sweep: str, cell_id: str) -> None:
    _failure_path(results, sweep, cell_id).unlink(missing_ok=True)


def read_failure(results: Path, sweep: str, cell_id: str) -> str | None:
    """The error noted for a cell whose trial failed, or None."""
    path = _failure_path(results, sweep, cell_id)
    return path.read_text().strip() if path.is_file() else None


def holds_cell(path: Path, n_points: int) -> bool:
    """Whether `path` is a finished cell's records file: readable, with every record column and one
    row per point (its footer alone is read). A damaged, emptied or foreign file is not."""
    try:
        metadata = pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return False
    return metadata.num_rows == n_points and set(RECORD_COLUMNS) <= set(metadata.schema.names)


def _write(target: Path, table: pd.DataFrame) -> Path:
    return write_atomic(target, lambda out: table.to_parquet(out, index=False))


def sweeps(results: Path) -> list[str]:
    """Names of the sweeps under `results` that have at least one records file."""
    results = Path(results)
    if not results.is_dir():
        return []
    return sorted(p.name for p in results.iterdir() if any(records_dir(results, p.name).glob("*.parquet")))


def load_records(results: str | Path = "results", sweep: str | None = None) -> pd.DataFrame:
    """Every record under `results` (or of one sweep), one row per point (README, "Reading a sweep")."""
    names = sweeps(results)
    if sweep is not None:
        if sweep not in names:
            raise ResultsError(
                f"no sweep {sweep!r} with records under {results}; found: {', '.join(names) or 'none'}."
            )
        names = [sweep]
    if not names:
        raise ResultsError(f"no records under {results}: run a sweep first (results/<sweep>/records/*.parquet).")
    files = [f for name in names for f in sorted(records_dir(results, name).glob("*.parquet"))]
    return pd.concat([_read_cell(f) for f in files], ignore_index=True)


def _read_cell(path: Path) -> pd.DataFrame:
    """One records file; ResultsError naming it unless it holds every column and each point once."""
    table = _read(path)
    missing = [c for c in RECORD_COLUMNS if c not in table.columns]
    named = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    problem = (f"lacks the columns {named}" if missing else "holds no rows" if table.empty
               else "holds a point twice" if table.duplicated(POINT_KEY).any() else None)
    if problem:
        raise ResultsError(f"{path} is not a whole records file: it {problem}; delete it and run the sweep "
                           "again to retrain that cell.")
    return table


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, pa.ArrowException) as error:
        raise ResultsError(f"{path} is not a readable records file ({error}); delete it and run the sweep again "
                           "to retrain that cell.") from None


def load_curves(results: str | Path, sweep: str) -> pd.DataFrame | None:
    """Every curve of one sweep, or None if it kept none."""
    files = sorted(curves_dir(results, sweep).glob("*.parquet"))
    return pd.concat([_read(f) for f in files], ignore_index=True) if files else None
