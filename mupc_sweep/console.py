"""Terminal output of long commands: a progress bar with an ETA, and the lines a sweep prints as its
cells finish, retry or fail."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import pandas as pd

from .report import best_text


class ProgressBar:
    """A one-line progress bar with ETA on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, width: int = 30) -> None:
        self.label, self.width, self.start = label, width, time.perf_counter()
        self.live = sys.stderr.isatty()

    def __call__(self, fraction: float) -> None:
        if not self.live or fraction <= 0:
            return
        fraction = min(fraction, 1.0)
        elapsed = time.perf_counter() - self.start
        eta = elapsed * (1 - fraction) / fraction
        filled = int(self.width * fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {100 * fraction:3.0f}%  ETA {duration(eta)}  ")
        sys.stderr.flush()

    def close_line(self) -> None:
        """Clear the bar's line so that a report can be printed in its place."""
        if self.live:
            sys.stderr.write("\r\033[K")

    def close(self) -> None:
        if self.live:
            sys.stderr.write("\n")


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class SweepProgress:
    """A sweep's progress on a bar, weighted by each trial's estimated cost, and a line per
    finished, retried or failed trial, printed through `echo`. Its methods are the callbacks of
    `sweep.SweepEvents`; `compiles` counts the programs the trials compiled."""

    def __init__(self, cost: dict[str, float], bar: ProgressBar, echo: Callable[[str], None]) -> None:
        self.cost, self.bar, self.echo = cost, bar, echo
        self.total = sum(cost.values()) or 1.0
        self.running: dict[str, float] = {}
        self.finished = 0.0
        self.compiles = 0

    def _draw(self) -> None:
        self.bar((self.finished + sum(self.running.values())) / self.total)

    def _line(self, text: str) -> None:
        self.bar.close_line()
        self.echo(text)
        self._draw()

    def progress(self, stem: str, fraction: float) -> None:
        self.running[stem] = fraction * self.cost[stem]
        self._draw()

    def done(self, stem: str, records: pd.DataFrame, compiles: int) -> None:
        self.running.pop(stem, None)
        self.finished += self.cost[stem]
        self.compiles += compiles
        self._line(f"{stem}: {best_text(records)}  ({len(records)} points, {records.wall_s.iloc[0]:.1f} s on "
                   f"{records.device.iloc[0]})")

    def retry(self, stem: str, error: str) -> None:
        self.running.pop(stem, None)
        self._line(f"{stem}: retrying after a failure: {error}")

    def failed(self, stem: str, error: str) -> None:
        self.running.pop(stem, None)
        self.finished += self.cost[stem]
        self._line(f"{stem}: FAILED: {error}")
