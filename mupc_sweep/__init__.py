"""mupc-sweep: hyperparameter-transfer sweeps for μPC predictive-coding networks.

Running a sweep and reading it are library calls (README, "From Python"); the command line is a
thin shell over them:

    outcome = mupc_sweep.run_sweep("sweeps/quick.yaml")            # Ray embedded on this machine
    (report,) = mupc_sweep.transfer(outcome.records, source=2, target=8)
    figures = mupc_sweep.figures(outcome.records)

Reading results and planning needs neither JAX nor Ray; training and diagnostics (`train_cell`,
`train_points`, `CellResult`, ...) import JAX on first use, and `run_sweep` imports Ray only to
start it.
"""

from __future__ import annotations

from importlib import import_module

from .analysis import TransferReport as TransferReport
from .analysis import surfaces as surfaces
from .analysis import transfer as transfer
from .cell import CellConfig as CellConfig
from .data import load_dataset as load_dataset
from .driver import InProcess as InProcess
from .driver import SweepOutcome as SweepOutcome
from .driver import plan_sweep as plan_sweep
from .driver import run_sweep as run_sweep
from .errors import Error as Error
from .errors import InputError as InputError
from .plots import figures as figures
from .spec import SweepSpec as SweepSpec
from .spec import load_spec as load_spec
from .status import sweep_status as sweep_status
from .store import load_curves as load_curves
from .store import load_records as load_records

__version__ = "0.1.0"

# name -> module of the names that need JAX, imported when first asked for
_LAZY = {"train_cell": "train", "CellResult": "train", "train_points": "verify",
         "activity_hessian": "hessian", "activity_spectrum": "hessian", "coord_check": "coord",
         "coord_figure": "coord_plots", "condition_figure": "coord_plots"}

__all__ = [
    "CellConfig", "CellResult", "Error", "InProcess", "InputError", "SweepOutcome", "SweepSpec", "TransferReport",
    "activity_hessian", "activity_spectrum", "condition_figure", "coord_check", "coord_figure", "figures",
    "load_curves", "load_dataset", "load_records", "load_spec", "plan_sweep", "run_sweep", "surfaces",
    "sweep_status", "train_cell", "train_points", "transfer",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
