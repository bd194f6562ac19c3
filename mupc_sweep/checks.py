"""Input checks shared by sweep specs, `CellConfig`, the command line and the Python API, so that one
bad value gets one message wherever it comes from. Each check is told where the value came from
(`network.depth[0]` in a spec, `depth` in Python, `--seed` on the command line) and raises
`InputError("<where>: must be ...; got ...")`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from .errors import InputError

SEED_LIMIT = 2**32  # seeds index PRNG keys: larger ones would wrap onto others


def choice_error(where: str, value: object, allowed: Sequence[str]) -> InputError:
    """The error for an option outside `allowed`; raise it to close an if/elif chain over options."""
    return InputError(f"{where}: must be one of {', '.join(allowed)}; got {value!r}.")


def check_choice(where: str, value: object, allowed: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise choice_error(where, value, allowed)


def check_int(where: str, value: object, *, minimum: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{where}: must be an integer of at least {minimum}; got {value!r}.")


def _is_number(value: object) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))


def check_positive(where: str, value: object) -> None:
    """A positive finite number (epochs, a learning rate)."""
    if not (_is_number(value) and math.isfinite(value) and value > 0):
        raise InputError(f"{where}: must be a positive number; got {value!r}.")


def check_nonnegative(where: str, value: object) -> None:
    """A finite number of at least 0 (a trial's CPUs or GPU share)."""
    if not (_is_number(value) and math.isfinite(value) and value >= 0):
        raise InputError(f"{where}: must be a non-negative number; got {value!r}.")


def check_seed(where: str, value: object) -> None:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            and 0 <= value < SEED_LIMIT):
        raise InputError(f"{where}: must be an integer from 0 to 2**32 - 1; got {value!r}.")


def check_rates(where: str, values: Iterable) -> None:
    """A non-empty list of positive finite learning rates; the message names the first bad one."""
    values = list(values)
    if not values:
        raise InputError(f"{where}: must not be an empty list.")
    for i, value in enumerate(values):
        if not (_is_number(value) and math.isfinite(value) and value > 0):
            raise InputError(f"{where}[{i}]: must be a positive learning rate; got {value!r}.")


def check_distinct(where: str, values: Sequence) -> None:
    if len(set(values)) != len(values):
        raise InputError(f"{where}: must not repeat values; got {list(values)}.")
