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
    curves_every: 10             # keep train_loss every k steps
    resources: {cpu: 1, gpu: 0}  # per cell (Ray trial); gpu ≤ 1, a fraction shares a GPU;
                                 # `run --cpus-per-cell/--gpus-per-cell` override them

Errors name the field path (`network.depth[0]`) and what is allowed. `spec_hash` covers everything
that changes results, so resources can differ between a laptop and a cluster.
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

from .data import DATASETS
from .pcn import ACTIVATIONS, ALGORITHMS, PARAMS
from .train import CellConfig


class SpecError(ValueError):
    """A sweep spec that cannot be run; the message names the field."""


NETWORK_DEFAULTS = dict(activation="tanh", param="mupc", algorithm="pc", inference_steps=None)
TRAINING_DEFAULTS = dict(batch_size=64, epochs=1.0, eval_every=300, seeds=[0])
TOP_FIELDS = {"name", "dataset", "network", "training", "grid", "curves_every", "resources"}


@dataclass(frozen=True)
class Cell:
    """One network shape of a sweep, with its stable id."""

    cell_id: str
    config: CellConfig


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

    def cells(self) -> list[Cell]:
        """The cells: the product of the network fields' values, in spec order."""
        keys = list(self.network)
        cells = []
        for values in itertools.product(*(self.network[k] for k in keys)):
            net = dict(zip(keys, values))
            cfg = CellConfig(
                width=net["width"], depth=net["depth"], activation=net["activation"], param=net["param"],
                algorithm=net["algorithm"], inference_steps=net["inference_steps"],
                batch_size=self.training["batch_size"], epochs=self.training["epochs"],
                eval_every=self.training["eval_every"],
            )
            cell_id = f"{cfg.activation}-{cfg.param}-{cfg.algorithm}-N{cfg.width}-H{cfg.depth}-T{cfg.steps}"
            cells.append(Cell(cell_id, cfg))
        return cells

    def points(self, algorithm: str) -> list[tuple[int, float, float]]:
        """(seed, η, β) of every point of a cell; β is NaN for bp."""
        betas = self.betas if algorithm == "pc" else [math.nan]
        return list(itertools.product(self.seeds, self.etas, betas))

    def to_raw(self) -> dict:
        """The spec in its YAML form, every network field a list; `parse_spec` reads it back."""
        return dict(
            name=self.name, dataset=self.dataset, network=self.network,
            training={**self.training, "seeds": self.seeds},
            grid={"eta": self.etas, **({"beta": self.betas} if self.betas else {})},
            curves_every=self.curves_every, resources={"cpu": self.cpu, "gpu": self.gpu},
        )

    def spec_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of everything that changes results: not the name or resources."""
        content = {k: v for k, v in self.to_raw().items() if k not in ("name", "resources")}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


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


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML sweep spec."""
    path = Path(path)
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
    return parse_spec(raw, default_name=path.stem)


