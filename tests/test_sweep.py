"""Sweeps through Ray, where Ray adds something: a loopback-only embedded cluster running a transfer
sweep's stages, a driver stopped and killed in the middle and resumed, a lost worker node. The sweep
logic itself is tested without Ray in test_driver.py.

Drivers run as real processes where the test needs to watch or kill them. Every cluster lives on
loopback in a RAY_TMPDIR of the test's own, and is ended by PID or by its own shutdown, never by
`ray stop`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import learnable_mnist, md5s, write
from typer.testing import CliRunner

from mupc_sweep import cluster, data, device
from mupc_sweep.cli import app
from mupc_sweep.device import GPU_XLA_FLAG
from mupc_sweep.store import POINT_KEY, load_records

pytestmark = pytest.mark.xdist_group("ray")  # one worker runs these, one after another: one Ray at a time

# A transfer sweep: the full 3 × 3 grid at H = 2 (9 points), a patch of at least 2 × 2 at H = 3 and
# 4; each point 200 steps, a second or two.
SPEC = {
    "name": "ray",
    "dataset": "mnist",
    "network": {"width": 8, "depth": [2, 3, 4], "activation": "tanh"},
    "training": {"batch_size": 10, "epochs": 10, "eval_every": 5000, "seeds": [0]},
    "grid": {"eta": [0.1, 0.01, 0.001], "beta": [1.0, 0.5, 0.1], "targets": "patch"},
    "curves_every": 100,
}

# A driver process whose MNIST is the test's own small files (their checksums stand in for the real
# ones); on its way out it says whether it ever opened a device (it must not: workers train).
DRIVER = """
import json, sys
from mupc_sweep import data
data.MD5["mnist"] = json.loads(sys.argv[1])
from mupc_sweep.cli import app
try:
    app(sys.argv[2:], prog_name="mupc-sweep")
finally:
    from jax._src import xla_bridge
    print("driver opened a JAX backend:", xla_bridge.backends_are_initialized())
"""


@pytest.fixture
def sweep_files(tmp_path, monkeypatch):
    """(spec file, data dir, results dir, checksums) with 200 training images; the checksums are
    registered in this process too, for drivers run in-process."""
    raw = learnable_mnist(0, n_train=200, n_test=50)
    monkeypatch.setitem(data.MD5, "mnist", md5s(raw))
    monkeypatch.setenv("MUPC_SWEEP_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "ray.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    return spec, write(tmp_path / "idx", raw), tmp_path / "results", md5s(raw)


def start_driver(tmp_path: Path, checksums: dict, *args) -> subprocess.Popen:
    """`mupc-sweep run ARGS` as its own process (and session), output to files in tmp_path."""
    out, err = (open(tmp_path / name, "w") for name in ("driver.out", "driver.err"))
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(checksums), "run", *map(str, args)],
                            stdout=out, stderr=err, start_new_session=True)


def process_tree(root: int) -> set[int]:
    """`root` and every process descended from it."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grown = {root}, True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grown = bool(children)
    return tree


def listening_addresses(pids: set[int]) -> set[tuple[int, str]]:
    """(pid, address) of every listening TCP socket the processes hold."""
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening[fields[9]] = fields[1].split(":")[0]
    found = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in listening:
                found.add((pid, listening[link[8:-1]]))
    return found


def proc_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} prints it: 32-bit words, each in little-endian order."""
    raw = bytes.fromhex(hex_address)
    address = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
    return address.ipv4_mapped or address if address.version == 6 else address


def environment(pid: int) -> dict[str, str]:
    try:
        items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    return dict(item.decode(errors="replace").split("=", 1) for item in items if b"=" in item)


def end_processes(pids: set[int]) -> None:
    """SIGKILL what is left of a process tree and wait until it is gone."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        for pid in pids:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.1)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def assert_every_point_once(results: Path) -> pd.DataFrame:
    """Every file reads whole, no point is held twice, every cell is complete: the source's full grid
    and a patch around its optimum at each larger depth."""
    files = sorted((results / "ray" / "records").glob("*.parquet"))
    table = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)  # each file must read whole
    assert not table.duplicated(POINT_KEY).any() and not list((results / "ray").rglob("*.tmp"))
    assert table.cell_id.nunique() == 3 and (table.depth == 2).sum() == 9
    means = table[table.depth == 2].groupby(["eta", "beta"]).min_train_loss.mean()
    for depth in (3, 4):
        patch = table[table.depth == depth]
        assert 4 <= len(patch) <= 9 and means.idxmin() in set(zip(patch.eta, patch.beta))
    assert len(load_records(results)) == len(table)  # nothing incomplete
    return table


