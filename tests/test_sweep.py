"""Sweeps through Ray: loopback-only embedded cluster, a killed driver, a lost node, failing cells.

Drivers run as real processes where the test needs to watch or kill them. Every cluster lives on
loopback in a RAY_TMPDIR of the test's own, and is ended by PID or by its own shutdown, never by
`ray stop`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import fake_mnist, md5s, write
from typer.testing import CliRunner

from mupc_sweep import data, device, sweep
from mupc_sweep.cli import app
from mupc_sweep.data import load_dataset
from mupc_sweep.runner import trials_for
from mupc_sweep.spec import parse_spec
from mupc_sweep.device import GPU_XLA_FLAG
from mupc_sweep.store import POINT_KEY, load_records, read_failure

# Four cells of a few seconds each: 2000 steps of 2 points.
SPEC = {
    "name": "ray",
    "dataset": "mnist",
    "network": {"width": 8, "depth": [2, 3, 4, 5], "activation": "tanh"},
    "training": {"batch_size": 10, "epochs": 100, "eval_every": 5000, "seeds": [0]},
    "grid": {"eta": [0.1, 0.01], "beta": [0.5]},
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
    raw = fake_mnist(0, n_train=200, n_test=50)
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


def assert_every_point_once(results: Path, n_cells: int, points_per_cell: int) -> pd.DataFrame:
    files = sorted((results / "ray" / "records").glob("*.parquet"))
    table = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)  # each file must read whole
    assert table.cell_id.nunique() == n_cells
    assert len(table) == n_cells * points_per_cell and not table.duplicated(POINT_KEY).any()
    assert not list((results / "ray").rglob("*.tmp"))
    return table


def test_embedded_ray_listens_on_loopback_only_with_token_auth(sweep_files, tmp_path, ray_tmp):
    spec, data_dir, results, checksums = sweep_files
    spec.write_text(yaml.safe_dump({**SPEC, "network": {**SPEC["network"], "depth": [2, 3]}}))
    driver = start_driver(tmp_path, checksums, spec, "--results", results, "--data-dir", data_dir)
    seen: set[tuple[int, str]] = set()
    environments = []
    try:
        while driver.poll() is None:
            tree = process_tree(driver.pid)
            seen |= listening_addresses(tree)
            environments += [environment(pid) for pid in tree - {driver.pid}]
            time.sleep(0.3)
    finally:
        end_processes(process_tree(driver.pid))
    assert driver.returncode == 0, (tmp_path / "driver.err").read_text()
    assert "driver opened a JAX backend: False" in (tmp_path / "driver.out").read_text()
    addresses = {proc_address(address) for _, address in seen}
    assert len({pid for pid, _ in seen}) >= 3, seen  # GCS, raylet and workers at least
    assert all(a.is_loopback for a in addresses), addresses
    assert any(env.get("RAY_AUTH_MODE") == "token" for env in environments)
    assert len(load_records(results)) == 2 * 2


def test_stopped_or_killed_driver_resumes_and_holds_every_point_once(sweep_files, tmp_path, ray_tmp):
    """A SIGTERM ends the run as Ctrl-C does, saying what is left; a SIGKILL loses at most the cells
    in flight. Either way the next run trains only what is missing."""
    spec, data_dir, results, checksums = sweep_files
    spec.write_text(yaml.safe_dump({**SPEC, "network": {**SPEC["network"], "depth": [2, 3, 4, 5]}}))
    records = results / "ray" / "records"

    def stop_after_a_cell(sig: int) -> subprocess.Popen:
        done = len(list(records.glob("*.parquet"))) if records.exists() else 0
        driver = start_driver(tmp_path, checksums, spec, "--results", results, "--data-dir", data_dir)
        tree = {driver.pid}
        try:
            wait_for(lambda: len(list(records.glob("*.parquet"))) > done or driver.poll() is not None, 180,
                     "a cell")
            tree = process_tree(driver.pid)  # Ray's processes outlive a killed driver: end them by PID
            os.kill(driver.pid, sig)
            driver.wait(timeout=120)
        finally:
            end_processes(tree | process_tree(driver.pid))
        return driver

    stopped = stop_after_a_cell(signal.SIGTERM)
    err = (tmp_path / "driver.err").read_text()
    assert stopped.returncode == 1, err
    assert "cells are not done; run the same command again" in err and "SIGTERM received" not in err
    killed = stop_after_a_cell(signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, (tmp_path / "driver.err").read_text()
    done_before = len(list(records.glob("*.parquet")))
    assert 2 <= done_before < 4  # stopped, then killed, in the middle of the sweep

    rerun = CliRunner().invoke(app, ["run", str(spec), "--out", str(results), "--data-dir", str(data_dir)])
    assert rerun.exit_code == 0, rerun.output
    assert f"{2 * done_before} of 8 points done, {4 - done_before} trials to run" in rerun.stderr
    assert_every_point_once(results, n_cells=4, points_per_cell=2)


def test_lost_worker_node_is_retried_and_nothing_is_lost(sweep_files, ray_tmp):
    """Trials (one-point shards) run only on worker nodes (the head has no CPU for them), so every
    record reaches the results directory through the driver, as on a multi-node cluster without
    shared storage; the shards a lost node was training are retried elsewhere."""
    from ray.cluster_utils import Cluster

    spec, data_dir, results, _ = sweep_files
    health = {"health_check_period_ms": 500, "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "_system_config": health})  # trials run on the two workers
    doomed = cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    records = results / "ray" / "records"

    def remove_a_busy_node():
        wait_for(lambda: any(records.glob("*.parquet")), 180, "a first cell")
        time.sleep(1.0)  # both nodes are in the middle of a cell now
        cluster.remove_node(doomed, allow_graceful=False)

    remover = threading.Thread(target=remove_a_busy_node, daemon=True)
    try:
        remover.start()
        result = CliRunner().invoke(app, ["run", str(spec), "--results", str(results), "--data-dir", str(data_dir),
                                          "--address", cluster.address, "--points-per-trial", "1"])  # mid-shard
        remover.join(timeout=5)
    finally:
        cluster.shutdown()
    assert result.exit_code == 0, result.output
    assert "retrying after a failure" in result.stdout
    assert "3 node(s)" in result.stderr
    assert_every_point_once(results, n_cells=4, points_per_cell=2)


def test_a_cell_whose_points_all_diverge_is_recorded_and_the_sweep_goes_on(sweep_files, ray_tmp):
    spec, data_dir, results, _ = sweep_files
    # β = 1e10 blows a linear network's PC inference up at the first step; bp ignores β and trains.
    network = {**SPEC["network"], "depth": 3, "activation": "linear", "algorithm": ["pc", "bp"]}
    spec.write_text(yaml.safe_dump({**SPEC, "network": network,
                                    "training": {**SPEC["training"], "epochs": 1}, "grid": {**SPEC["grid"], "beta": [1e10]}}))
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(results), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    table = load_records(results).set_index("algorithm")
    assert (table.loc["pc", "status"] == "diverged").all()
    bp = table.loc["bp"]  # trained to the end; shorter than eval_every, so judged at the final evaluation
    assert (bp.steps_run == 20).all() and (bp.status == np.where(bp.test_acc_final < 15, "no_learning", "ok")).all()
    assert "no valid point" in result.stdout
    status = CliRunner().invoke(app, ["status", "--results", str(results)])
    assert "2/2 cells done" in status.stdout and "linear-mupc-pc-N8-H3-T3: no valid point" in status.stdout


def test_a_failing_trial_is_noted_and_the_others_still_run(sweep_files, ray_tmp):
    spec_file, data_dir, results, _ = sweep_files
    spec = parse_spec({**SPEC, "training": {**SPEC["training"], "epochs": 1}})
    good = load_dataset("mnist", data_dir)
    broken = dataclasses.replace(good, x_test=np.zeros((50, 3), np.float32))  # cannot be evaluated
    failed, done = [], []
    sweep.connect(None)
    try:
        cells = spec.cells()[:2]
        trials = trials_for(spec, {c: list(range(len(spec.points(c.algorithm)))) for c in cells}, 1)
        failures = sweep.run_trials(spec, broken, results, trials, sweep.SweepEvents(
            failed=lambda stem, error: failed.append(stem), done=lambda stem, records, compiles: done.append(stem)))
    finally:
        sweep.disconnect()
    assert sorted(failures) == sorted(failed) == sorted(c.cell_id for c in cells) and not done
    assert all(read_failure(results, "ray", c.cell_id) for c in cells)
    assert not (results / "ray" / "records").exists()


def test_unreachable_address_exits_2_and_writes_nothing(sweep_files, ray_tmp):
    spec, data_dir, results, _ = sweep_files
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(results), "--data-dir", str(data_dir),
                                      "--address", "127.0.0.1:9"])
    assert result.exit_code == 2 and "cannot reach a Ray cluster at 127.0.0.1:9" in result.stderr
    assert not results.exists()


def test_a_cell_too_big_for_the_embedded_cluster_exits_2(sweep_files, ray_tmp):
    spec, data_dir, results, _ = sweep_files
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(results), "--data-dir", str(data_dir),
                                      "--gpus-per-cell", "0.5"])
    assert result.exit_code == 2 and "asks for 0.5 GPU" in result.stderr and not results.exists()


def test_sigterm_does_what_sigint_does_or_stops_outright():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        sweep._stop_as_on_sigint(signal.SIGTERM, None)
        assert calls == [signal.SIGINT]  # Tune's graceful stop, while it runs
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a job started with & from a script
        with pytest.raises(KeyboardInterrupt):
            sweep._stop_as_on_sigint(signal.SIGTERM, None)
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


RECORDED = ["min_train_loss", "final_train_loss", "step_of_min", "steps_run", "status", "test_acc_final", "test_acc_max"]


def test_a_points_record_does_not_depend_on_its_shard(sweep_files, tmp_path, ray_tmp):
    """The same cells trained whole and as one-point shards: every per-point record agrees exactly
    (on a CPU points run one at a time, so the arithmetic is the same too), and shards of one cell
    shape reuse their worker's compiled program."""
    spec, data_dir, results, _ = sweep_files
    spec.write_text(yaml.safe_dump({**SPEC, "network": {**SPEC["network"], "depth": [2, 3]},
                                    "training": {**SPEC["training"], "epochs": 20, "seeds": [0, 1]}}))
    whole = CliRunner().invoke(app, ["run", str(spec), "--results", str(tmp_path / "whole"), "--data-dir",
                                     str(data_dir), "--points-per-trial", "100"])
    assert whole.exit_code == 0, whole.output
    sharded = CliRunner().invoke(app, ["run", str(spec), "--results", str(results), "--data-dir", str(data_dir),
                                       "--points-per-trial", "1"])
    assert sharded.exit_code == 0, sharded.output
    assert "8 trials to run" in sharded.stderr
    compiles = int(sharded.stderr.split("8 trials, ")[1].split(" programs compiled")[0])
    assert compiles <= 2 * 2  # at most one per cell shape on each of the two workers, not one per trial
    assert len(list((results / "ray" / "records").glob("*.parquet"))) == 8
    a = load_records(tmp_path / "whole").set_index(POINT_KEY).sort_index()
    b = load_records(results).set_index(POINT_KEY).sort_index()
    assert len(a) == len(b) == 8 and (a.index == b.index).all()
    pd.testing.assert_frame_equal(a[RECORDED], b[RECORDED])
    curves = pd.concat(pd.read_parquet(f) for f in (results / "ray" / "curves").glob("*.parquet"))
    assert len(curves.groupby(["cell_id", "seed", "eta"])) == 8  # the curves follow their shards


