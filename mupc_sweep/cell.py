"""A cell: one network shape with its training settings. Plain data, no JAX: specs, records, the
command line and the trainer all describe a cell with `CellConfig`, and its defaults are the
defaults everywhere (spec fields, `mupc-sweep train` options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from .checks import check_choice, check_int, check_positive, check_rates, check_seed
from .errors import InputError

Activation = Literal["linear", "tanh", "relu"]
Param = Literal["mupc", "sp"]
Algorithm = Literal["pc", "bp"]

ACTIVATIONS: tuple[str, ...] = get_args(Activation)
PARAMS: tuple[str, ...] = get_args(Param)
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)


@dataclass(frozen=True)
class CellConfig:
    """One network shape and its training settings (README, "What is trained"): width N, depth H
    (hidden layers), T = `inference_steps` (given as None it becomes H, the paper's rule), batch
    size B, epochs, and the steps between test evaluations. Invalid values raise `InputError`
    naming the field."""

    width: int
    depth: int
    activation: Activation = "tanh"
    param: Param = "mupc"
    algorithm: Algorithm = "pc"
    inference_steps: int | None = None  # None: T = H; an int after construction
    batch_size: int = 64
    epochs: float = 1.0
    eval_every: int = 300

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("param", self.param, PARAMS)
        check_choice("algorithm", self.algorithm, ALGORITHMS)
        for name in ("width", "depth", "batch_size", "eval_every"):
            check_int(name, getattr(self, name), minimum=1)
        if self.inference_steps is None:
            object.__setattr__(self, "inference_steps", self.depth)  # T = H
        check_int("inference_steps", self.inference_steps, minimum=0)
        check_positive("epochs", self.epochs)

    @property
    def cell_id(self) -> str:
        """The cell's stable id within a sweep, e.g. tanh-mupc-pc-N64-H8-T8."""
        return f"{self.activation}-{self.param}-{self.algorithm}-N{self.width}-H{self.depth}-T{self.inference_steps}"

    def training_steps(self, n_train: int) -> int:
        """Training steps: epochs × ⌊n_train / B⌋, rounded down."""
        return int(self.epochs * (n_train // self.batch_size))

    def check_steps(self, n_train: int) -> None:
        """InputError unless the cell trains for at least one step on `n_train` examples."""
        if self.training_steps(n_train) < 1:
            raise InputError(f"epochs: {self.epochs} gives no training step with {n_train} examples and "
                             f"batch_size {self.batch_size}.")

    def check_points(self, seeds, etas, betas) -> None:
        """Paired (G,) points: seeds integers in [0, 2³²), η positive and finite, and β too for PC
        (bp ignores β, which is NaN there)."""
        seeds, etas, betas = np.asarray(seeds), np.asarray(etas), np.asarray(betas)
        if not (seeds.shape == etas.shape == betas.shape) or seeds.ndim != 1 or seeds.size == 0:
            raise InputError(f"seeds, etas, betas: must be non-empty 1-D arrays of one length; got shapes "
                             f"{seeds.shape}, {etas.shape}, {betas.shape}.")
        for i, seed in enumerate(seeds.tolist()):
            check_seed(f"seeds[{i}]", seed)
        check_rates("etas", etas.tolist())
        if self.algorithm == "pc":
            check_rates("betas", betas.tolist())


def inference_windows(depth: int, steps: int) -> list[tuple[int, int]]:
    """How inference steps 2..T run: a list of (k, n), n steps on the top k layers.

    From the feedforward activities every hidden error is zero and step t changes only the top t
    layers: step 1 moves z_H alone (`output_activity_grad`) and each step carries the errors one
    layer down. So step t needs only a window of the top k ≥ t layers, whose input is still at its
    feedforward value. Windows double (2, 4, 8, …, capped at H): about log₂ H loop bodies to
    compile, and close to half the inference products of running every step on all layers.
    """
    windows: list[tuple[int, int]] = []
    for t in range(2, steps + 1):
        k = min(depth, 1 << (t - 1).bit_length())  # the smallest power of two ≥ t
        if windows and windows[-1][0] == k:
            windows[-1] = (k, windows[-1][1] + 1)
        else:
            windows.append((k, 1))
    return windows
