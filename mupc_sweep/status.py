"""A sweep's state as `mupc-sweep status` shows it: a row per cell, read from the records alone (no
JAX, no Ray), and its text."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .analysis import optimum, surfaces
from .errors import Error, ResultsError
from .regions import region_points
from .store import read_failure, read_state, spec_path, sweeps

STATUS_COLUMNS = ["sweep", "cell_id", "role", "complete", "points_done", "points_pending", "waits", "best_eta",
                  "best_beta", "best_loss", "grid_points_ok", "grid_points", "damaged_files", "doubled_files",
                  "failed", "outside_spec", "problem"]


def sweep_status(results: str | Path = "results", sweep: str | None = None) -> pd.DataFrame:
    """A row per cell of each sweep under `results` (or of one): its role (grid, source, patch, or
    `outside the spec` for a cell whose records the spec no longer names), whether it is complete,
    its points (seed, η, β) done and pending, whether a patch waits for its source, its best grid
    point (η, β) once complete (every seed ok, lowest seed-mean min loss) with its grid points ok,
    its untrusted records files ({name: why}), the files sharing a point, its failure note, and how
    many of its records lie outside the spec (removed seeds or rates: kept on disk, left out of
    analysis). A records file named after no cell of the spec that cannot be trusted is a row with
    `cell_id` None and `damaged_files` set; a sweep that cannot be judged (no kept spec, an
    unreadable one) is one row with `problem` set. ResultsError when there is no sweep."""
    results = Path(results)
    kept = {p.parent.name for p in results.glob("*/spec.yaml")} if results.is_dir() else set()
    names = sorted(kept | set(sweeps(results)))
    if sweep is not None:
        if sweep not in names:
            raise ResultsError(f"sweep: no sweep {sweep!r} under {results}; found: {', '.join(names) or 'none'}.")
        names = [sweep]
    if not names:
        raise ResultsError(f"results: no sweeps under {results}; run one with `mupc-sweep run SPEC`.")
    rows = []
    for name in names:
        if not spec_path(results, name).is_file():
            rows.append(_problem(name, "records but no spec.yaml (restore it, or run its spec again with --restart)"))
            continue
        try:
            state = read_state(results, name)
        except Error as error:
            rows.append(_problem(name, f"unreadable spec.yaml ({error})"))
            continue
        rows += _cell_rows(results, state)
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def _problem(name: str, problem: str) -> dict:
    return {column: None for column in STATUS_COLUMNS} | {"sweep": name, "problem": problem}


def _cell_rows(results: Path, state) -> list[dict]:
    rows = []
    spec = state.spec
    for cell, need in state.needs.items():
        done = state.cell_rows(cell.cell_id)
        inside = done[state.in_spec(done)] if len(done) else done
        wanted = len(region_points(spec, cell, need.region)) if need.region else 0
        damaged = {p.name: why for p, why in state.damaged_files(cell.cell_id).items()}
        row = dict(sweep=state.name, cell_id=cell.cell_id, role=need.role,
                   complete=need.complete and state.trusted(cell.cell_id),
                   points_done=wanted - len(need.missing) if need.region else len(inside),
                   points_pending=len(need.missing), waits=need.waits, outside_spec=len(done) - len(inside),
                   damaged_files=damaged, doubled_files=state.doubled.get(cell.cell_id, []),
                   failed=read_failure(results, state.name, cell.cell_id), problem=None)
        best = optimum(surfaces(inside), 0) if row["complete"] and len(inside) else None
        if best is not None:
            row |= dict(best_eta=best.eta, best_beta=best.beta, best_loss=best.loss, grid_points_ok=best.n_valid,
                        grid_points=best.n_points)
        elif row["complete"] and len(inside):
            row |= dict(grid_points_ok=0, grid_points=len(surfaces(inside)))
        rows.append(row)
    strays = {p.name: why for p, why in state.damaged_files(None).items()}
    if strays:
        rows.append(dict(sweep=state.name, cell_id=None, role=None, complete=None, points_done=0, points_pending=0,
                         waits=False, outside_spec=0, damaged_files=strays, doubled_files=[], failed=None,
                         problem=None))
    known = {cell.cell_id for cell in spec.cells()}
    for cell_id in sorted({t["cell_id"].iloc[0] for t in state.whole.values()} - known):
        n = len(state.cell_rows(cell_id))
        rows.append(dict(sweep=state.name, cell_id=cell_id, role="outside the spec", complete=None, points_done=0,
                         points_pending=0, waits=False, outside_spec=n, damaged_files={}, doubled_files=[],
                         failed=None, problem=None))
    return rows


def status_text(table: pd.DataFrame) -> str:
    """What `mupc-sweep status` prints: per sweep a summary line, then a line per cell."""
    lines = []
    for name, rows in table.groupby("sweep", sort=False):
        problem = rows["problem"].dropna()
        if len(problem):
            lines.append(f"{name}: {problem.iloc[0]}")
            continue
        cells = rows[rows["cell_id"].notna() & (rows["role"] != "outside the spec")]
        done, pending = int(cells["points_done"].sum()), int(cells["points_pending"].sum())
        outside = int(rows["outside_spec"].sum())
        patches = int((cells["role"] == "patch").sum())
        lines.append(f"{name}: {int(cells['complete'].sum())}/{len(cells)} cells done, {done}/{done + pending} "
                     f"points (seed, η, β) done, {pending} pending" + (f", {int(cells['waits'].sum())} patches waiting for their "
                                                          "sources" if cells["waits"].any() else "")
                     + (f"; {patches} cells are patches (transfer sweep)" if patches else "")
                     + (f"; {outside} records outside the spec (kept, not analysed)" if outside else ""))
        for row in rows.itertuples(index=False):
            if row.cell_id is None:
                lines += [f"  records file {file} {why}; it is no cell of the spec (the next run moves it to "
                          f"{name}/damaged/)" for file, why in row.damaged_files.items()]
            else:
                lines.append(f"  {row.cell_id}: {_cell_text(row)}")
    return "\n".join(lines)


def _cell_text(row) -> str:
    if row.role == "outside the spec":
        return f"outside the spec: {row.outside_spec} records kept"
    role = "" if row.role == "grid" else f"[{row.role}] "
    if row.complete and not row.damaged_files:
        if pd.isna(row.best_loss):
            return f"{role}no valid point (every grid point had a seed diverge or stop)"
        beta = "" if row.best_beta is None or pd.isna(row.best_beta) else f" β={row.best_beta:g}"
        return (f"{role}best η={row.best_eta:g}{beta} min loss {row.best_loss:.4g} ({int(row.grid_points_ok)}/"
                f"{int(row.grid_points)} grid points ok)")
    if row.waits:
        notes = ["waiting for its source"]
    elif row.points_pending:
        notes = [f"{row.points_done}/{row.points_done + row.points_pending} points done, {row.points_pending} pending"
                 if row.points_done else "pending"]
    else:
        notes = [f"{row.points_done} points done"]
    notes += [f"records file {file} {why} (the next run moves it aside and retrains its points)"
              for file, why in row.damaged_files.items()]
    if row.doubled_files:
        notes.append(f"a point is held in two records files ({', '.join(row.doubled_files)}): keep one of them, "
                     "move the other out of records/; left out of analysis until then")
    if row.failed:
        notes.append(f"failed: {row.failed} (a rerun retries it)")
    return role + "; ".join(notes)