def test_embedded_ray_on_loopback_with_token_auth_stopped_killed_and_resumed_at_its_stage(
        sweep_files, tmp_path, ray_tmp):
    """A transfer sweep through a driver process with Ray embedded: every port it and its Ray open
    listens on loopback only, with Ray's token authentication on, and the driver never opens a JAX
    device. A SIGTERM ends the run as Ctrl-C does, saying what is left; a SIGKILL loses at most the
    trials in flight and leaves a stale lock. A third run, through Ray with another shard size, runs
    the remaining stages (the patches, planned as their source finishes) and trains only what is
    missing, the earlier runs' files untouched."""
    spec, data_dir, results, checksums = sweep_files
    records = results / "ray" / "records"
    seen: set[tuple[int, str]] = set()
    environments: list[dict] = []

    def stop_after_a_trial(sig: int) -> subprocess.Popen:
        done = len(list(records.glob("*.parquet"))) if records.exists() else 0
        driver = start_driver(tmp_path, checksums, spec, "--results", results, "--data-dir", data_dir,
                              "--points-per-trial", "2")
        tree = {driver.pid}
        try:
            while len(list(records.glob("*.parquet"))) <= done and driver.poll() is None:
                tree = process_tree(driver.pid)
                seen.update(listening_addresses(tree))
                environments.extend(environment(pid) for pid in tree - {driver.pid})
                time.sleep(0.3)
            tree = process_tree(driver.pid)  # Ray's processes outlive a killed driver: end them by PID
            os.kill(driver.pid, sig)
            driver.wait(timeout=120)
        finally:
            end_processes(tree | process_tree(driver.pid))
        return driver

    stopped = stop_after_a_trial(signal.SIGTERM)
    err = (tmp_path / "driver.err").read_text()
    assert stopped.returncode == 1, err
    assert "cells are not done; run the same command again" in err and "SIGTERM received" not in err
    assert "driver opened a JAX backend: False" in (tmp_path / "driver.out").read_text()
    addresses = {proc_address(address) for _, address in seen}
    assert len({pid for pid, _ in seen}) >= 3, seen  # GCS, raylet and workers at least
    assert all(a.is_loopback for a in addresses), addresses
    assert any(env.get("RAY_AUTH_MODE") == "token" for env in environments)

    killed = stop_after_a_trial(signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, (tmp_path / "driver.err").read_text()
    assert (results / "ray" / "driver.lock").exists()  # left by the killed driver: stale, taken over below
    kept = {f.name: f.read_bytes() for f in records.glob("*.parquet")}
    assert 2 <= len(kept) < 9, sorted(kept)  # stopped, then killed, in the middle of the sweep
    status = CliRunner().invoke(app, ["status", "--results", str(results)])
    assert status.exit_code == 0 and "[source]" in status.stdout

    rerun = CliRunner().invoke(app, ["run", str(spec), "--results", str(results), "--data-dir", str(data_dir),
                                     "--points-per-trial", "3"])
    assert rerun.exit_code == 0, rerun.output
    assert all((records / name).read_bytes() == content for name, content in kept.items())
    assert_every_point_once(results)


def test_lost_worker_node_is_retried_and_nothing_is_lost(sweep_files, ray_tmp):
    """Trials (one-point shards) run only on worker nodes (the head has no CPU for them), so every
    record reaches the results directory through the driver, as on a multi-node cluster without
    shared storage; the shards a lost node was training are retried elsewhere."""
    from ray.cluster_utils import Cluster

    spec, data_dir, results, _ = sweep_files
    spec.write_text(yaml.safe_dump({**SPEC, "training": {**SPEC["training"], "epochs": 600}}))  # trials of seconds
    health = {"health_check_period_ms": 500, "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}
    ray_cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "_system_config": health})  # trials run on the two workers
    doomed = ray_cluster.add_node(num_cpus=1)
    ray_cluster.add_node(num_cpus=1)
    records = results / "ray" / "records"

    def remove_a_busy_node():
        wait_for(lambda: any(records.glob("*.parquet")), 180, "a first trial")
        time.sleep(1.0)  # both nodes are in the middle of a trial now
        ray_cluster.remove_node(doomed, allow_graceful=False)

    remover = threading.Thread(target=remove_a_busy_node, daemon=True)
    try:
        remover.start()
        result = CliRunner().invoke(app, ["run", str(spec), "--results", str(results), "--data-dir", str(data_dir),
                                          "--address", ray_cluster.address, "--points-per-trial", "3"])  # mid-shard
        remover.join(timeout=5)
    finally:
        ray_cluster.shutdown()
    assert result.exit_code == 0, result.output
    assert "retrying after a failure" in result.stdout, result.output
    assert "3 node(s)" in result.stderr
    assert_every_point_once(results)


def test_unreachable_address_exits_2_and_writes_nothing(sweep_files):
    spec, data_dir, results, _ = sweep_files
    result = CliRunner().invoke(app, ["run", str(spec), "--results", str(results), "--data-dir", str(data_dir),
                                      "--address", "127.0.0.1:9"])
    assert result.exit_code == 2 and "cannot reach a Ray cluster at 127.0.0.1:9" in result.stderr
    assert not results.exists()


def test_sigterm_does_what_sigint_does_or_stops_outright():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        cluster._stop_as_on_sigint(signal.SIGTERM, None)
        assert calls == [signal.SIGINT]  # Tune's graceful stop, while it runs
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a job started with & from a script
        with pytest.raises(KeyboardInterrupt):
            cluster._stop_as_on_sigint(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_device_settings_share_a_gpu_and_keep_cpu_trials_off_it():
    assert device.trial_settings(0, {}) == {"JAX_PLATFORMS": "cpu"}
    quarter = float(device.trial_settings(0.25, {})["XLA_PYTHON_CLIENT_MEM_FRACTION"])
    assert 4 * quarter <= 1 and quarter == pytest.approx(0.25 * device.GPU_MEMORY_SHARE)
    assert float(device.trial_settings(1, {})["XLA_PYTHON_CLIENT_MEM_FRACTION"]) <= 1
    # the user's own memory fraction and XLA flags stay; GPU trials add the compile flag
    assert device.trial_settings(0.5, {"XLA_CLIENT_MEM_FRACTION": "0.3"}) == {"XLA_FLAGS": GPU_XLA_FLAG}
    flags = device.trial_settings(1, {"XLA_FLAGS": "--xla_dump_to=/tmp/hlo"})["XLA_FLAGS"]
    assert flags.split() == ["--xla_dump_to=/tmp/hlo", GPU_XLA_FLAG]
