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

import hashlib
import json
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
# Columns records written by earlier versions lack: `extension` (False there) and `inference_residual` (null).
OPTIONAL_COLUMNS = ("extension", "inference_residual")
POINT_COLUMNS = ["seed", "eta", "beta"]  # a point of a cell
POINT_KEY = ["cell_id", *POINT_COLUMNS]
OUTCOME_COLUMNS = [*POINT_COLUMNS, "min_train_loss", "status"]  # what deciding a cell's next points reads


def records_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "records"


def curves_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "curves"


def failures_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "failed"


def damaged_dir(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "damaged"


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


CHECKSUM_KEY = b"mupc_sweep.sha256"  # Parquet metadata: the SHA-256 of a records file's values as written


def content_digest(table: pa.Table) -> str:
    """SHA-256 of a table's values, column by column in name order, as they read back from Parquet."""
    values = table.select(sorted(table.column_names)).to_pydict()
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def read_records_file(path: Path, sweep: str) -> tuple[pd.DataFrame | None, str | None]:
    """A records file's rows, or why it cannot be trusted: unreadable, a column missing, no rows, a
    point twice, values edited since it was written (its checksum differs; files written before
    checksums carry none and are not checked), or rows of another sweep or cell than its place and
    name say (a file copied between folders)."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        return None, f"is not a readable records file ({_first_line(error)})"
    missing = [c for c in RECORD_COLUMNS if c not in table.column_names]
    if missing:
        named = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        return None, f"lacks the columns {named}"
    rows = table.to_pandas()
    if rows.empty:
        return None, "holds no rows"
    if rows[POINT_COLUMNS].assign(beta=rows["beta"].astype("float64")).duplicated().any():
        return None, "holds a point twice"
    digest = (table.schema.metadata or {}).get(CHECKSUM_KEY)
    if digest is not None and digest.decode() != content_digest(table.replace_schema_metadata(None)):
        return None, "was edited after it was written (its checksum no longer matches its values)"
    if set(rows["sweep"]) != {sweep}:
        return None, f"holds records of sweep {', '.join(map(repr, sorted(set(rows['sweep']))))}, not {sweep!r}"
    if set(rows["cell_id"]) != {path.name.split(".")[0]}:
        return None, f"holds records of cell {', '.join(sorted(set(rows['cell_id'])))}, not of the cell it is named after"
    return rows, None


def _first_line(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]


def _write(target: Path, rows: pd.DataFrame) -> Path:
    """Write rows as Parquet with the checksum of their values, atomically, never over a file."""
    table = pa.Table.from_pandas(rows, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), CHECKSUM_KEY: content_digest(
        table.replace_schema_metadata(None)).encode()})
    return write_atomic(target, lambda out: pq.write_table(table, out), replace=False)


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
    earlier run left behind: half-written temporary files, records files that cannot be trusted
    (`read_records_file`; their points are pending), moved with their curves to results/<sweep>/
    damaged/, and the last run's failure notes (this run notes its own)."""
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
    for path in read_state(results, spec.name, spec).damaged:
        aside = damaged_dir(results, spec.name)
        aside.mkdir(parents=True, exist_ok=True)
        curves = curves_dir(results, spec.name) / path.name
        if curves.exists():
            curves.replace(aside / f"{path.stem}.curves.parquet")
        path.replace(aside / path.name)
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
    not to be trusted (why), the cells holding a point in two files, and per cell of the spec what it
    still needs. The one reading every command and the driver share, so that all tell the same story
    about every file."""

    name: str
    spec: SweepSpec | None
    whole: dict[Path, pd.DataFrame] = field(default_factory=dict)
    damaged: dict[Path, str] = field(default_factory=dict)
    doubled: dict[str, list[str]] = field(default_factory=dict)  # cell id -> its files that share a point
    needs: dict[CellConfig, CellNeed] = field(default_factory=dict)

    def cell_rows(self, cell_id: str) -> pd.DataFrame:
        """Every row of a cell's whole records files."""
        tables = [t for t in self.whole.values() if t["cell_id"].iloc[0] == cell_id]
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(RECORD_COLUMNS))

    def damaged_files(self, cell_id: str | None) -> dict[Path, str]:
        """The untrusted files named after a cell (None: after no cell of the spec)."""
        known = {cell.cell_id for cell in self.spec.cells()} if self.spec else set()
        return {path: problem for path, problem in self.damaged.items()
                if path.name.split(".")[0] == cell_id or (cell_id is None and path.name.split(".")[0] not in known)}

    def trusted(self, cell_id: str) -> bool:
        """Whether a cell's records can be analysed: no untrusted file of it, no point in two files."""
        return cell_id not in self.doubled and not self.damaged_files(cell_id)

    def in_spec(self, rows: pd.DataFrame) -> pd.Series:
        """Which rows are points of the spec: its seeds, and its grid's rates or extension values."""
        spec = self.spec
        extension = rows["extension"].fillna(False).astype(bool) if "extension" in rows else False
        grid = [not is_extension(spec, e, None if pd.isna(b) else b) for e, b in zip(rows["eta"], rows["beta"])]
        return rows["seed"].isin(spec.seeds) & (pd.Series(grid, index=rows.index, dtype=bool) | extension)

    def records(self) -> pd.DataFrame:
        """The rows of the cells analysis can use: complete and trusted, within the spec (without a
        kept spec, every row of trusted cells); `left_out` names the others and why."""
        cells = [t for t in self.whole.values() if self.trusted(t["cell_id"].iloc[0])]
        if not cells:
            return pd.DataFrame(columns=list(RECORD_COLUMNS))
        table = pd.concat(cells, ignore_index=True)
        if self.spec is None:
            return table
        complete = [cell.cell_id for cell, need in self.needs.items() if need.complete]
        table = table[table["cell_id"].isin(complete)]
        return table[self.in_spec(table)].reset_index(drop=True)

    def left_out(self) -> list[str]:
        """A line per cell (or file) analysis leaves out, with why and what to do."""
        lines = []
        for path, problem in self.damaged_files(None).items():
            lines.append(f"{self.name}: records file {path.name} {problem}; it is no cell of the spec (the next run "
                         f"moves it to {self.name}/damaged/)")
        for cell, need in self.needs.items():
            where = f"{self.name}: {cell.cell_id}"
            for path, problem in self.damaged_files(cell.cell_id).items():
                lines.append(f"{where}: records file {path.name} {problem} (the next run moves it aside and "
                             "retrains its points)")
            if cell.cell_id in self.doubled:
                lines.append(f"{where}: a point is held in two records files ({', '.join(self.doubled[cell.cell_id])}"
                             "; merged results folders?): keep one of them, move the other out of records/")
            if need.waits:
                lines.append(f"{where}: a patch waiting for its source to finish (run the sweep again to train it)")
            elif need.missing:
                total = len(region_points(self.spec, cell, need.region))
                lines.append(f"{where}: {total - len(need.missing)} of {total} points (run the sweep again to train "
                             "the rest)")
        return lines

    def outcomes(self) -> dict[CellConfig, pd.DataFrame]:
        """Per cell of the spec, the seed, rates, min loss and status of its points done."""
        return {cell: self.cell_rows(cell.cell_id)[OUTCOME_COLUMNS] for cell in self.spec.cells()}


