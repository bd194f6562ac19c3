"""Results on disk (README, "Sweeps"): results/<sweep>/ holds the spec of the latest run
(spec.yaml), the history of the specs run (spec_history.yaml), records/ with one Parquet file per
finished trial, curves/ beside them, and failed/ notes.

A trial trains some of a cell's points; its file is named after the cell and its first point,
`<cell_id>.s<seed>-e<η>-b<β>.parquet` (earlier versions wrote `<cell_id>.parquet` and
`<cell_id>.p<index>.parquet`, which read the same). Each file is written once, atomically and never
over another (`atomic.write_atomic`), so a reader sees a trial whole or not at all. A point is done
when a whole records file holds it; which points a cell needs is `regions.needs` of the spec and
the records, so the records files are the one source of truth about a sweep's state.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from .atomic import write_atomic, write_text_atomic
from .cell import CellConfig
from .errors import ResultsError, SpecError
from .regions import CellNeed, is_extension, needs, rate_key, region_points
from .spec import SweepSpec, load_spec

# The columns every records file holds (README, "Reading a sweep"), and the columns that name one of its points.
RECORD_COLUMNS = (
    "sweep", "cell_id", "dataset", "activation", "param", "algorithm", "width", "depth", "inference_steps",
    "batch_size", "epochs", "seed", "eta", "beta", "min_train_loss", "final_train_loss", "step_of_min", "steps_run",
    "status", "test_acc_final", "test_acc_max", "wall_s", "device", "code_version", "jax_version", "created_at",
)
OPTIONAL_COLUMNS = ("extension",)  # absent from records written before `grid.extend` existed: False there
POINT_COLUMNS = ["seed", "eta", "beta"]  # a point of a cell
POINT_KEY = ["cell_id", *POINT_COLUMNS]
OUTCOME_COLUMNS = [*POINT_COLUMNS, "min_train_loss", "status"]  # what deciding a cell's next points reads


def records_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "records"


def curves_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "curves"


def failures_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "failed"


def spec_path(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "spec.yaml"


def history_path(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "spec_history.yaml"


def trial_stem(cell_id: str, first: tuple) -> str:
    """The file stem of a trial's records: the cell's id and its first point (seed, η, β)."""
    seed, eta, beta = first
    return f"{cell_id}.s{int(seed)}-e{rate_key(eta)!r}" + ("" if rate_key(beta) is None else f"-b{rate_key(beta)!r}")


def _cell_paths(folder: Path, cell_id: str, suffix: str) -> list[Path]:
    """The files of one cell in `folder` (never another cell's: the marker after the id starts with
    a dot, which no id holds)."""
    whole = folder / f"{cell_id}{suffix}"
    return ([whole] if whole.is_file() else []) + sorted(folder.glob(f"{cell_id}.*{suffix}"))


def cell_files(results: Path, sweep: str, cell_id: str) -> list[Path]:
    """The records files of one cell, whole or not."""
    return _cell_paths(records_dir(results, sweep), cell_id, ".parquet")


def write_cell(results: Path, sweep: str, cell_id: str, records: pd.DataFrame, *, stem: str | None = None) -> Path:
    """Write one trial's rows (adding `sweep` and `cell_id`) to a Parquet file of its own, atomically
    and never over an existing file; `stem` names the file (`trial_stem`), the cell's id by default."""
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
    """The error noted for a failed trial of this cell, or None."""
    paths = _cell_paths(failures_dir(results, sweep), cell_id, ".txt")
    return paths[0].read_text().strip() if paths else None


def file_problem(path: Path) -> str | None:
    """Why a records file is not whole (unreadable, a column missing, no rows, a point twice), or
    None for a whole one."""
    try:
        names = pq.read_schema(path).names
        missing = [c for c in RECORD_COLUMNS if c not in names]
        if missing:
            named = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            return f"lacks the columns {named}"
        points = pq.read_table(path, columns=POINT_COLUMNS).to_pandas()
    except (OSError, pa.ArrowException) as error:
        return f"is not a readable records file ({_first_line(error)})"
    if points.empty:
        return "holds no rows"
    if points.assign(beta=points["beta"].astype("float64")).duplicated().any():
        return "holds a point twice"
    return None


def _first_line(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]


def _write(target: Path, table: pd.DataFrame) -> Path:
    return write_atomic(target, lambda out: table.to_parquet(out, index=False), replace=False)


def read_kept(path: Path) -> dict:
    """The kept spec file's mapping; SpecError naming the file if it is not one."""
    try:
        kept = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SpecError(f"{path} is unreadable ({type(error).__name__}); delete it, or pass restart=True.") from None
    if not isinstance(kept, dict):
        raise SpecError(f"{path} does not hold a kept spec; delete it, or pass restart=True.")
    return kept


