"""Sweep specs (YAML): load, validate, and expand into cells.

    name: quick                  # the results folder: results/<name>/
    dataset: mnist               # mnist | fashion_mnist
    network:                     # a list in any field is an axis of cells
      activation: tanh           # linear | tanh | relu
      param: mupc                # mupc | sp
      algorithm: pc              # pc | bp
      width: 64
      depth: [2, 4, 8]           # H ≥ 1
      inference_steps: null      # T; null means T = depth
    training:
      batch_size: 64
      epochs: 0.25
      eval_every: 100
      seeds: [0, 1]
    grid:                        # every (seed, η, β) is a point of every cell
      eta: [0.5, 0.1, 0.05, 0.01]
      beta: [10, 1, 0.1]         # ignored by bp cells
      targets: full              # full | patch: the full grid only at each family's smallest size
                                 #   (the source), a patch around its optimum at the larger ones
      patch: 1                   # grid steps around the source's optimum (1: a 3 × 3 patch)
      extend: 0                  # values a cell may add beyond either end of the η or β grid
                                 #   while its optimum lies on the grid's edge
    curves_every: 10             # keep train_loss every k steps
    resources:                   # per Ray trial (a cell, or a shard of its points):
      cpu: 1                     #   CPUs; `run --cpus-per-trial` overrides
      gpu: 0                     #   GPU share, ≤ 1 (a fraction shares a GPU); `run --gpus-per-trial`
      points_per_trial: null     #   points a trial trains at most; null: sized from the cluster
                                 #   and each cell's cost; `run --points-per-trial` overrides

Errors name the field path (`network.depth[0]`) and what is allowed. A sweep grows: cell-axis
values, grid values and seeds may be added or removed between runs of one sweep, since a point's
result depends only on its cell and its (seed, η, β); the `SETTINGS` may not change, since they
change every point's result. Resources may differ between a laptop and a cluster.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from .cell import ACTIVATIONS, ALGORITHMS, PARAMS, CellConfig
from .checks import check_choice, check_distinct, check_int, check_nonnegative, check_positive, check_rates, check_seed
from .data import DATASETS
from .errors import InputError, SpecError

# Defaults are CellConfig's, so that a spec, `mupc-sweep train` and the Python API agree.
NETWORK_DEFAULTS = {k: getattr(CellConfig, k) for k in ("activation", "param", "algorithm", "inference_steps")}
TRAINING_DEFAULTS = {**{k: getattr(CellConfig, k) for k in ("batch_size", "epochs", "eval_every")}, "seeds": [0]}
TOP_FIELDS = {"name", "dataset", "network", "training", "grid", "curves_every", "resources"}
TARGETS = ("full", "patch")
SIZE_AXES = ("width", "depth")
# What changes every existing point's result: a sweep keeps these from its first run on.
SETTINGS = ("dataset", "training.batch_size", "training.epochs", "training.eval_every", "curves_every")

@dataclass(frozen=True)
class SweepSpec:
    name: str
    dataset: str
    network: dict[str, list]  # each field a list of values (the cell axes)
    training: dict[str, Any]
    etas: list[float]
    betas: list[float]
    seeds: list[int]
    curves_every: int
    cpu: float
    gpu: float
    points_per_trial: int | None = None
    targets: str = "full"  # or "patch" (README, "Transfer sweeps")
    patch: int = 1
    extend: int = 0

    @property
    def size_axis(self) -> str | None:
        """The size axis a transfer sweep varies: the one of width and depth with several values."""
        varied = [axis for axis in SIZE_AXES if len(self.network[axis]) > 1]
        return varied[0] if len(varied) == 1 else None

    def cells(self) -> list[CellConfig]:
        """The cells: the product of the network fields' values, in spec order."""
        keys = list(self.network)
        return [CellConfig(**dict(zip(keys, values)), **self.training)
                for values in itertools.product(*(self.network[k] for k in keys))]

    def points(self, algorithm: str) -> list[tuple[int, float, float]]:
        """(seed, η, β) of every point of a cell; β is NaN for bp."""
        betas = self.betas if algorithm == "pc" else [math.nan]
        return list(itertools.product(self.seeds, self.etas, betas))

    def to_raw(self) -> dict:
        """The spec in its YAML form, every network field a list; `load_spec` reads it back."""
        return dict(
            name=self.name, dataset=self.dataset, network=self.network,
            training={**self.training, "seeds": self.seeds},
            grid={"eta": self.etas, **({"beta": self.betas} if self.betas else {}), "targets": self.targets,
                  "patch": self.patch, "extend": self.extend},
            curves_every=self.curves_every,
            resources={"cpu": self.cpu, "gpu": self.gpu, "points_per_trial": self.points_per_trial},
        )

    def spec_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of what the spec trains: everything but the name and resources."""
        content = {k: v for k, v in self.to_raw().items() if k not in ("name", "resources")}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def settings(self) -> dict[str, Any]:
        """The `SETTINGS`, by their field paths."""
        raw = self.to_raw()
        return {path: raw[path.split(".")[0]][path.split(".")[1]] if "." in path else raw[path] for path in SETTINGS}


class _RepeatedKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int):
        super().__init__(f"key {key!r} is given twice (line {line}); keep one.")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`; explicit keys may override
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: SafeLoader's own error names it
                continue
            if repeated:
                raise _RepeatedKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_spec(spec: str | Path | dict | SweepSpec) -> SweepSpec:
    """A validated sweep spec from a YAML file's path, a mapping with the YAML's structure, or a
    `SweepSpec` (returned as it is). SpecError naming the field or the file."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, dict):
        return _from_mapping(spec)
    if not isinstance(spec, (str, Path)):
        raise SpecError(f"spec: must be a path to a YAML file, a mapping or a SweepSpec; got {type(spec).__name__}.")
    path = Path(spec)
    if path.is_dir():
        raise SpecError(f"{path} is a directory; give a spec file (YAML), e.g. sweeps/quick.yaml.")
    if not path.is_file():
        raise SpecError(f"spec file {path} does not exist.")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{path} cannot be read as a YAML spec: {error}.") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except _RepeatedKey as error:
        raise SpecError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML: {error}".replace("\n", " ")) from None
    return _from_mapping(raw, default_name=path.stem)


