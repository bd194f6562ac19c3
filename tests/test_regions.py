"""Which points each cell trains, as a pure function of the spec and the records so far: the whole
grid, patches placed at the source's optimum and grown until their best is interior, and grids
extended while the optimum sits on their edge. Checked on synthetic loss surfaces with known optima."""

import math

import pandas as pd
import pytest

from mupc_sweep.regions import Lattice, Region, is_extension, needs, rate_key, region_points
from mupc_sweep.spec import load_spec

ETAS = [0.5, 0.1, 0.05, 0.01]
BETAS = [100, 10, 1, 0.1, 0.01]


def spec_of(depths=(2, 4, 8), targets="patch", patch=1, extend=0, seeds=(0, 1), etas=ETAS, betas=BETAS, **network):
    return load_spec({"name": "t", "network": {"width": 8, "depth": list(depths), **network},
                      "training": {"seeds": list(seeds)},
                      "grid": {"eta": etas, "beta": betas, "targets": targets, "patch": patch, "extend": extend}})


def bowl(eta_star, beta_star, fail=lambda eta, beta: False):
    """Records of a loss surface log10 loss = (log η − log η*)² + (log β − log β*)² − 2, seeds ±1 %;
    a point where `fail` holds diverged."""
    def records(points):
        rows = []
        for seed, eta, beta in points:
            du = math.log10(eta / eta_star)
            dv = 0.0 if beta is None else math.log10(beta / beta_star)
            diverged = fail(eta, beta)
            rows.append(dict(seed=seed, eta=eta, beta=beta, status="diverged" if diverged else "ok",
                             min_train_loss=math.nan if diverged else 10 ** (du * du + dv * dv - 2) * (1 + 0.01 * seed)))
        return pd.DataFrame(rows)
    return records


def train_until_done(spec, surfaces, rounds=20):
    """Run the sweep's stages on synthetic surfaces (one per cell depth): each round trains every
    point the cells need now. Returns the records per cell and the rounds it took."""
    done: dict = {}
    for round_ in range(rounds):
        wanted = needs(spec, done)
        todo = {cell: need.missing for cell, need in wanted.items() if need.missing}
        if not todo:
            return done, round_, wanted
        for cell, points in todo.items():
            done[cell] = pd.concat([done.get(cell), surfaces[cell.depth](points)], ignore_index=True)
    raise AssertionError("the stages did not end")


def rates(points):
    return sorted({(eta, beta) for _, eta, beta in points})


def test_lattices_continue_the_grids_last_ratio_and_keys_survive_rounding():
    lattice = Lattice.of([0.5, 0.1, 0.05, 0.01], 2)
    assert lattice.values == (0.0004, 0.002, 0.01, 0.05, 0.1, 0.5, 2.5, 12.5)  # ×0.2 below, ×5 above
    assert (lattice.first, lattice.last) == (2, 5)
    assert Lattice.of([3.0], 2).values == (3.0,)  # one value has no ratio to continue
    assert rate_key(0.1 + 0.2) == rate_key(0.3) and rate_key(float("nan")) is None and rate_key(None) is None
    assert lattice.index(0.5 * 5 * 5) == 7


def test_a_full_grid_sweep_needs_every_point_and_nothing_more_once_done():
    spec = spec_of(targets="full")
    first = needs(spec, {})
    assert all(n.role == "grid" and len(n.missing) == 2 * 4 * 5 for n in first.values())
    assert {(s, e, b) for s, e, b in first[spec.cells()[0]].missing} == set(spec.points("pc"))
    done, rounds, final = train_until_done(spec, {h: bowl(0.05, 1) for h in (2, 4, 8)})
    assert rounds == 1 and all(n.complete for n in final.values())


def test_patches_wait_for_their_source_then_sit_at_its_optimum():
    spec = spec_of(patch=1)
    cells = spec.cells()
    first = needs(spec, {})
    assert first[cells[0]].role == "source" and len(first[cells[0]].missing) == 2 * 4 * 5
    assert all(first[c].waits and not first[c].missing for c in cells[1:])
    source = {cells[0]: bowl(0.05, 1)(first[cells[0]].missing)}
    second = needs(spec, source)
    assert second[cells[0]].complete
    for cell in cells[1:]:  # 3 × 3 around (0.05, 1) in grid steps
        assert rates(second[cell].missing) == sorted((e, b) for e in (0.1, 0.05, 0.01) for b in (10, 1, 0.1))
        assert len(second[cell].missing) == 9 * 2