def kept_spec(results: Path, sweep: str) -> SweepSpec | None:
    """The spec of a sweep's latest run, or None if it kept none."""
    path = spec_path(results, sweep)
    if not path.is_file():
        return None
    raw = read_kept(path).get("spec")
    try:
        return load_spec({**raw, "name": sweep} if isinstance(raw, dict) else raw)
    except SpecError as error:
        raise SpecError(f"{path} holds no valid spec ({error}); delete it, or pass restart=True.") from None


def check_growable(spec: SweepSpec, results: Path, *, restart: bool) -> None:
    """Refuse, unless `restart`, a spec whose settings differ from the sweep's kept spec (they change
    every existing point's result; the message names them), or records kept without their spec.
    Added or removed cells, grid values and seeds are a sweep that grows. Writes nothing."""
    if restart:
        return
    path = spec_path(results, spec.name)
    if not path.is_file():
        if any(records_dir(results, spec.name).glob("*.parquet")):
            raise SpecError(
                f"{path.parent} holds records but no spec.yaml, so whether they came from this spec cannot be told; "
                "restore its spec.yaml, rename the sweep, or pass restart=True to delete its records and start over.")
        return
    kept = kept_spec(results, spec.name)
    changed = {k: (v, spec.settings()[k]) for k, v in kept.settings().items() if v != spec.settings()[k]}
    if changed:
        what = "; ".join(f"{k} was {old!r}, now {new!r}" for k, (old, new) in changed.items())
        raise SpecError(
            f"{path.parent} was run with other settings ({what}), which change every point's result; restore "
            "them, rename the sweep, or pass restart=True to delete its records and start over. (Adding or removing "
            "widths, depths, grid values or seeds needs none of this: the sweep grows.)")


def prepare(spec: SweepSpec, results: Path, *, restart: bool) -> None:
    """Create results/<sweep>/ with the spec of this run, its history appended; with `restart`,
    delete earlier records first. Run by the driver holding the sweep's lock, it also removes what an
    earlier run left behind: half-written temporary files, records files that are not whole (their
    points are pending) with their curves, and the last run's failure notes (this run notes its own)."""
    check_growable(spec, results, restart=restart)
    folder = Path(results) / spec.name
    if restart:
        for old in (records_dir, curves_dir):
            shutil.rmtree(old(results, spec.name), ignore_errors=True)
        shutil.rmtree(folder / "plots", ignore_errors=True)
        history_path(results, spec.name).unlink(missing_ok=True)
    shutil.rmtree(failures_dir(results, spec.name), ignore_errors=True)
    for stale in (*records_dir(results, spec.name).glob(".*.tmp"), *curves_dir(results, spec.name).glob(".*.tmp")):
        stale.unlink()  # left by a run killed in the middle of a write
    for damaged in [f for f in records_dir(results, spec.name).glob("*.parquet") if file_problem(f)]:
        (curves_dir(results, spec.name) / damaged.name).unlink(missing_ok=True)
        damaged.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"spec_hash": spec.spec_hash(), "spec": spec.to_raw()}
    write_text_atomic(spec_path(results, spec.name), yaml.safe_dump(entry, sort_keys=False))
    history = _history(results, spec.name)
    if not history or history[-1].get("spec_hash") != entry["spec_hash"]:
        history.append({"first_run": datetime.now(timezone.utc).isoformat(timespec="seconds"), **entry})
        write_text_atomic(history_path(results, spec.name), yaml.safe_dump(history, sort_keys=False))


def _history(results: Path, sweep: str) -> list[dict]:
    """The specs run so far, oldest first (an unreadable history starts again)."""
    try:
        history = yaml.safe_load(history_path(results, sweep).read_text())
    except (OSError, yaml.YAMLError):
        return []
    return history if isinstance(history, list) else []


