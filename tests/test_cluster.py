"""The Ray executor where a sweep meets trouble: a hung trial, ended by its watchdog, retried and
noted failed; clusters started by `ray start`, one with token authentication (joined with its
token, refused at once without it) and one without (joined without a token).

Every Ray here lives on loopback in a RAY_TMPDIR of its own and is ended by PID or by its own
shutdown, never by `ray stop`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import learnable_mnist, md5s, write
from test_sweep import end_processes, listening_addresses, proc_address, process_tree, wait_for

import mupc_sweep
from mupc_sweep import cluster, data
from mupc_sweep.driver import MAX_RETRIES
from mupc_sweep.errors import ClusterError
from mupc_sweep.spec import load_spec
from mupc_sweep.store import failures_dir

pytestmark = pytest.mark.xdist_group("ray")  # one worker runs these, one after another

TOKEN = secrets.token_hex(32)

# One cell of two points, 20 steps each.
SPEC = {
    "name": "joined",
    "dataset": "mnist",
    "network": {"width": 8, "depth": 2, "activation": "tanh"},
    "training": {"batch_size": 10, "epochs": 2, "eval_every": 5000, "seeds": [0]},
    "grid": {"eta": [0.1, 0.01], "beta": [1.0]},
    "curves_every": 10,
}


@pytest.fixture
def sweep_data(tmp_path, monkeypatch):
    """A data directory of 100 training images registered as MNIST."""
    raw = learnable_mnist(0, n_train=100, n_test=20)
    monkeypatch.setitem(data.MD5, "mnist", md5s(raw))
    monkeypatch.setenv("MUPC_SWEEP_CACHE", str(tmp_path / "cache"))
    return write(tmp_path / "idx", raw)


def test_watchdog_expires_once_after_a_silence_not_while_beaten_nor_after_its_block():
    fired: list[float] = []
    with cluster.Watchdog(0.5, lambda: fired.append(time.monotonic())) as watchdog:
        for _ in range(10):  # 1 s, beaten every 0.1 s
            time.sleep(0.1)
            watchdog.beat()
        assert not fired
        silent_from = time.monotonic()
        wait_for(lambda: fired, 5, "the watchdog")
        time.sleep(0.6)
    assert len(fired) == 1 and 0.5 <= fired[0] - silent_from < 1.0
    with cluster.Watchdog(0.2, lambda: fired.append(time.monotonic())):
        pass
    time.sleep(0.4)
    assert len(fired) == 1


def test_a_trial_may_be_silent_for_the_floor_or_a_multiple_of_its_estimate():
    assert cluster.hung_after(1.0) == cluster.HUNG_FLOOR_S >= 60
    assert cluster.hung_after(1e5) == cluster.HUNG_FACTOR * 1e5 > 1e5


def test_a_hung_trial_is_ended_retried_and_noted_failed_and_the_sweep_ends(sweep_data, tmp_path, ray_tmp,
                                                                             monkeypatch, capsys):
    """A trial silent past its limit (1 s here, where its first progress report comes after its
    compile and 50 steps of a tenth of a second) is ended by its watchdog, retried MAX_RETRIES times
    like a trial of a lost node, then noted failed as hung, and the sweep ends."""
    monkeypatch.setattr(cluster, "HUNG_FLOOR_S", 1.0)
    monkeypatch.setattr(cluster, "HUNG_FACTOR", 0.0)
    spec = {**SPEC, "name": "hung", "network": {"width": 1024, "depth": 8, "activation": "tanh"},
            "training": {"batch_size": 100, "epochs": 100, "eval_every": 5000, "seeds": [0]},
            "grid": {"eta": [0.1], "beta": [1.0]}}
    results = tmp_path / "results"
    start = time.monotonic()
    outcome = mupc_sweep.run_sweep(spec, results=results, data_dir=sweep_data)
    wall = time.monotonic() - start
    out = capsys.readouterr().out
    assert out.count("retrying after a failure: hung: no progress for 1 s") == MAX_RETRIES, out
    [(stem, error)] = outcome.failed.items()
    assert error == "hung: no progress for 1 s, so its worker was ended" and outcome.trained == 0
    assert (failures_dir(results, "hung") / f"{stem}.txt").read_text().strip() == error
    assert wall < 60


@contextmanager
def ray_head(auth_mode: str):
    """A one-CPU Ray head started by `ray start` with RAY_AUTH_MODE=`auth_mode` (and TOKEN), every
    port on loopback, no dashboard, in a RAY_TMPDIR of its own; its GCS address. Ended by killing
    its processes."""
    tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    env = {**os.environ, **cluster.LOOPBACK_ENV, "RAY_TMPDIR": str(tmp), "RAY_AUTH_MODE": auth_mode,
           "RAY_AUTH_TOKEN": TOKEN, "HOME": str(tmp)}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    with open(tmp / "head.log", "w") as log:
        head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--port=0",
                                 "--num-cpus=1", "--include-dashboard=false", "--node-ip-address=127.0.0.1",
                                 "--block"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = tmp / "ray" / "ray_current_cluster"
    try:
        wait_for(lambda: address.exists() and address.read_text().strip() or head.poll() is not None, 60,
                 "the head to start")
        assert head.poll() is None, (tmp / "head.log").read_text()
        listening = {proc_address(a) for _, a in listening_addresses(process_tree(head.pid))}
        assert listening and all(a.is_loopback for a in listening), listening
        yield address.read_text().strip()
    finally:
        end_processes(process_tree(head.pid))
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def driver_env(monkeypatch, tmp_path, ray_tmp):
    """This process as a driver on loopback with no Ray token of its own: no token variables, an
    empty home (no ~/.ray/auth_token) and RAY_AUTH_MODE unset. Afterwards the environment is
    restored, what start() set included, and Ray reads its settings and token from it again (it
    keeps both from its last read, which would leave this test's token to the next Ray)."""
    import ray._private.ray_constants as ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.setenv(name, "")  # recorded, so that the variable is removed again afterwards
        monkeypatch.delenv(name)
    for name, value in cluster.LOOPBACK_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # 127.0.0.1 stays 127.0.0.1
    yield monkeypatch
    monkeypatch.undo()
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def test_a_cluster_without_token_authentication_is_joined_without_it(driver_env, tmp_path):
    """A token at hand is not sent where none is asked for: in token mode the driver would refuse
    the cluster's workers (a sweep's trials would die before they start)."""
    (tmp_path / "home" / ".ray").mkdir(parents=True)
    (tmp_path / "home" / ".ray" / "auth_token").write_text(TOKEN)
    with ray_head("disabled") as address:
        executor = cluster.RayCluster(address)
        try:
            description, _ = executor.start(load_spec(SPEC))
        finally:
            executor.stop()
    assert description == f"Ray at {address}: 1 node(s), 1 CPU, 0 GPU"
    assert "RAY_AUTH_MODE" not in os.environ


@pytest.fixture(scope="module")
def token_head():
    with ray_head("token") as address:
        yield address


@pytest.mark.parametrize("token", [None, "wrong"])
def test_a_driver_without_the_token_is_told_at_once_what_to_set(token_head, driver_env, token):
    if token:
        driver_env.setenv("RAY_AUTH_TOKEN", token)
    start = time.monotonic()
    with pytest.raises(ClusterError) as error:
        cluster.RayCluster(token_head).start(load_spec(SPEC))
    assert time.monotonic() - start < 10
    problem = "refused the token in RAY_AUTH_TOKEN" if token else "requires token authentication"
    assert str(error.value) == (f"the Ray cluster at {token_head} {problem}; set RAY_AUTH_TOKEN (or "
                                "RAY_AUTH_TOKEN_PATH) to its token, as on its nodes.")


def test_a_driver_with_the_token_joins_and_runs_a_sweep(token_head, driver_env, sweep_data, tmp_path):
    driver_env.setenv("RAY_AUTH_TOKEN", TOKEN)
    outcome = mupc_sweep.run_sweep(SPEC, results=tmp_path / "results", address=token_head, data_dir=sweep_data,
                                   progress=False)
    assert outcome.trained == 2 and not outcome.failed and outcome.complete
    assert os.environ["RAY_AUTH_MODE"] == "token"


@pytest.mark.parametrize("source", ["RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token"])
def test_the_token_is_found_where_ray_looks_for_it(token_head, driver_env, tmp_path, source):
    path = tmp_path / "token" if source == "RAY_AUTH_TOKEN_PATH" else tmp_path / "home" / ".ray" / "auth_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TOKEN)
    if source == "RAY_AUTH_TOKEN_PATH":
        driver_env.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    executor = cluster.RayCluster(token_head)
    try:
        description, warning = executor.start(load_spec(SPEC))
    finally:
        executor.stop()
    assert description == f"Ray at {token_head}: 1 node(s), 1 CPU, 0 GPU" and warning is None

