"""The driver lock: refused while its driver lives, taken over once stale, released on exit."""

import json
import os
import socket
import subprocess
import sys

import pytest

from mupc_sweep.lock import STALE_S, DriverLock, SweepLocked, is_stale, lock_path, read_holder


def write_lock(path, **holder):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(holder))


def age(path, seconds):
    stamp = path.stat().st_mtime - seconds
    os.utime(path, (stamp, stamp))


def test_a_live_local_driver_keeps_its_lock_however_old(tmp_path):
    path = lock_path(tmp_path, "s")
    write_lock(path, pid=os.getppid(), host=socket.gethostname(), started="2026-01-01T00:00:00+00:00")
    age(path, 10 * STALE_S)
    assert not is_stale(path, read_holder(path))
    with pytest.raises(SweepLocked, match=rf"pid {os.getppid()} on {socket.gethostname()}, started 2026-01-01"):
        DriverLock(tmp_path, "s").__enter__()
    assert json.loads(path.read_text())["pid"] == os.getppid()  # untouched


def test_a_dead_local_pid_or_an_old_lock_from_elsewhere_is_stale_and_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    path = lock_path(tmp_path, "s")
    write_lock(path, pid=int(dead), host=socket.gethostname())
    assert is_stale(path, read_holder(path))
    write_lock(path, pid=1, host="elsewhere")
    assert not is_stale(path, read_holder(path))  # fresh: its driver may live
    age(path, 2 * STALE_S)
    assert is_stale(path, read_holder(path))
    with DriverLock(tmp_path, "s"):
        assert read_holder(path)["pid"] == os.getpid()
    assert not path.exists()  # released
    path.write_text("[1, 2]")  # not a lock's JSON: judged by its age alone
    assert read_holder(path) == {}
    age(path, 2 * STALE_S)
    with DriverLock(tmp_path, "s"):
        assert read_holder(path)["pid"] == os.getpid()