@dataclass
class SweepState:
    """What a sweep's folder holds, read once: its kept spec, each records file whole (its rows) or
    damaged (why), and per cell of the spec its rows and what it still needs. The one reading every
    command and the driver share."""

    name: str
    spec: SweepSpec | None
    whole: dict[Path, pd.DataFrame] = field(default_factory=dict)
    damaged: dict[Path, str] = field(default_factory=dict)
    needs: dict[CellConfig, CellNeed] = field(default_factory=dict)

    def cell_rows(self, cell_id: str) -> pd.DataFrame:
        """Every row of a cell's whole records files."""
        tables = [t for t in self.whole.values() if t["cell_id"].iloc[0] == cell_id]
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(RECORD_COLUMNS))

    def in_spec(self, rows: pd.DataFrame) -> pd.Series:
        """Which rows are points of the spec: its seeds, and its grid's rates or extension values."""
        spec = self.spec
        extension = rows["extension"].fillna(False).astype(bool) if "extension" in rows else False
        grid = [not is_extension(spec, e, None if pd.isna(b) else b) for e, b in zip(rows["eta"], rows["beta"])]
        return rows["seed"].isin(spec.seeds) & (pd.Series(grid, index=rows.index, dtype=bool) | extension)

    def records(self) -> pd.DataFrame:
        """The rows of complete cells, within the spec (without a kept spec, every row found);
        ResultsError naming a damaged records file or a point held twice."""
        for path, problem in self.damaged.items():
            raise ResultsError(f"{path} is not a whole records file: it {problem}; delete it and run the sweep "
                               "again to retrain its points.")
        if not self.whole:
            return pd.DataFrame(columns=list(RECORD_COLUMNS))
        table = pd.concat(self.whole.values(), ignore_index=True)
        twice = table[table.assign(beta=table["beta"].astype("float64")).duplicated(POINT_KEY, keep=False)]
        if len(twice):
            cell = twice["cell_id"].iloc[0]
            files = ", ".join(p.name for p, rows in self.whole.items() if (rows["cell_id"] == cell).any())
            raise ResultsError(f"cell {cell} of {self.name} holds a point in two records files ({files}); delete "
                               "the extra file and run the sweep again.")
        if self.spec is None:
            return table
        complete = [cell.cell_id for cell, need in self.needs.items() if need.complete]
        table = table[table["cell_id"].isin(complete)]
        return table[self.in_spec(table)].reset_index(drop=True)

    def incomplete(self) -> list[str]:
        """A line per cell of the spec with points still to train."""
        lines = []
        for cell, need in self.needs.items():
            if need.waits:
                lines.append(f"{self.name}: {cell.cell_id}: a patch waiting for its source to finish (run the "
                             "sweep again to train it)")
            elif need.missing:
                total = len(region_points(self.spec, cell, need.region))
                lines.append(f"{self.name}: {cell.cell_id}: {total - len(need.missing)} of {total} points (run "
                             "the sweep again to train the rest)")
        return lines

    def outcomes(self) -> dict[CellConfig, pd.DataFrame]:
        """Per cell of the spec, the seed, rates, min loss and status of its points done."""
        return {cell: self.cell_rows(cell.cell_id)[OUTCOME_COLUMNS] for cell in self.spec.cells()}


def read_state(results: str | Path, sweep: str, spec: SweepSpec | None = None) -> SweepState:
    """A sweep's state, judged against `spec` (default: its kept spec; None when it kept none)."""
    state = SweepState(sweep, spec if spec is not None else kept_spec(results, sweep))
    for path in sorted(records_dir(results, sweep).glob("*.parquet")):
        problem = file_problem(path)
        if problem:
            state.damaged[path] = problem
        else:
            state.whole[path] = pd.read_parquet(path)
    if state.spec is not None:
        state.needs = needs(state.spec, state.outcomes())
    return state


def sweeps(results: Path) -> list[str]:
    """Names of the sweeps under `results` that have at least one records file."""
    results = Path(results)
    if not results.is_dir():
        return []
    return sorted(p.name for p in results.iterdir() if any(records_dir(results, p.name).glob("*.parquet")))


def load_records(results: str | Path = "results", sweep: str | None = None) -> pd.DataFrame:
    """Every record of every complete cell under `results` (or of one sweep), one row per point
    (README, "Reading a sweep"): the points of the sweep's spec (its cells, seeds and grid, and the
    extension points `grid.extend` added); records kept from values since removed from the spec stay
    on disk but are left out. Cells with points still to train are left out too (`incomplete_cells`
    names them); a damaged records file, or a point held twice, is a ResultsError naming it."""
    return pd.concat([read_state(results, name).records() for name in _names(results, sweep)], ignore_index=True)


def incomplete_cells(results: str | Path = "results", sweep: str | None = None) -> list[str]:
    """One line per cell that `load_records` leaves out because some of its points have no row yet."""
    return [line for name in _names(results, sweep) for line in read_state(results, name).incomplete()]


def _names(results: str | Path, sweep: str | None) -> list[str]:
    names = sweeps(results)
    if sweep is not None:
        if sweep not in names:
            raise ResultsError(f"no sweep {sweep!r} with records under {results}; found: {', '.join(names) or 'none'}.")
        return [sweep]
    if not names:
        raise ResultsError(f"no records under {results}: run a sweep first (results/<sweep>/records/*.parquet).")
    return names


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, pa.ArrowException) as error:
        raise ResultsError(f"{path} is not a readable records file ({error}); delete it and run the sweep again "
                           "to retrain its points.") from None


def load_curves(results: str | Path, sweep: str) -> pd.DataFrame | None:
    """Every curve of one sweep, or None if it kept none; a ResultsError naming the sweeps found
    when `sweep` has no records under `results`."""
    (name,) = _names(results, sweep)
    files = sorted(curves_dir(results, name).glob("*.parquet"))
    return pd.concat([_read(f) for f in files], ignore_index=True) if files else None