def read_state(results: str | Path, sweep: str, spec: SweepSpec | None = None) -> SweepState:
    """A sweep's state, judged against `spec` (default: its kept spec; None when it kept none)."""
    state = SweepState(sweep, spec if spec is not None else kept_spec(results, sweep))
    for path in sorted(records_dir(results, sweep).glob("*.parquet")):
        rows, problem = read_records_file(path, sweep)
        if problem:
            state.damaged[path] = problem
        else:
            state.whole[path] = rows
    files = {}
    for path, rows in state.whole.items():
        files.setdefault(rows["cell_id"].iloc[0], []).append((path, rows))
    for cell_id, held in files.items():
        points = pd.concat([rows[POINT_COLUMNS].assign(beta=rows["beta"].astype("float64"), file=path.name)
                            for path, rows in held], ignore_index=True)
        twice = points[points.duplicated(POINT_COLUMNS, keep=False)]
        if len(twice):
            state.doubled[cell_id] = sorted(set(twice["file"]))
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
    """Every record analysis can use under `results` (or of one sweep), one row per point (README,
    "Reading a sweep"): the points of the sweep's spec (its cells, seeds and grid, and the extension
    points `grid.extend` added) in complete cells whose files can be trusted. Records kept from
    values since removed from the spec stay on disk but are left out; so are cells with points still
    to train, untrusted files or a point in two files, which `left_out` names with what to do."""
    return pd.concat([read_state(results, name).records() for name in _names(results, sweep)], ignore_index=True)


def left_out(results: str | Path = "results", sweep: str | None = None) -> list[str]:
    """One line per cell or file that `load_records` leaves out, saying why and what to do."""
    return [line for name in _names(results, sweep) for line in read_state(results, name).left_out()]


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
