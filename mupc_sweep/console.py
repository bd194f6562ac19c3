"""Terminal output of long commands: a progress bar with an ETA, and the lines a sweep prints as its
cells finish, retry or fail."""

from __future__ import annotations

import sys
import time

import pandas as pd

from .driver import SweepEvents
from .regions import needs
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
    """What `run_sweep` shows while it runs, when `enabled`: a header, a bar weighted by each trial's
    estimated cost (trials planned later, such as a transfer sweep's patches, join it as they are
    planned), a line per finished, retried or failed trial on stdout, and a closing line."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar = ProgressBar("sweep") if enabled else None
        self.cost: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.finished = 0.0

    def events(self) -> SweepEvents:
        return SweepEvents(planned=self.planned, progress=self.progress, done=self.done, retry=self.retry,
                           failed=self.failed)

    def line(self, text: str, *, stdout: bool = False) -> None:
        """A line on stderr, or stdout, in place of the bar, which is drawn again below it."""
        if not self.enabled:
            return
        self.bar.close_line()
        print(text, file=sys.stdout if stdout else sys.stderr, flush=True)
        self._draw()

    def header(self, spec, run, description: str, warning: str | None) -> None:
        cell_needs = needs(spec, run.done).values()
        missing = sum(len(n.missing) for n in cell_needs)
        later = sum(n.waits for n in cell_needs)
        self.line(f"{spec.name}: {len(spec.cells())} cells, {sum(map(len, run.done.values()))} points done, "
                  f"{missing} to train" + (f" now, {later} patches after their sources" if later else "")
                  + f" -> {run.results / spec.name}\n{description}; {spec.cpu:g} CPU, {spec.gpu:g} GPU per trial"
                  + (f"\nWarning: {warning}" if warning else ""))

    def close(self, run) -> None:
        if self.enabled:
            self.bar.close()
            self.line(f"{run.trained} points trained in {len(self.cost)} trials, {run.compiles} programs compiled")

    def _draw(self) -> None:
        if self.enabled and self.cost:
            self.bar((self.finished + sum(self.running.values())) / sum(self.cost.values()))

    def planned(self, trials) -> None:
        self.cost.update({t.stem: t.seconds for t in trials})
        self._draw()

    def progress(self, stem: str, fraction: float) -> None:
        self.running[stem] = fraction * self.cost.get(stem, 0.0)
        self._draw()

    def done(self, stem: str, records: pd.DataFrame, compiles: int) -> None:
        self.running.pop(stem, None)
        self.finished += self.cost.get(stem, 0.0)
        self.line(f"{stem}: {best_text(records)}  ({len(records)} points, {records.wall_s.iloc[0]:.1f} s on "
                  f"{records.device.iloc[0]})", stdout=True)

    def retry(self, stem: str, error: str) -> None:
        self.running.pop(stem, None)
        self.line(f"{stem}: retrying after a failure: {error}", stdout=True)

    def failed(self, stem: str, error: str) -> None:
        self.running.pop(stem, None)
        self.finished += self.cost.get(stem, 0.0)
        self.line(f"{stem}: FAILED: {error}", stdout=True)
