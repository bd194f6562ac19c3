"""Which points each cell of a sweep trains, as a pure function of the spec and the records so far
(README, "Sweeps that grow" and "Transfer sweeps").

A cell trains a *region*: a rectangle of its rate lattice (η values × β values) for every seed.
The lattice of a rate is the spec's grid of it, ascending, with `grid.extend` values beyond each end
that continue the grid's last ratio. A cell's first region is

- the whole grid (`grid.targets: full`, and the *source*, the smallest size of each family, of a
  transfer sweep);
- a *patch* at the larger sizes of a transfer sweep (`grid.targets: patch`): the grid points within
  `grid.patch` steps of the source's seed-mean optimum, once the source is complete.

Then, whenever every point of a region has a record, the region grows one step on each side where
its seed-mean best point lies on that side and the lattice continues: within the grid (a patch
growing towards a moved optimum), and beyond it into extension values (at most `grid.extend` each
way). A region whose best is interior, or at the lattice's end, is final. A point where a seed
failed is never the best, so failures at an edge stop growth that way.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .cell import CellConfig
from .spec import SweepSpec

Point = tuple[int, float, float | None]  # (seed, η, β); β None for bp


def rate_key(value: float | None) -> float | None:
    """A rate as a comparable key: rounded to 12 significant digits, so that an extension value
    computed twice, or read back from Parquet, is the same key; None (bp's β) stays None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return float(f"{float(value):.12g}")


@dataclass(frozen=True)
class Lattice:
    """The values one rate of a cell may take, ascending: the grid's at `first`..`last`, extension
    values beyond them."""

    values: tuple[float, ...]
    first: int
    last: int

    @classmethod
    def of(cls, grid: list[float], extend: int) -> Lattice:
        """The grid with `extend` values beyond each end, continuing its last ratio (none for a
        one-value grid, which has no ratio)."""
        grid = sorted(rate_key(v) for v in grid)
        extend = extend if len(grid) > 1 else 0
        low, high = grid[0] / grid[1] if extend else 1.0, grid[-1] / grid[-2] if extend else 1.0
        below = [rate_key(grid[0] * low**m) for m in range(extend, 0, -1)]
        above = [rate_key(grid[-1] * high**m) for m in range(1, extend + 1)]
        return cls(tuple(below + grid + above), len(below), len(below) + len(grid) - 1)

    def index(self, value: float) -> int | None:
        key = rate_key(value)
        return self.values.index(key) if key in self.values else None


@dataclass(frozen=True)
class Region:
    """A rectangle of a cell's lattices, inclusive index bounds; β bounds (0, 0) for bp."""

    eta: tuple[int, int]
    beta: tuple[int, int]

    def grown(self, best: tuple[int, int], lattices: tuple[Lattice, Lattice | None]) -> Region:
        """One step further on each side where `best` (lattice indices) lies on that side and the
        lattice continues."""
        bounds = []
        for (lo, hi), at, lattice in zip((self.eta, self.beta), best, lattices):
            n = len(lattice.values) if lattice is not None else 1
            bounds.append((lo - (at == lo and lo > 0), hi + (at == hi and hi < n - 1)))
        return Region(*bounds)


@dataclass(frozen=True)
class CellNeed:
    """What a cell needs now: `role` (grid, source or patch), its region so far, the points of it
    without a record, and whether it `waits` for its source before its patch can be placed."""

    cell: CellConfig
    role: str
    region: Region | None
    missing: list[Point]
    waits: bool

    @property
    def complete(self) -> bool:
        return not self.waits and not self.missing


def lattices(spec: SweepSpec, cell: CellConfig) -> tuple[Lattice, Lattice | None]:
    """The η and β lattices of a cell (no β lattice for bp)."""
    return Lattice.of(spec.etas, spec.extend), Lattice.of(spec.betas, spec.extend) if cell.algorithm == "pc" else None


def region_points(spec: SweepSpec, cell: CellConfig, region: Region) -> list[Point]:
    """Every (seed, η, β) of a region, seed-major, then η and β in the spec's order of the grid
    (ascending for extension values)."""
    eta_lattice, beta_lattice = lattices(spec, cell)
    etas = _in_order(eta_lattice, region.eta, spec.etas)
    betas = [None] if beta_lattice is None else _in_order(beta_lattice, region.beta, spec.betas)
    return list(itertools.product(spec.seeds, etas, betas))


def _in_order(lattice: Lattice, bounds: tuple[int, int], grid: list[float]) -> list[float]:
    values = lattice.values[bounds[0]: bounds[1] + 1]
    order = {rate_key(v): i for i, v in enumerate(grid)}
    return sorted(values, key=lambda v: (order.get(v, math.inf), v))


def is_extension(spec: SweepSpec, eta: float, beta: float | None) -> bool:
    """Whether a point's rates lie beyond the spec's grid (added by `grid.extend`)."""
    return rate_key(eta) not in {rate_key(e) for e in spec.etas} or (
        beta is not None and rate_key(beta) not in {rate_key(b) for b in spec.betas})


def needs(spec: SweepSpec, done: dict[CellConfig, pd.DataFrame]) -> dict[CellConfig, CellNeed]:
    """What every cell of `spec` needs, given each cell's records so far (`done`: at least seed, eta,
    beta, min_train_loss and status; a missing cell has none). Pure: the same records always give the
    same answer, so a killed sweep resumes at the stage it had reached."""
    sources = _sources(spec)
    out: dict[CellConfig, CellNeed] = {}
    for cell in spec.cells():  # the grid cells and the sources
        if _family(spec, cell) is None or sources[_family(spec, cell)] == cell:
            out[cell] = _grow(spec, cell, "source" if sources else "grid", grid_region(spec, cell), _keyed(done.get(cell)))
    for cell in spec.cells():  # the patches, each placed at its source's optimum once the source is done
        if cell in out:
            continue
        source = out[sources[_family(spec, cell)]]
        best = _best(spec, source.cell, source.region, _keyed(done.get(source.cell))) if source.complete else None
        if best is None:  # the source is not done, or none of its points trained ok
            out[cell] = CellNeed(cell, "patch", None, [], waits=not source.complete)
            continue
        k, (eta_lattice, beta_lattice) = spec.patch, lattices(spec, cell)
        patch = Region((max(best[0] - k, eta_lattice.first), min(best[0] + k, eta_lattice.last)),
                       (max(best[1] - k, beta_lattice.first), min(best[1] + k, beta_lattice.last))
                       if beta_lattice else (0, 0))
        out[cell] = _grow(spec, cell, "patch", patch, _keyed(done.get(cell)))
    return {cell: out[cell] for cell in spec.cells()}


def grid_region(spec: SweepSpec, cell: CellConfig) -> Region:
    """The region of the spec's whole grid."""
    eta_lattice, beta_lattice = lattices(spec, cell)
    return Region((eta_lattice.first, eta_lattice.last), (beta_lattice.first, beta_lattice.last) if beta_lattice
                  else (0, 0))


def _grow(spec: SweepSpec, cell: CellConfig, role: str, region: Region, table: pd.DataFrame) -> CellNeed:
    """Grow `region` while its points all have records and its best lies on a side that can grow."""
    have = set(zip(table["seed"], table["eta"], table["beta"]))
    while True:
        missing = [p for p in region_points(spec, cell, region) if _key(p) not in have]
        if missing:
            return CellNeed(cell, role, region, missing, waits=False)
        best = _best(spec, cell, region, table)
        grown = region if best is None else region.grown(best, lattices(spec, cell))
        if grown == region:
            return CellNeed(cell, role, region, [], waits=False)
        region = grown


def _best(spec: SweepSpec, cell: CellConfig, region: Region, table: pd.DataFrame) -> tuple[int, int] | None:
    """Lattice indices of the region's seed-mean best point over the spec's seeds, every seed ok;
    None if no point is."""
    eta_lattice, beta_lattice = lattices(spec, cell)
    points = {(e, b) for _, e, b in region_points(spec, cell, region)}
    rows = table[table["seed"].isin(spec.seeds)]
    rows = rows[[(e, b) in points for e, b in zip(rows["eta"], rows["beta"])]]
    if rows.empty:
        return None
    by_point = rows.groupby(["eta", "beta"], dropna=False).agg(
        loss=("min_train_loss", "mean"), ok=("status", lambda s: bool((s == "ok").all())))
    valid = by_point[by_point["ok"] & np.isfinite(by_point["loss"])]
    if valid.empty:
        return None
    eta, beta = valid["loss"].idxmin()
    beta = None if beta is None or (isinstance(beta, float) and math.isnan(beta)) else beta
    return eta_lattice.index(eta), 0 if beta_lattice is None else beta_lattice.index(beta)


def _keyed(records: pd.DataFrame | None) -> pd.DataFrame:
    """A cell's records with rates as `rate_key`s (β None for bp) and seeds as ints."""
    if records is None or records.empty:
        return pd.DataFrame({"seed": [], "eta": [], "beta": [], "min_train_loss": [], "status": []})
    return pd.DataFrame({
        "seed": records["seed"].astype(int).to_numpy(),
        "eta": [rate_key(v) for v in records["eta"]],
        "beta": pd.Series([rate_key(v) for v in records["beta"].astype(object)], dtype=object).to_numpy(),
        "min_train_loss": records["min_train_loss"].astype(float).to_numpy(),
        "status": records["status"].to_numpy(),
    })


def _key(point: Point) -> Point:
    seed, eta, beta = point
    return int(seed), rate_key(eta), rate_key(beta)


def _family(spec: SweepSpec, cell: CellConfig) -> tuple | None:
    """A transfer sweep's family of a cell: every field but its size, T = H counting as one value
    of T; None in a full-grid sweep."""
    if spec.targets != "patch":
        return None
    fields = {**cell.__dict__, spec.size_axis: None}
    if cell.inference_steps == cell.depth and None in spec.network["inference_steps"]:
        fields["inference_steps"] = "H"
    return tuple(sorted(fields.items()))


def _sources(spec: SweepSpec) -> dict[tuple, CellConfig]:
    """Each family's source: its smallest size."""
    sources: dict[tuple, CellConfig] = {}
    if spec.targets != "patch":
        return sources
    for cell in spec.cells():
        family = _family(spec, cell)
        if family not in sources or getattr(cell, spec.size_axis) < getattr(sources[family], spec.size_axis):
            sources[family] = cell
    return sources
