"""mupc-sweep: hyperparameter-transfer sweeps for μPC predictive-coding networks.

Reading results needs neither JAX nor Ray (README, "From Python"):

    records = mupc_sweep.load_records("results", sweep="paper-depth")
    (report,) = mupc_sweep.transfer(records, source=8, target=128)
    figures = mupc_sweep.figures(records, axis="depth")

Training and diagnostics (`train_cell`, `train_points`, `CellResult`) import JAX on first use.
"""

from __future__ import annotations

from importlib import import_module

from .analysis import TransferReport as TransferReport
from .analysis import surfaces as surfaces
from .analysis import transfer as transfer
from .cell import CellConfig as CellConfig
from .errors import Error as Error
from .errors import InputError as InputError
from .plots import figures as figures
from .store import load_curves as load_curves
from .store import load_records as load_records

__version__ = "0.1.0"

# name -> module of the names that need JAX, imported when first asked for
_LAZY = {"train_cell": "train", "CellResult": "train", "train_points": "verify",
         "activity_hessian": "hessian", "activity_spectrum": "hessian", "coord_check": "coord",
         "coord_figure": "coord_plots", "condition_figure": "coord_plots"}

__all__ = [
    "CellConfig", "CellResult", "Error", "InputError", "TransferReport", "activity_hessian", "activity_spectrum",
    "condition_figure", "coord_check", "coord_figure", "figures", "load_curves", "load_records", "surfaces",
    "train_cell", "train_points", "transfer",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
