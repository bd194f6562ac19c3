"""A sweep's trials: each cell's points still to train, split into shards that keep every slot of
a cluster busy, and the wall time of running them (README, "Sweeps").

A cell's points are its (seed, η, β) triples, seed-major (`regions.region_points`), so that a
shard, a run of consecutive points, keeps the points of one seed together where its size allows.
Trials run longest first: with shards no larger than a fraction of the sweep's work per slot, the
last one to finish ends close to that average.
"""

from __future__ import annotations

import heapq
import math
import os
import shutil
import subprocess
from dataclasses import dataclass

import pandas as pd

from .cell import CellConfig
from .cost import point_flops
from .regions import Point
from .store import trial_stem

SHARDS_PER_SLOT = 4  # automatic shards: a trial takes at most the sweep's work per slot over this
MIN_TRIAL_SECONDS = 60.0  # nor shorter than this: a trial's start, data and compile take seconds
MIN_GPU_POINTS = 11  # nor, on a GPU, fewer points than this (a GPU vmaps a trial's points; see README)


@dataclass(frozen=True)
class Trial:
    """Points of one cell trained by one trial: (seed, η, β) each; `size` is the number every trial
    of this cell planned with it is padded to on a GPU, so that they share one compiled program."""

    cell: CellConfig
    points: tuple[Point, ...]
    size: int
    seconds: float  # estimated

    @property
    def stem(self) -> str:
        """The name of its records file and its failure note."""
        return trial_stem(self.cell.cell_id, self.points[0])


def split(points: list, n: int) -> list[list]:
    """`points` in `n` runs of consecutive points whose sizes differ by at most one."""
    size, extra = divmod(len(points), n)
    bounds = [i * size + min(i, extra) for i in range(n + 1)]
    return [points[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def shard_count(n_points: int, seconds: float, target: float, *, min_points: int) -> int:
    """How many shards a cell's `n_points` pending points become so that each takes about `target`
    seconds at most, with at least `min_points` points a shard; a count that divides the points
    evenly, if one is within twice that, so that every shard has the same size."""
    most = max(1, n_points // min_points)
    n = min(most, max(1, math.ceil(seconds / target)))
    return next((m for m in range(n, min(2 * n, most + 1)) if n_points % m == 0), n)


def plan_trials(
    pending: dict[CellConfig, list[Point]],
    point_seconds: dict[CellConfig, float],
    *,
    slots: int,
    points_per_trial: int | None,
    gpu: bool,
    overhead: dict[CellConfig, float] | None = None,
) -> list[Trial]:
    """The trials that train every pending point, longest first. With `points_per_trial` K, a cell's
    pending points make ⌈P / K⌉ balanced shards (a K above P: the cell unsharded); without it, shards
    are sized from the cluster's `slots` and each cell's estimated cost (`shard_count`). A trial's
    estimated seconds are its points' plus the cell's `overhead` (its start and compile)."""
    overhead = overhead or {}
    total = sum(len(p) * point_seconds[c] for c, p in pending.items())
    target = max(total / (SHARDS_PER_SLOT * slots), MIN_TRIAL_SECONDS) if slots > 1 else math.inf
    trials = []
    for cell, points in pending.items():
        if not points:
            continue
        if points_per_trial is not None:
            n = math.ceil(len(points) / points_per_trial)
        else:
            n = shard_count(len(points), len(points) * point_seconds[cell], target,
                            min_points=MIN_GPU_POINTS if gpu else 1)
        shards = split(points, n)
        size = max(len(s) for s in shards)
        trials += [Trial(cell, tuple(s), size, len(s) * point_seconds[cell] + overhead.get(cell, 0.0))
                   for s in shards]
    return sorted(trials, key=lambda t: -t.seconds)


def wall_time(seconds: list[float], slots: int) -> float:
    """When the last of these trials ends, started in this order on `slots` equal slots, each on the
    first slot free (what Ray Tune does with its queue)."""
    free = [0.0] * max(1, slots)
    for duration in seconds:
        heapq.heapreplace(free, free[0] + duration)
    return max(free)


def trial_table(trials: list[Trial]) -> pd.DataFrame:
    """One row per cell with trials: its pending points, its trials, the points and the estimated
    seconds of its largest trial, and the matrix-product TFLOP of all its trials."""
    rows = {}
    for t in trials:
        row = rows.setdefault(t.cell.cell_id, dict(cell_id=t.cell.cell_id, points=0, trials=0, points_per_trial=0,
                                                   s_per_trial=0.0, tflops=0.0))
        row["points"] += len(t.points)
        row["trials"] += 1
        row["points_per_trial"] = max(row["points_per_trial"], len(t.points))
        row["s_per_trial"] = max(row["s_per_trial"], t.seconds)
        row["tflops"] += len(t.points) * point_flops(t.cell) / 1e12
    return pd.DataFrame(list(rows.values()))


def local_memory(gpu: float) -> tuple[int, str] | None:
    """The memory a trial on this machine may use, and what it is: for GPU trials its share `gpu`
    of the first GPU's memory (as `nvidia-smi` reports it; None without one), for CPU trials the
    machine's memory (/proc/meminfo; None where there is none)."""
    if gpu > 0:
        if shutil.which("nvidia-smi") is None:
            return None
        listed = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=30).stdout.split()
        return (int(float(listed[0]) * 2**20 * min(gpu, 1.0)), f"{gpu:g} of this machine's GPU") if listed else None
    try:
        total = next(line for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        return None
    return int(total.split()[1]) * 1024, "this machine's memory"


def local_slots(cpu: float, gpu: float) -> int:
    """Trials this machine runs at once with Ray embedded: its CPUs over a trial's CPUs, or its
    GPUs (as `nvidia-smi -L` lists them) over a trial's GPU share."""
    if gpu > 0:
        if shutil.which("nvidia-smi") is None:
            return 0
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
        return int(sum(line.startswith("GPU ") for line in listed.splitlines()) / gpu)
    return int((os.cpu_count() or 1) / cpu)
