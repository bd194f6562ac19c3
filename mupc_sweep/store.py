"""Results on disk (README, "Sweeps"): results/<sweep>/ holds the spec as run (spec.yaml, with its
hash), records/ with one Parquet file per finished trial, curves/ beside them, and failed/ notes.

A trial trains a whole cell or a shard of it (some of its points); its file is named after the cell,
`<cell_id>.parquet`, or after the shard's first point, `<cell_id>.p<first>.parquet`. Each file is
written once and atomically (`atomic.write_atomic`), so a reader sees a trial whole or not at all.
A cell is complete when every one of its points has a row, however many files hold them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from .atomic import write_atomic, write_text_atomic
from .errors import ResultsError, SpecError
from .spec import SweepSpec, parse_spec

# The columns every records file holds (README, "Reading a sweep"), and the columns that name one of its points.
RECORD_COLUMNS = (
    "sweep", "cell_id", "dataset", "activation", "param", "algorithm", "width", "depth", "inference_steps",
    "batch_size", "epochs", "seed", "eta", "beta", "min_train_loss", "final_train_loss", "step_of_min", "steps_run",
    "status", "test_acc_final", "test_acc_max", "wall_s", "device", "code_version", "jax_version", "created_at",
)
POINT_COLUMNS = ["seed", "eta", "beta"]  # a point of a cell
POINT_KEY = ["cell_id", *POINT_COLUMNS]


def records_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "records"


def curves_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "curves"


def failures_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "failed"


def spec_path(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "spec.yaml"


def trial_stem(cell_id: str, first: int | None = None) -> str:
    """The file stem of a trial's records: the cell's id, or for a shard the id and its first point."""
    return cell_id if first is None else f"{cell_id}.p{first}"


def _cell_paths(folder: Path, cell_id: str, suffix: str) -> list[Path]:
    """The files of one cell in `folder`: the whole cell's and its shards' (never another cell's:
    the shard marker starts right after the id)."""
    whole = folder / f"{cell_id}{suffix}"
    return ([whole] if whole.is_file() else []) + sorted(folder.glob(f"{cell_id}.p*{suffix}"))


def cell_files(results: Path, sweep: str, cell_id: str) -> list[Path]:
    """The records files of one cell, whole or not."""
    return _cell_paths(records_dir(results, sweep), cell_id, ".parquet")


def write_cell(results: Path, sweep: str, cell_id: str, records: pd.DataFrame, *, stem: str | None = None) -> Path:
    """Write one trial's rows (adding `sweep` and `cell_id`) to its own Parquet file, atomically;
    `stem` names the file (`trial_stem`), the cell's id by default."""
    target = records_dir(results, sweep) / f"{stem or cell_id}.parquet"
    return _write(target, records.assign(sweep=sweep, cell_id=cell_id))


def write_curves(results: Path, sweep: str, cell_id: str, curves: pd.DataFrame, *, stem: str | None = None) -> Path:
    """Write one trial's curves (`records.cell_curves`) beside its records, atomically."""
    target = curves_dir(results, sweep) / f"{stem or cell_id}.parquet"
    return _write(target, curves.assign(sweep=sweep, cell_id=cell_id))


def write_failure(results: Path, sweep: str, stem: str, error: str) -> Path:
    """Note that a trial failed (with its error) so that `status` can say so; a rerun retries it."""
    return write_text_atomic(failures_dir(results, sweep) / f"{stem}.txt", error + "\n")


def clear_failure(results: Path, sweep: str, stem: str) -> None:
    (failures_dir(results, sweep) / f"{stem}.txt").unlink(missing_ok=True)


def read_failure(results: Path, sweep: str, cell_id: str) -> str | None:
    """The error noted for a failed trial of this cell (the whole cell or a shard), or None."""
    paths = _cell_paths(failures_dir(results, sweep), cell_id, ".txt")
    return paths[0].read_text().strip() if paths else None


def done_points(path: Path) -> pd.DataFrame | None:
    """The points (seed, eta, beta) of a whole records file: readable, with every record column, at
    least one row and each point once. None for a damaged, emptied or foreign file."""
    try:
        if not set(RECORD_COLUMNS) <= set(pq.read_schema(path).names):
            return None
        points = pq.read_table(path, columns=POINT_COLUMNS).to_pandas()
    except (OSError, pa.ArrowException):
        return None
    points["beta"] = points["beta"].astype("float64")  # null (NaN) for bp
    return None if points.empty or points.duplicated().any() else points


def _write(target: Path, table: pd.DataFrame) -> Path:
    return write_atomic(target, lambda out: table.to_parquet(out, index=False))