def parse_spec(raw: Any, *, default_name: str = "sweep") -> SweepSpec:
    """Validate a spec given as a mapping (e.g. parsed YAML)."""
    if not isinstance(raw, dict):
        raise SpecError("a spec must be a mapping with network, training and grid sections.")
    _unknown(raw, TOP_FIELDS, "")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\") or name.startswith("."):
        raise SpecError(f"name: must be a folder name (no slashes); got {name!r}.")
    dataset = raw.get("dataset", "mnist")
    if dataset not in DATASETS:
        raise SpecError(f"dataset: must be one of {', '.join(DATASETS)}; got {dataset!r}.")

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
        if len(set(values)) != len(values):
            raise SpecError(f"network.{key}: must not repeat values; got {values}.")
        network[key] = values

    training_raw = _section(raw, "training", required=False)
    _unknown(training_raw, set(TRAINING_DEFAULTS), "training.")
    training = {**TRAINING_DEFAULTS, **training_raw}
    for key in ("batch_size", "eval_every"):
        _integer(training[key], f"training.{key}", minimum=1)
    if isinstance(training["epochs"], bool) or not isinstance(training["epochs"], (int, float)) or not (
        math.isfinite(training["epochs"]) and training["epochs"] > 0
    ):
        raise SpecError(f"training.epochs: must be a positive number; got {training['epochs']!r}.")
    seeds = _as_list(training["seeds"], "training.seeds")
    for i, seed in enumerate(seeds):
        _integer(seed, f"training.seeds[{i}]", minimum=0)
        if seed >= 2**32:
            raise SpecError(f"training.seeds[{i}]: must be below 2**32; got {seed}.")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"training.seeds: must not repeat; got {seeds}.")

    grid = _section(raw, "grid")
    _unknown(grid, {"eta", "beta"}, "grid.")
    etas = _rates(grid, "eta", required=True)
    uses_beta = "pc" in network["algorithm"]
    betas = _rates(grid, "beta", required=uses_beta)

    curves_every = raw.get("curves_every", 10)
    _integer(curves_every, "curves_every", minimum=1)
    resources = raw.get("resources", {}) or {}
    if not isinstance(resources, dict):
        raise SpecError(f"resources: must be a mapping like {{cpu: 1, gpu: 0.5}}; got {resources!r}.")
    _unknown(resources, {"cpu", "gpu"}, "resources.")
    cpu, gpu = resources.get("cpu", 1), resources.get("gpu", 0)
    _check_resources(cpu, gpu)
    return SweepSpec(
        name=name, dataset=dataset, network=network,
        training={k: training[k] for k in ("batch_size", "epochs", "eval_every")},
        etas=etas, betas=betas, seeds=[int(s) for s in seeds], curves_every=int(curves_every),
        cpu=float(cpu), gpu=float(gpu),
    )


def with_resources(spec: SweepSpec, *, cpu: float | None = None, gpu: float | None = None) -> SweepSpec:
    """The spec with its per-cell resources overridden by `mupc-sweep run --cpus-per-cell` and
    `--gpus-per-cell` (they do not change results or the hash); errors name those options."""
    names = ("resources.cpu" if cpu is None else "--cpus-per-cell", "resources.gpu" if gpu is None else "--gpus-per-cell")
    cpu, gpu = spec.cpu if cpu is None else cpu, spec.gpu if gpu is None else gpu
    _check_resources(cpu, gpu, names)
    return replace(spec, cpu=float(cpu), gpu=float(gpu))


def _check_resources(cpu: Any, gpu: Any, names: tuple[str, str] = ("resources.cpu", "resources.gpu")) -> None:
    for name, value in zip(names, (cpu, gpu)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
            raise SpecError(f"{name}: must be a non-negative number; got {value!r}.")
    if gpu > 1:
        raise SpecError(f"{names[1]}: a cell trains on one device, so at most 1 (a fraction shares a GPU); got {gpu!r}.")
    if cpu == 0 and gpu == 0:
        raise SpecError(f"{names[0]} and {names[1]}: a cell needs some cpu or gpu; got 0 and 0.")


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


def _integer(value: Any, where: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where}: must be an integer of at least {minimum}; got {value!r}.")


def _check_network_value(key: str, value: Any, where: str) -> None:
    choices = {"activation": ACTIVATIONS, "param": PARAMS, "algorithm": ALGORITHMS}
    if key in choices:
        if value not in choices[key]:
            raise SpecError(f"{where}: must be one of {', '.join(choices[key])}; got {value!r}.")
    elif key == "width":
        _integer(value, where, minimum=1)
    elif key == "depth":
        _integer(value, where, minimum=1)
    elif value is not None:
        _integer(value, where, minimum=0)


def _rates(grid: dict, key: str, *, required: bool) -> list[float]:
    if key not in grid:
        if required:
            raise SpecError(f"grid.{key}: required (a list of positive learning rates).")
        return []
    values = _as_list(grid[key], f"grid.{key}")
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise SpecError(f"grid.{key}[{i}]: must be a positive learning rate; got {value!r}.")
    if len(set(values)) != len(values):
        raise SpecError(f"grid.{key}: must not repeat values; got {values}.")
    return [float(v) for v in values]
