"""One driver per sweep: results/<sweep>/driver.lock names the `mupc-sweep run` that trains it.

The lock is created exclusively (O_EXCL) and holds the driver's pid, host and start time; the
driver touches it every `HEARTBEAT_S` seconds. A second driver of the same sweep is refused while
the lock is live. A lock is stale, and taken over, when its pid is gone on this host, or, when it
names another host, when it has not been touched for `STALE_S` seconds (a driver killed there).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from .errors import Error

HEARTBEAT_S = 30.0
STALE_S = 120.0


class SweepLocked(Error):
    """Another live driver holds the sweep."""


def lock_path(results: Path, sweep: str) -> Path:
    return Path(results) / sweep / "driver.lock"


class DriverLock:
    """`with DriverLock(results, sweep):` holds the sweep for this process, or raises SweepLocked
    naming the driver that holds it. Nothing is written when it is refused."""

    def __init__(self, results: Path, sweep: str) -> None:
        self.path = lock_path(results, sweep)
        self.sweep = sweep
        self._created: list[Path] = []  # folders the lock created, removed on release if still empty
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> DriverLock:
        holder = read_holder(self.path)
        if holder is not None and not is_stale(self.path, holder):
            raise SweepLocked(
                f"sweep {self.sweep} is being run by another driver (pid {holder.get('pid')} on "
                f"{holder.get('host')}, started {holder.get('started')}); wait for it to finish, or stop it "
                f"first. A lock left by a killed driver is taken over once stale ({self.path}).")
        if holder is not None:  # stale: its driver is gone. Move it aside: of two drivers taking
            aside = self.path.with_name(f".{self.path.name}.{os.getpid()}.stale")  # it over, one renames it
            try:
                os.rename(self.path, aside)
                aside.unlink()
            except FileNotFoundError:
                pass  # the other did; our exclusive create below decides
        self._create()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()
        return self

    def _create(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._created = [p for p in (self.path.parent, self.path.parent.parent) if not p.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # another driver took it between our read and our create
            holder = read_holder(self.path) or {}
            raise SweepLocked(f"sweep {self.sweep} was just taken by another driver (pid {holder.get('pid')} on "
                              f"{holder.get('host')}).") from None
        with os.fdopen(fd, "w") as out:
            json.dump(me, out)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if (read_holder(self.path) or {}).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        for folder in self._created:  # a refused or empty run leaves nothing behind
            try:
                folder.rmdir()
            except OSError:
                pass


def read_holder(path: Path) -> dict | None:
    """The lock's pid, host and start time; {} for an unreadable lock (treated as stale by age); None
    without a lock."""
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def is_stale(path: Path, holder: dict) -> bool:
    """Whether the lock's driver is gone: on this host, whether its pid still exists (a live driver
    keeps its lock however long it was suspended); from another host, whether the lock has gone
    untouched for `STALE_S` seconds."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        return time.time() - path.stat().st_mtime > STALE_S
    except FileNotFoundError:
        return True