def kept_spec(results: Path, sweep: str) -> tuple[SweepSpec, str] | None:
    """The spec a sweep was run with and its hash, or None if it kept none."""
    path = spec_path(results, sweep)
    if not path.is_file():
        return None
    kept = read_kept(path)
    return parse_spec(kept.get("spec"), default_name=sweep), kept.get("spec_hash", "")


def read_kept(path: Path) -> dict:
    """The kept spec file's mapping; SpecError naming the file if it is not one."""
    try:
        kept = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SpecError(f"{path} is unreadable ({type(error).__name__}); delete it, or pass --restart.") from None
    if not isinstance(kept, dict):
        raise SpecError(f"{path} does not hold a kept spec; delete it, or pass --restart.")
    return kept


def sweeps(results: Path) -> list[str]:
    """Names of the sweeps under `results` that have at least one records file."""
    results = Path(results)
    if not results.is_dir():
        return []
    return sorted(p.name for p in results.iterdir() if any(records_dir(results, p.name).glob("*.parquet")))


def load_records(results: str | Path = "results", sweep: str | None = None) -> pd.DataFrame:
    """Every record of every complete cell under `results` (or of one sweep), one row per point
    (README, "Reading a sweep"). Cells with points still to train are left out (`incomplete_cells`
    names them); a damaged records file, or a point held twice, is a ResultsError naming it."""
    tables = [_read_sweep(results, name)[0] for name in _names(results, sweep)]
    return pd.concat(tables, ignore_index=True)


def incomplete_cells(results: str | Path = "results", sweep: str | None = None) -> list[str]:
    """One line per cell that `load_records` leaves out because some of its points have no row yet."""
    return [line for name in _names(results, sweep) for line in _read_sweep(results, name)[1]]


def _names(results: str | Path, sweep: str | None) -> list[str]:
    names = sweeps(results)
    if sweep is not None:
        if sweep not in names:
            raise ResultsError(f"no sweep {sweep!r} with records under {results}; found: {', '.join(names) or 'none'}.")
        return [sweep]
    if not names:
        raise ResultsError(f"no records under {results}: run a sweep first (results/<sweep>/records/*.parquet).")
    return names


def _read_sweep(results: str | Path, sweep: str) -> tuple[pd.DataFrame, list[str]]:
    """One sweep's rows of complete cells, and a line per incomplete cell. Without a kept spec,
    every cell found counts as complete."""
    table = pd.concat([_read_file(f) for f in sorted(records_dir(results, sweep).glob("*.parquet"))],
                      ignore_index=True)
    twice = table[table.duplicated(POINT_KEY, keep=False)]
    if len(twice):
        cell = twice["cell_id"].iloc[0]
        files = ", ".join(p.name for p in cell_files(results, sweep, cell))
        raise ResultsError(f"cell {cell} of {sweep} holds a point in two records files ({files}); delete the "
                           "extra file and run the sweep again.")
    kept = kept_spec(results, sweep)
    if kept is None:
        return table, []
    spec = kept[0]
    expected = {cell.cell_id: len(spec.points(cell.algorithm)) for cell in spec.cells()}
    counts = table.groupby("cell_id").size()
    partial = [c for c, n in expected.items() if counts.get(c, 0) < n]
    lines = [f"{sweep}: {c}: {counts.get(c, 0)} of {expected[c]} points (run the sweep again to train the rest)"
             for c in partial]
    return table[~table["cell_id"].isin(partial)].reset_index(drop=True), lines


def _read_file(path: Path) -> pd.DataFrame:
    """One records file; ResultsError naming it unless it holds every column and each point once."""
    table = _read(path)
    missing = [c for c in RECORD_COLUMNS if c not in table.columns]
    named = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    problem = (f"lacks the columns {named}" if missing else "holds no rows" if table.empty
               else "holds a point twice" if table.duplicated(POINT_KEY).any() else None)
    if problem:
        raise ResultsError(f"{path} is not a whole records file: it {problem}; delete it and run the sweep "
                           "again to retrain its points.")
    return table


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, pa.ArrowException) as error:
        raise ResultsError(f"{path} is not a readable records file ({error}); delete it and run the sweep again "
                           "to retrain its points.") from None


def load_curves(results: str | Path, sweep: str) -> pd.DataFrame | None:
    """Every curve of one sweep, or None if it kept none."""
    files = sorted(curves_dir(results, sweep).glob("*.parquet"))
    return pd.concat([_read(f) for f in files], ignore_index=True) if files else None