def _from_mapping(raw: Any, *, default_name: str = "sweep") -> SweepSpec:
    """Validate a spec given as a mapping (e.g. parsed YAML); SpecError naming the field."""
    try:
        return _parse(raw, default_name)
    except SpecError:
        raise
    except InputError as error:  # a shared check (`checks`): the same message, as a spec error
        raise SpecError(str(error)) from None


def _parse(raw: Any, default_name: str) -> SweepSpec:
    if not isinstance(raw, dict):
        raise SpecError("a spec must be a mapping with network, training and grid sections.")
    _unknown(raw, TOP_FIELDS, "")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\") or name.startswith("."):
        raise SpecError(f"name: must be a folder name (no slashes); got {name!r}.")
    dataset = raw.get("dataset", "mnist")
    check_choice("dataset", dataset, DATASETS)

    network_raw = _section(raw, "network")
    _unknown(network_raw, {"width", "depth", *NETWORK_DEFAULTS}, "network.")
    network = {}
    for key in ("activation", "param", "algorithm", "width", "depth", "inference_steps"):
        if key not in network_raw and key not in NETWORK_DEFAULTS:
            raise SpecError(f"network.{key}: required (an integer or a list of integers).")
        values = _as_list(network_raw.get(key, NETWORK_DEFAULTS.get(key)), f"network.{key}")
        for i, value in enumerate(values):
            where = f"network.{key}[{i}]" if isinstance(network_raw.get(key), list) else f"network.{key}"
            _check_network_value(key, value, where)
        check_distinct(f"network.{key}", values)
        network[key] = values

    training_raw = _section(raw, "training", required=False)
    _unknown(training_raw, set(TRAINING_DEFAULTS), "training.")
    training = {**TRAINING_DEFAULTS, **training_raw}
    for key in ("batch_size", "eval_every"):
        check_int(f"training.{key}", training[key], minimum=1)
    check_positive("training.epochs", training["epochs"])
    seeds = _as_list(training["seeds"], "training.seeds")
    for i, seed in enumerate(seeds):
        check_seed(f"training.seeds[{i}]", seed)
    check_distinct("training.seeds", seeds)

    grid = _section(raw, "grid")
    _unknown(grid, {"eta", "beta", "targets", "patch", "extend"}, "grid.")
    etas = _rates(grid, "eta", required=True)
    uses_beta = "pc" in network["algorithm"]
    betas = _rates(grid, "beta", required=uses_beta)
    targets, patch, extend = grid.get("targets", "full"), grid.get("patch", 1), grid.get("extend", 0)
    check_choice("grid.targets", targets, TARGETS)
    check_int("grid.patch", patch, minimum=1)
    check_int("grid.extend", extend, minimum=0)
    varied = [axis for axis in SIZE_AXES if len(network[axis]) > 1]
    if targets == "patch" and len(varied) != 1:
        raise SpecError("grid.targets: patch needs exactly one size axis with several values (network.width or "
                        f"network.depth) to find each family's smallest size; got {' and '.join(varied) or 'none'}.")

    curves_every = raw.get("curves_every", 10)
    check_int("curves_every", curves_every, minimum=1)
    resources = raw.get("resources", {}) or {}
    if not isinstance(resources, dict):
        raise SpecError(f"resources: must be a mapping like {{cpu: 1, gpu: 0.5}}; got {resources!r}.")
    _unknown(resources, {"cpu", "gpu", "points_per_trial"}, "resources.")
    cpu, gpu, per_trial = resources.get("cpu", 1), resources.get("gpu", 0), resources.get("points_per_trial")
    _check_resources(cpu, gpu)
    if per_trial is not None:
        check_int("resources.points_per_trial", per_trial, minimum=1)
    spec = SweepSpec(
        name=name, dataset=dataset, network=network,
        training={k: training[k] for k in ("batch_size", "epochs", "eval_every")},
        etas=etas, betas=betas, seeds=[int(s) for s in seeds], curves_every=int(curves_every),
        cpu=float(cpu), gpu=float(gpu), points_per_trial=per_trial, targets=targets, patch=patch, extend=extend,
    )
    ids = [cell.cell_id for cell in spec.cells()]
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise SpecError(f"network: two of its combinations give the same cell {twice} (inference_steps null means "
                        "T = depth, so null and that depth are one cell); keep one.")
    return spec


