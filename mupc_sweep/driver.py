"""Running a sweep (README, "Sweeps"): `run_sweep`, the one driver, and `plan_sweep`, its dry run.

The driver checks everything it is given, takes the sweep's lock, and only then starts Ray. Under the
lock it reads the records (the one source of truth), asks `regions.needs` which points every cell
needs, plans them into trials (`shards.plan_trials`) and hands them to an executor: Ray Tune
(`cluster.RayCluster`, the default) or this process (`InProcess`). As trials report, it writes their
records and asks again, so a transfer sweep's patches start as soon as their source is done and a
region grows as soon as its results are in. Nothing here imports JAX or Ray.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd

from .cell import CellConfig
from .cost import N_TRAIN, STARTUP_S, point_seconds, trial_bytes, trial_overhead
from .data import Dataset, load_dataset
from .errors import InputError
from .lock import DriverLock
from .regions import CellNeed, Point, grid_region, lattices, needs, rate_key, region_points
from .shards import Trial, local_memory, local_slots, plan_trials, trial_table, wall_time
from .spec import SweepSpec, load_spec, with_resources
from .store import (
    OUTCOME_COLUMNS,
    check_growable,
    clear_failure,
    prepare,
    read_state,
    write_cell,
    write_curves,
    write_failure,
)

MAX_RETRIES = 2  # a trial that fails (a lost node, a crashed worker) is tried this many times more


@dataclass
class SweepEvents:
    """What a running sweep tells whoever watches it; every callback is optional."""

    planned: Callable[[list[Trial]], None] | None = None  # trials newly planned
    progress: Callable[[str, float], None] | None = None  # trial stem, fraction of that trial done
    done: Callable[[str, pd.DataFrame, int], None] | None = None  # stem, its records (written), programs compiled
    retry: Callable[[str, str], None] | None = None  # stem, the error that is being retried
    failed: Callable[[str, str], None] | None = None  # stem, the error after the last retry


class SweepRun:
    """A sweep being run, on the driver: the points done, in flight and failed, and what to train next.

    Executors call `ready` for trials to start (it plans the points every cell needs that are neither
    done nor in flight), then `finish` or `fail` for each, and `progress`/`retry` as they go; the sweep
    is over when `ready` is empty while nothing is in flight.
    """

    def __init__(self, spec: SweepSpec, results: Path, done: dict[CellConfig, pd.DataFrame], slots: int,
                 events: SweepEvents | None = None) -> None:
        self.spec, self.results, self.slots = spec, Path(results), slots
        self.events = events or SweepEvents()
        self.done = {cell: done.get(cell, pd.DataFrame(columns=OUTCOME_COLUMNS)) for cell in spec.cells()}
        self.in_flight: dict[str, Trial] = {}
        self.failed: dict[str, str] = {}  # trial stem -> error
        self._busy: set[tuple[str, Point]] = set()  # (cell id, point) in flight or failed in this run
        self.trained = 0
        self.compiles = 0

    @property
    def idle(self) -> bool:
        return not self.in_flight

    def ready(self) -> list[Trial]:
        """Trials for every point the cells need now that is neither done nor in flight nor failed in
        this run; they count as in flight from here on."""
        pending = {}
        for cell, need in needs(self.spec, self.done).items():
            points = [p for p in need.missing if (cell.cell_id, _key(p)) not in self._busy]
            if points:
                pending[cell] = points
        trials = plan(self.spec, pending, self.slots)
        for trial in trials:
            self.in_flight[trial.stem] = trial
            self._busy |= {(trial.cell.cell_id, _key(p)) for p in trial.points}
        if trials and self.events.planned:
            self.events.planned(trials)
        return trials

    def progress(self, stem: str, fraction: float) -> None:
        if self.events.progress and stem in self.in_flight:
            self.events.progress(stem, fraction)

    def retry(self, stem: str, error: str) -> None:
        if self.events.retry:
            self.events.retry(stem, error)

    def finish(self, stem: str, records: pd.DataFrame, curves: pd.DataFrame, compiles: int) -> None:
        """Write a finished trial's curves, then its records (which mark its points done); a trial
        that reports again after a retry is not written twice."""
        trial = self.in_flight.pop(stem, None)
        if trial is None:
            return
        cell_id = trial.cell.cell_id
        write_curves(self.results, self.spec.name, cell_id, curves, stem=stem)
        write_cell(self.results, self.spec.name, cell_id, records, stem=stem)
        clear_failure(self.results, self.spec.name, stem)
        self.done[trial.cell] = pd.concat([self.done[trial.cell], records[OUTCOME_COLUMNS]], ignore_index=True)
        self._busy -= {(cell_id, _key(p)) for p in trial.points}
        self.trained += len(records)
        self.compiles += compiles
        if self.events.done:
            self.events.done(stem, records, compiles)

    def fail(self, stem: str, error: str) -> None:
        """Note a trial that failed after its retries; its points are not planned again in this run."""
        if self.in_flight.pop(stem, None) is None:
            return
        self.failed[stem] = error
        write_failure(self.results, self.spec.name, stem, error)
        if self.events.failed:
            self.events.failed(stem, error)


def _key(point: Point) -> Point:
    seed, eta, beta = point
    return int(seed), rate_key(eta), rate_key(beta)


def plan(spec: SweepSpec, pending: dict[CellConfig, list[Point]], slots: int, *, sharded: bool = True) -> list[Trial]:
    """The trials that train `pending` on `slots` trial slots, longest first: shards as
    `spec.points_per_trial` says or sized automatically; with `sharded` False one trial per cell."""
    device = "gpu" if spec.gpu > 0 else "cpu"
    return plan_trials(pending, {c: point_seconds(c, device) for c in pending}, slots=slots,
                       points_per_trial=spec.points_per_trial if sharded else 10**9, gpu=spec.gpu > 0,
                       overhead={c: trial_overhead(c, device) for c in pending})


class Executor(Protocol):
    """Where trials run: `driver.InProcess` or `cluster.RayCluster`."""

    def check_reachable(self) -> None: ...
    def start(self, spec: SweepSpec) -> tuple[str, str | None]: ...  # (description, warning)
    def slots(self, spec: SweepSpec) -> int: ...
    def run(self, spec: SweepSpec, data: Dataset, run: SweepRun) -> None: ...
    def stop(self) -> None: ...


class InProcess:
    """Trains the trials one after another in this process, without Ray: for a notebook, a debugger
    or tests. Failures are retried `MAX_RETRIES` times, as on a cluster; Ctrl-C stops after the trial
    in hand, keeping every finished one."""

    def check_reachable(self) -> None:
        pass

    def start(self, spec: SweepSpec) -> tuple[str, str | None]:
        return "this process (no Ray)", None

    def slots(self, spec: SweepSpec) -> int:
        return 1

    def run(self, spec: SweepSpec, data: Dataset, run: SweepRun) -> None:
        from .trial import run_trial

        queue = deque(run.ready())
        try:
            while queue:
                trial = queue.popleft()
                for attempt in range(MAX_RETRIES + 1):
                    try:
                        outcome = run_trial(spec, trial, data, lambda f, s=trial.stem: run.progress(s, f))
                    except Exception as error:  # a trial's failure is data: noted, retried, the sweep goes on
                        message = f"{type(error).__name__}: {error}".splitlines()[0]
                        if attempt == MAX_RETRIES:
                            run.fail(trial.stem, message)
                        else:
                            run.retry(trial.stem, message)
                        continue
                    run.finish(trial.stem, *outcome)
                    break
                queue.extend(run.ready())
        except KeyboardInterrupt:
            return

    def stop(self) -> None:
        pass


@dataclass
class SweepOutcome:
    """What `run_sweep` did: the sweep's records of complete cells (all of them, not only this run's),
    the points this run trained, the trials that failed after their retries, and a line per cell
    or file that analysis leaves out, with why and what to do (`store.SweepState.left_out`)."""

    sweep: str
    results: Path
    records: pd.DataFrame
    trained: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)
    compiles: int = 0
    wall_s: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.left_out

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{len(self.left_out)} cells or files left out"
        failed = f", {len(self.failed)} trials failed" if self.failed else ""
        return (f"SweepOutcome({self.sweep}: {state}, {len(self.records)} records, {self.trained} points trained "
                f"in {self.wall_s:.1f} s{failed})")


def run_sweep(
    spec: str | Path | dict | SweepSpec,
    *,
    results: str | Path = "results",
    address: str | None = None,
    points_per_trial: int | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    restart: bool = False,
    progress: bool = True,
    data_dir: str | Path | None = None,
    executor: Executor | None = None,
) -> SweepOutcome:
    """Train every point the sweep needs that has no record yet (README, "Sweeps"), and return what
    was done. `spec`: a YAML path, a mapping of the YAML's structure, or a `SweepSpec`. `address`: a
    Ray cluster to join (default $RAY_ADDRESS, else Ray embedded on this machine's loopback);
    `executor`: `InProcess()` to train here without Ray. `points_per_trial`, `cpus_per_trial` and
    `gpus_per_trial` override the spec's resources. `restart` deletes the sweep's records first.
    `progress` prints a progress bar (on a terminal) and a line per trial.

    Bad input raises InputError naming the argument or spec field before anything is written; a
    sweep already run by another live driver raises `lock.SweepLocked`; a cluster that cannot be
    reached or cannot fit a trial, ClusterError. A trial that fails is retried, then noted.
    """
    from .console import SweepProgress

    start = time.perf_counter()
    spec = with_resources(load_spec(spec), cpu=cpus_per_trial, gpu=gpus_per_trial, points_per_trial=points_per_trial)
    results = _results_dir(results)
    check_growable(spec, results, restart=restart)
    data = load_dataset(spec.dataset, data_dir)
    for cell in spec.cells():
        cell.check_steps(len(data.x_train))
    if executor is None:
        from .cluster import RayCluster

        executor = RayCluster(address)
    if getattr(executor, "address", None) is None:  # trials run on this machine: they must fit it
        for problem in memory_problems(spec, local_memory(spec.gpu)):
            raise InputError(problem)
    executor.check_reachable()
    shown = SweepProgress(enabled=progress)
    with DriverLock(results, spec.name):  # before Ray starts: a second driver is refused at once
        done = {} if restart else read_state(results, spec.name, spec).outcomes()
        if not any(need.missing or need.waits for need in needs(spec, done).values()):
            prepare(spec, results, restart=False)  # the kept spec is this run's: analysis follows it
            shown.line(f"{spec.name}: all {len(spec.cells())} cells done -> {results / spec.name}")
            return _outcome(spec, results, start)
        description, warning = executor.start(spec)
        try:
            prepare(spec, results, restart=restart)
            run = SweepRun(spec, results, read_state(results, spec.name, spec).outcomes(), executor.slots(spec),
                           shown.events())
            shown.header(spec, run, description, warning)
            executor.run(spec, data, run)
            shown.close(run)
        finally:
            executor.stop()
    return _outcome(spec, results, start, run)


def memory_problems(spec: SweepSpec, memory: tuple[int, str] | None) -> list[str]:
    """A line per cell whose trial cannot fit `memory` (bytes, and what they are; None: unknown),
    by `cost.trial_bytes`."""
    if memory is None:
        return []
    available, what = memory
    return [f"network: a trial of cell {cell.cell_id} needs about {_bytes(trial_bytes(cell))} (the dataset and one "
            f"point), more than {what} ({_bytes(available)}); lower network.width or network.depth, or run where it "
            "fits" for cell in spec.cells() if trial_bytes(cell) > available]


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def _results_dir(results: str | Path) -> Path:
    results = Path(results)
    if results.exists() and not results.is_dir():
        raise InputError(f"results: {results} is a file, not a results directory.")
    return results


def _outcome(spec: SweepSpec, results: Path, start: float, run: SweepRun | None = None) -> SweepOutcome:
    state = read_state(results, spec.name, spec)
    return SweepOutcome(
        sweep=spec.name, results=results, records=state.records(), trained=run.trained if run else 0,
        failed=dict(run.failed) if run else {}, left_out=state.left_out(), compiles=run.compiles if run else 0,
        wall_s=time.perf_counter() - start)


def plan_sweep(spec: str | Path | dict | SweepSpec, *, results: str | Path = "results", slots: int | None = None,
               points_per_trial: int | None = None, cpus_per_trial: float | None = None,
               gpus_per_trial: float | None = None, restart: bool = False) -> pd.DataFrame:
    """What `run_sweep` would train, without training or writing anything (`run --dry-run`): a row
    per cell with its role (grid, source or patch), the points to train now, their trials, points and
    estimated seconds per trial, and TFLOP; for a transfer sweep's patches, the least and most points
    later stages may train. `attrs` hold the estimated wall times on `slots` trial slots (default:
    this machine's), at the rates in benchmarks/RESULTS.md, start-up and compiles included
    (`cost.STARTUP_S`, `cost.trial_overhead`): `wall_s` (now, then the least later), `wall_most_s`,
    `unsharded_s` (one trial per cell), `full_grid_s` (every cell on the full grid);
    `memory_problems`, the cells whose trials cannot fit this machine (`run` refuses them)."""
    from .checks import check_int

    spec = with_resources(load_spec(spec), cpu=cpus_per_trial, gpu=gpus_per_trial, points_per_trial=points_per_trial)
    results = _results_dir(results)
    if slots is not None:
        check_int("slots", slots, minimum=1)
    for cell in spec.cells():
        cell.check_steps(N_TRAIN)
    check_growable(spec, results, restart=restart)
    planned_here = slots is None
    slots = slots or local_slots(spec.cpu, spec.gpu) or 1
    done = {} if restart else read_state(results, spec.name, spec).outcomes()
    cell_needs = needs(spec, done)
    now = plan(spec, {c: n.missing for c, n in cell_needs.items() if n.missing}, slots)
    table = trial_table(now).set_index("cell_id") if now else pd.DataFrame()
    rows, least_later, most_later = [], {}, {}
    for cell, need in cell_needs.items():
        least, most = _later_points(spec, cell, need)
        if least:
            least_later[cell] = least
        if most:
            most_later[cell] = most
        row = table.loc[cell.cell_id].to_dict() if cell.cell_id in table.index else dict(
            points=0, trials=0, points_per_trial=0, s_per_trial=0.0, tflops=0.0)
        rows.append(dict(cell_id=cell.cell_id, role=need.role, **row, later_least=least, later_most=most))
    out = pd.DataFrame(rows).astype({c: int for c in ("points", "trials", "points_per_trial", "later_least",
                                                        "later_most")})

    def wall(trials: list[Trial]) -> float:
        return wall_time([t.seconds for t in trials], slots)

    later_least, later_most = (plan(spec, {c: [(0, 0.0, 0.0)] * n for c, n in counts.items()}, slots)
                               for counts in (least_later, most_later))
    whole = plan(spec, {c: n.missing for c, n in cell_needs.items() if n.missing}, slots, sharded=False)
    full = plan(spec, {c: region_points(spec, c, grid_region(spec, c)) for c in spec.cells()}, slots)
    out.attrs = dict(
        slots=slots, device="GPU" if spec.gpu > 0 else "CPU",
        memory_problems=memory_problems(spec, local_memory(spec.gpu)) if planned_here else [],
        wall_s=STARTUP_S + wall(now) + wall(later_least), wall_most_s=STARTUP_S + wall(now) + wall(later_most),
        unsharded_s=STARTUP_S + wall(whole), full_grid_s=STARTUP_S + wall(full),
    )
    return out


def _later_points(spec: SweepSpec, cell: CellConfig, need: CellNeed) -> tuple[int, int]:
    """The least and most points a cell may still train after its points needed now: for a patch
    waiting on its source, its first patch (least) or its whole lattice (most); for a region that
    may still grow, nothing more (least) or the rest of its lattice (most)."""
    eta, beta = lattices(spec, cell)
    lattice_points = len(eta.values) * (len(beta.values) if beta else 1) * len(spec.seeds)
    if need.waits:
        side = 2 * spec.patch + 1
        grid_eta, grid_beta = len(spec.etas), len(spec.betas) if beta else 1
        return min(side, grid_eta) * (min(side, grid_beta) if beta else 1) * len(spec.seeds), lattice_points
    grows = spec.targets == "patch" or spec.extend > 0
    if not grows:
        return 0, 0
    region = len(region_points(spec, cell, need.region)) if need.region else 0
    return 0, max(lattice_points - region, 0)
