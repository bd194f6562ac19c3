"""The errors mupc-sweep raises for what a user can mend: the command line prints any `Error` as
one line and exits with status 2; a Python caller can catch `Error` (or `ValueError` for bad values)."""

from __future__ import annotations


class Error(Exception):
    """Something the user can mend: the message says what is wrong and what to do."""


class InputError(Error, ValueError):
    """A bad value: an option, a spec field, an argument of the Python API. The message names it."""


class SpecError(InputError):
    """A sweep spec that cannot be run, or a kept spec that cannot be read; the message names the field or file."""


class DatasetError(Error):
    """A dataset file is missing, truncated, corrupt or not the published one."""


class ResultsError(Error):
    """No records where some were expected, or a records file that is not whole."""


class ClusterError(Error):
    """Ray could not be started or joined, or it cannot fit a trial."""