def with_resources(
    spec: SweepSpec, *, cpu: float | None = None, gpu: float | None = None, points_per_trial: int | None = None
) -> SweepSpec:
    """The spec with its per-trial resources overridden (`run_sweep`'s `cpus_per_trial`,
    `gpus_per_trial` and `points_per_trial`; they change no result); errors name those arguments."""
    names = ("resources.cpu" if cpu is None else "cpus_per_trial",
             "resources.gpu" if gpu is None else "gpus_per_trial")
    cpu, gpu = spec.cpu if cpu is None else cpu, spec.gpu if gpu is None else gpu
    try:
        _check_resources(cpu, gpu, names)
        if points_per_trial is not None:
            check_int("points_per_trial", points_per_trial, minimum=1)
    except InputError as error:
        raise SpecError(str(error)) from None
    per_trial = spec.points_per_trial if points_per_trial is None else points_per_trial
    return replace(spec, cpu=float(cpu), gpu=float(gpu), points_per_trial=per_trial)


def _check_resources(cpu: Any, gpu: Any, names: tuple[str, str] = ("resources.cpu", "resources.gpu")) -> None:
    for name, value in zip(names, (cpu, gpu)):
        check_nonnegative(name, value)
    if gpu > 1:
        raise SpecError(f"{names[1]}: a trial trains on one device, so at most 1 (a fraction shares a GPU); "
                        f"got {gpu!r}.")
    if cpu == 0 and gpu == 0:
        raise SpecError(f"{names[0]} and {names[1]}: a trial needs some cpu or gpu; got 0 and 0.")


def _section(raw: dict, key: str, required: bool = True) -> dict:
    if key not in raw:
        if required:
            raise SpecError(f"{key}: required section is missing.")
        return {}
    if not isinstance(raw[key], dict):
        raise SpecError(f"{key}: must be a mapping; got {raw[key]!r}.")
    return raw[key]


def _unknown(section: dict, allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(map(str, section)) - allowed)
    if unknown:
        raise SpecError(f"{prefix}{unknown[0]}: unknown field; allowed here: {', '.join(sorted(allowed))}.")


def _as_list(value: Any, where: str) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SpecError(f"{where}: must not be an empty list.")
    return values


def _check_network_value(key: str, value: Any, where: str) -> None:
    choices = {"activation": ACTIVATIONS, "param": PARAMS, "algorithm": ALGORITHMS}
    if key in choices:
        check_choice(where, value, choices[key])
    elif key in ("width", "depth"):
        check_int(where, value, minimum=1)
    elif value is not None:  # inference_steps; None means T = depth
        check_int(where, value, minimum=0)


def _rates(grid: dict, key: str, *, required: bool) -> list[float]:
    if key not in grid:
        if required:
            raise SpecError(f"grid.{key}: required (a list of positive learning rates).")
        return []
    values = _as_list(grid[key], f"grid.{key}")
    check_rates(f"grid.{key}", values)
    check_distinct(f"grid.{key}", values)
    return [float(v) for v in values]
