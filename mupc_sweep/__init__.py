"""mupc-sweep: hyperparameter-transfer sweeps for μPC predictive-coding networks."""

from .train import CellConfig as CellConfig
from .train import CellResult as CellResult
from .train import train_cell as train_cell
from .train import train_points as train_points

__version__ = "0.1.0"