def test_a_killed_sharded_sweep_resumes_with_another_shard_size_and_holds_every_point_once(
        sweep_files, tmp_path, ray_tmp):
    spec, data_dir, results, checksums = sweep_files
    spec.write_text(yaml.safe_dump({**SPEC, "network": {**SPEC["network"], "depth": [2, 3]},
                                    "training": {**SPEC["training"], "seeds": [0, 1]}}))  # 2 cells × 4 points
    records = results / "ray" / "records"
    driver = start_driver(tmp_path, checksums, spec, "--results", results, "--data-dir", data_dir,
                          "--points-per-trial", "1")
    tree = {driver.pid}
    try:
        wait_for(lambda: any(records.glob("*.p*.parquet")) or driver.poll() is not None, 180, "a first shard")
        tree = process_tree(driver.pid)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        end_processes(tree | process_tree(driver.pid))
    done = len(list(records.glob("*.parquet")))
    assert 1 <= done < 8, (tmp_path / "driver.err").read_text()
    assert (results / "ray" / "driver.lock").exists()  # left by the killed driver: stale, taken over below
    status = CliRunner().invoke(app, ["status", "--results", str(results)])
    assert f"{done}/8 points done, {8 - done} pending" in status.stdout
    partial = CliRunner().invoke(app, ["transfer", "--from", "2", "--to", "3", "--results", str(results)])
    assert partial.exit_code in (0, 2)  # reported, never a crash: incomplete cells are left out

    rerun = CliRunner().invoke(app, ["run", str(spec), "--results", str(results), "--data-dir", str(data_dir),
                                     "--points-per-trial", "2"])  # a stale lock, another K
    assert rerun.exit_code == 0, rerun.output
    assert f"{done} of 8 points done" in rerun.stderr
    assert_every_point_once(results, n_cells=2, points_per_cell=4)
    again = CliRunner().invoke(app, ["run", str(spec), "--results", str(results), "--data-dir", str(data_dir)])
    assert again.exit_code == 0 and "all 2 cells done" in again.stderr


def test_a_second_driver_of_a_sweep_is_refused_while_the_first_lives(sweep_files, tmp_path, ray_tmp):
    spec, data_dir, results, checksums = sweep_files
    lock = results / "ray" / "driver.lock"
    first = start_driver(tmp_path, checksums, spec, "--results", results, "--data-dir", data_dir)
    tree = {first.pid}
    try:
        wait_for(lambda: lock.exists() or first.poll() is not None, 120, "the first driver's lock")
        before = {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.name != "driver.lock"}
        second = CliRunner().invoke(app, ["run", str(spec), "--results", str(results), "--data-dir", str(data_dir)])
        assert second.exit_code == 2, second.output
        assert f"is being run by another driver (pid {first.pid} on " in second.stderr and "started 20" in second.stderr
        assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p.exists())
        tree = process_tree(first.pid)
    finally:
        end_processes(tree | process_tree(first.pid))