def test_a_patch_grows_towards_a_moved_optimum_until_its_best_is_interior():
    """The source's optimum is (0.05, 1); at H = 8 it moved to (0.5, 100), two steps up in η and β."""
    spec = spec_of(patch=1)
    surfaces = {2: bowl(0.05, 1), 4: bowl(0.05, 1), 8: bowl(0.5, 100)}
    done, rounds, final = train_until_done(spec, surfaces)
    h4, h8 = (cell for cell in spec.cells() if cell.depth in (4, 8))
    assert rates(region_points(spec, h4, final[h4].region)) == sorted(
        (e, b) for e in (0.1, 0.05, 0.01) for b in (10, 1, 0.1))  # interior from the start: never grew
    grown = rates(region_points(spec, h8, final[h8].region))
    assert (0.5, 100) in grown  # reached the moved optimum, at the grid's corner, where growth stops
    assert {e for e, _ in grown} == {0.5, 0.1, 0.05, 0.01} and {b for _, b in grown} == {100, 10, 1, 0.1}
    measured = done[h8].groupby(["eta", "beta"])["min_train_loss"].mean()
    assert measured.idxmin() == (0.5, 100)
    assert rounds == 3  # the source, the first patches, one growth step up in both η and β


def test_growth_stops_where_points_fail_and_the_grid_extends_only_by_its_budget():
    """The source's optimum lies beyond the grid's largest η (1.0 with a top of 0.5); η ≥ 2.5 diverges."""
    spec = spec_of(depths=(2,), targets="full", extend=2)
    (cell,) = spec.cells()
    surface = bowl(1.0, 1, fail=lambda eta, beta: eta >= 2.5)
    done, rounds, final = train_until_done(spec, {2: surface})
    lattice_etas = {e for _, e, _ in region_points(spec, cell, final[cell].region)}
    assert lattice_etas == {2.5, 0.5, 0.1, 0.05, 0.01}  # one extension up (×5): it diverged, so no second
    assert set(done[cell]["eta"]) == lattice_etas and len(done[cell]) == 2 * 5 * 5
    assert is_extension(spec, 2.5, 1.0) and not is_extension(spec, 0.5, 1.0)
    assert rounds == 2
    no_budget = spec_of(depths=(2,), targets="full", extend=0)
    _, rounds, _ = train_until_done(no_budget, {2: surface})
    assert rounds == 1


def test_a_source_whose_points_all_failed_places_no_patch():
    spec = spec_of(depths=(2, 4))
    source, patch = spec.cells()
    first = needs(spec, {})
    done = {source: bowl(0.05, 1, fail=lambda eta, beta: True)(first[source].missing)}
    assert needs(spec, done)[patch].region is None and needs(spec, done)[patch].complete


def test_bp_cells_have_a_one_dimensional_lattice_and_families_follow_every_other_field():
    spec = spec_of(depths=(2, 4), algorithm=["pc", "bp"])
    wanted = needs(spec, {})
    roles = {(c.algorithm, c.depth): n.role for c, n in wanted.items()}
    assert roles == {("pc", 2): "source", ("pc", 4): "patch", ("bp", 2): "source", ("bp", 4): "patch"}
    bp_source = next(c for c in spec.cells() if c.algorithm == "bp" and c.depth == 2)
    assert {b for _, _, b in wanted[bp_source].missing} == {None} and len(wanted[bp_source].missing) == 2 * 4
    done = {bp_source: bowl(0.1, None)(wanted[bp_source].missing)}
    bp_patch = next(c for c in spec.cells() if c.algorithm == "bp" and c.depth == 4)
    assert rates(needs(spec, done)[bp_patch].missing) == [(0.05, None), (0.1, None), (0.5, None)]


def test_records_outside_the_spec_are_ignored_and_a_wider_patch_is_asked_for():
    spec = spec_of(depths=(2, 4), patch=2)
    source, patch = spec.cells()
    extra = bowl(0.05, 1)([(7, 0.05, 1.0), (0, 0.3, 1.0)])  # a removed seed and a removed η
    done = {source: pd.concat([bowl(0.05, 1)(needs(spec, {})[source].missing), extra])}
    assert needs(spec, done)[source].complete
    assert len(rates(needs(spec, done)[patch].missing)) == 4 * 5  # ±2 steps: all of η, all of β


def test_the_same_records_always_give_the_same_needs():
    spec = spec_of(extend=1)
    surfaces = {2: bowl(0.5, 100), 4: bowl(0.5, 0.01), 8: bowl(0.01, 1)}
    a, _, final_a = train_until_done(spec, surfaces)
    shuffled = {cell: rows.sample(frac=1, random_state=0) for cell, rows in a.items()}
    final_b = needs(spec, shuffled)
    assert {c: n.region for c, n in final_a.items()} == {c: n.region for c, n in final_b.items()}
    assert all(n.complete for n in final_b.values())


def test_regions_grow_on_the_sides_where_the_best_lies():
    lattice = Lattice.of([1.0, 2.0, 4.0, 8.0], 0)
    region = Region((1, 2), (1, 2))
    assert region.grown((2, 1), (lattice, lattice)) == Region((1, 3), (0, 2))
    assert region.grown((1, 2), (lattice, lattice)) == Region((0, 2), (1, 3))
    assert Region((0, 3), (0, 3)).grown((0, 3), (lattice, lattice)) == Region((0, 3), (0, 3))  # the lattice's end
    assert Region((1, 2), (0, 0)).grown((1, 0), (lattice, None)) == Region((0, 2), (0, 0))  # bp: no β lattice
