"""Fanning a sweep out with Ray Tune: `RayCluster`, the executor `driver.run_sweep` uses by default.
One Tune trial per `shards.Trial` (some of a cell's points), its points trained by one jitted
program on a worker.

The only module that imports Ray. The driver (the `mupc-sweep run` process) never trains and never
touches an accelerator: it puts the dataset in Ray's object store once, hands Tune the trials the
sweep needs as Tune asks for them (a Tune searcher over `driver.SweepRun`, so that trials planned
while others run, a transfer sweep's patches, join the same run), and writes each trial's records
when it reports them. Records therefore travel back through the driver, and no worker node needs
the results directory or a data directory: a cluster needs shared storage for nothing. The store
stays the source of truth (a point is done when a records file holds it), so Tune's own state is
kept in a temporary folder and thrown away.

Without an address Ray runs embedded on this machine, listening on loopback only, with Ray's token
authentication left on. With an address (or RAY_ADDRESS) the driver joins that cluster, with its
token where it has one. A trial that goes silent for too long is ended on its worker and retried
(`Watchdog`, `hung_after`).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .cell import CellConfig
from .data import Dataset
from .device import trial_settings
from .driver import MAX_RETRIES, SweepRun
from .errors import ClusterError
from .shards import Trial
from .spec import SweepSpec

REPORT_EVERY_S = 2.0  # a trial's progress reports are at most this frequent (each is a driver round trip)
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray then binds every port to 127.0.0.1
# A trial silent (no progress) for max(floor, factor × its estimated seconds) is hung: its worker
# process ends itself, and Tune retries the trial as it does one of a lost node.
HUNG_FLOOR_S = 300.0  # covers JAX's import, a compile and the first 50 steps of a short trial
HUNG_FACTOR = 4.0  # covers an estimate (cost.py's rates) that is that many times too optimistic
AUTH_PROBE_S = 5.0  # how long joining waits for a cluster to say whether it admits this driver's token


def resolve_address(address: str | None) -> str | None:
    """The cluster to join: `address`, else $RAY_ADDRESS, else None (embedded Ray on this machine)."""
    return address or os.environ.get("RAY_ADDRESS") or None


class RayCluster:
    """Trials as Ray Tune trials: on the Ray cluster at `address` (see `resolve_address`), or on Ray
    embedded on this machine's loopback, shut down at the end."""

    def __init__(self, address: str | None = None) -> None:
        self.address = resolve_address(address)

    def check_reachable(self) -> None:
        """A host:port address must accept a connection ('auto' and others are left to Ray); checked
        before the driver writes anything."""
        if self.address is None:
            return
        host, _, port = self.address.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            return
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as error:
            raise ClusterError(f"cannot reach a Ray cluster at {self.address} ({error.strerror or error}); check the "
                               "address (the head's GCS port, 6379 by default) or leave it out to run on this "
                               "machine.") from None

    def start(self, spec: SweepSpec) -> tuple[str, str | None]:
        """Join or start Ray; a one-line description of the cluster, and a warning when one trial's
        resources exceed the cluster's (an embedded cluster cannot grow: ClusterError there). A
        joined cluster's token authentication is settled first (`_authenticate`)."""
        if self.address is None:
            os.environ.update(LOOPBACK_ENV)  # for every process Ray starts from here
        import ray
        import ray._private.ray_constants as ray_constants

        if self.address is None:
            ray_constants.ENABLE_RAY_CLUSTER = False  # for this process, should Ray have been imported earlier
        else:
            _authenticate(self.address)
        options = dict(log_to_driver=False, logging_level=logging.ERROR)
        try:
            if self.address is None:
                ray.init(address="local", include_dashboard=False, **options)  # all CPUs and GPUs Ray detects
            else:
                ray.init(address=self.address, **options)
        except Exception as error:  # Ray raises ConnectionError, RuntimeError or its own types here
            where = "start Ray" if self.address is None else f"join the Ray cluster at {self.address}"
            raise ClusterError(f"could not {where}: {_first_line(error)}") from None
        resources = ray.cluster_resources()
        where = "embedded on this machine (loopback only)" if self.address is None else f"at {self.address}"
        description = (f"Ray {where}: {len(ray.nodes())} node(s), {resources.get('CPU', 0):g} CPU, "
                       f"{resources.get('GPU', 0):g} GPU")
        try:
            return description, self._check_fits(spec, strict=self.address is None)
        except ClusterError:
            ray.shutdown()
            raise

    @staticmethod
    def _check_fits(spec: SweepSpec, *, strict: bool) -> str | None:
        import ray

        have = ray.cluster_resources()
        for key, need in (("CPU", spec.cpu), ("GPU", spec.gpu)):
            if need > have.get(key, 0):
                argument = f"{key.lower()}s_per_trial"
                message = (f"{argument}: each trial asks for {need:g} {key} (resources.{key.lower()} in the spec) "
                           f"but the cluster has {have.get(key, 0):g}; lower it or run where it fits.")
                if strict:
                    raise ClusterError(message)
                return message + " Waiting for the cluster to grow."
        return None

    def slots(self, spec: SweepSpec) -> int:
        """How many trials of `spec` the cluster runs at once: its GPUs over a trial's GPU share, or
        for CPU trials its CPUs over a trial's CPUs."""
        import ray

        have = ray.cluster_resources()
        return max(1, int(have.get("GPU", 0) / spec.gpu if spec.gpu > 0 else have.get("CPU", 0) / spec.cpu))

    def run(self, spec: SweepSpec, data: Dataset, run: SweepRun) -> None:
        """Train what `run` hands out, as Tune trials retried `MAX_RETRIES` times; Ctrl-C or SIGTERM
        stops gracefully (Tune's own stop), keeping every trial that finished."""
        from ray import tune
        from ray.tune.search import Searcher

        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # no CSV/JSON/TensorBoard copies of the records
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's own tables stay quiet (verbose=0); the driver reports

        class Trials(Searcher):
            """Tune's source of trials: the next planned one, None while the sweep waits on trials in
            flight (a patch on its source), FINISHED when nothing is left."""

            def __init__(self) -> None:
                super().__init__()
                self.queue: deque[Trial] = deque()

            def suggest(self, trial_id: str):
                if not self.queue:
                    self.queue.extend(run.ready())
                if self.queue:
                    return _config(self.queue.popleft())
                return Searcher.FINISHED if run.idle else None

            def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
                pass  # the Recorder below has written the trial, or noted its failure

        class Recorder(tune.Callback):
            """Driver side: a trial's progress, its records (written at once), retries and failures;
            when each trial was last heard from, to tell a hung trial's end from other failures."""

            def __init__(self) -> None:
                self.heard: dict[str, float] = {}

            def on_trial_start(self, iteration, trials, trial, **info):
                self.heard[trial.config["stem"]] = time.monotonic()

            def on_trial_result(self, iteration, trials, trial, result, **info):
                stem = trial.config["stem"]
                self.heard[stem] = time.monotonic()
                if "records" not in result:
                    run.progress(stem, result["fraction"])
                    return
                run.finish(stem, _from_parquet(result["records"]), _from_parquet(result["curves"]),
                           result["compiles"])

            def on_trial_recover(self, iteration, trials, trial, **info):
                run.retry(trial.config["stem"], self.error(trial))
                self.heard[trial.config["stem"]] = time.monotonic()

            def on_trial_error(self, iteration, trials, trial, **info):
                run.fail(trial.config["stem"], self.error(trial))

            def error(self, trial) -> str:
                """Why the trial failed: hung, where its worker died about its limit after the trial
                was last heard from (its watchdog's doing, which Ray reports as a crash), else Ray's
                error. "About": a report reaches the driver a moment after it is made."""
                limit = trial.config["hung_s"]
                if time.monotonic() - self.heard.get(trial.config["stem"], time.monotonic()) >= 0.9 * limit:
                    return f"hung: no progress for {limit:.0f} s, so its worker was ended"
                return _trial_error(trial)

        trainable = tune.with_resources(tune.with_parameters(_trial, spec=spec, data=data),
                                        {"cpu": spec.cpu, "gpu": spec.gpu})
        storage = tempfile.mkdtemp(prefix="mupc-sweep-tune-")
        main = threading.current_thread() is threading.main_thread()  # where signal handlers can be set
        previous = signal.signal(signal.SIGTERM, _stop_as_on_sigint) if main else None
        try:
            tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=Trials(), num_samples=-1, reuse_actors=True),
                run_config=tune.RunConfig(
                    name=spec.name, storage_path=storage, verbose=0, callbacks=[Recorder()],
                    failure_config=tune.FailureConfig(max_failures=MAX_RETRIES),
                ),
            ).fit()
        finally:
            if main:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
            shutil.rmtree(storage, ignore_errors=True)

    def stop(self) -> None:
        """Leave the cluster; an embedded one shuts down."""
        import ray

        ray.shutdown()


def hung_after(seconds: float) -> float:
    """How long a trial estimated to train for `seconds` may go without progress before it counts as hung."""
    return max(HUNG_FLOOR_S, HUNG_FACTOR * seconds)


def _config(trial: Trial) -> dict:
    """A trial as Tune config: plain values, so that it travels to any worker."""
    return {"stem": trial.stem, "cell": dataclasses.asdict(trial.cell), "points": [list(p) for p in trial.points],
            "size": trial.size, "hung_s": hung_after(trial.seconds)}


def _stop_as_on_sigint(signum: int, frame) -> None:
    """SIGTERM (kill, a batch scheduler, a pod's end) during a sweep: what SIGINT does, which while
    Tune runs is its graceful stop; a KeyboardInterrupt where SIGINT is ignored or default. Without
    it Ray's fatal-signal handler dumps a stack and ends the driver with no word on what is left."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


class Watchdog:
    """Calls `expire` once if `beat` goes uncalled for `limit_s` seconds between entering and leaving
    the `with` block: a trial stuck in a device call can be ended no other way."""

    def __init__(self, limit_s: float, expire: Callable[[], None]) -> None:
        self.limit_s, self.expire = limit_s, expire
        self.last = time.monotonic()
        self._left = threading.Event()

    def __enter__(self) -> Watchdog:
        self.beat()
        threading.Thread(target=self._watch, daemon=True, name="mupc-sweep-watchdog").start()
        return self

    def __exit__(self, *exc) -> None:
        self._left.set()

    def beat(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        while not self._left.wait(min(1.0, self.limit_s / 10)):
            if time.monotonic() - self.last > self.limit_s:
                self.expire()
                return


def _end_hung_worker(limit_s: float) -> None:
    """End this worker process: Tune sees its actor die and retries the trial, as for a lost node."""
    print(f"mupc-sweep: no progress for {limit_s:g} s; ending this worker so that the trial is retried",
          file=sys.stderr, flush=True)
    os._exit(1)


def _trial(config: dict, *, spec: SweepSpec, data: Dataset) -> None:
    """Worker side: train one trial's points and report its records and curves (as Parquet bytes)
    and how many programs it compiled (0 when this worker already ran a trial of the same shape).
    A watchdog ends the worker if no progress comes for `config["hung_s"]` seconds."""
    limit = config["hung_s"]
    with Watchdog(limit, lambda: _end_hung_worker(limit)) as watchdog:
        import jax
        from ray import tune

        from .trial import run_trial

        settings = trial_settings(spec.gpu, os.environ)
        if "JAX_PLATFORMS" in settings:
            jax.config.update("jax_platforms", settings.pop("JAX_PLATFORMS"))  # jax read its env at import
        os.environ.update(settings)
        last = [0.0]

        def progress(fraction: float) -> None:
            watchdog.beat()
            if time.monotonic() - last[0] >= REPORT_EVERY_S:
                last[0] = time.monotonic()
                tune.report({"fraction": fraction})

        trial = Trial(CellConfig(**config["cell"]), tuple(tuple(p) for p in config["points"]), config["size"], 0.0)
        records, curves, compiles = run_trial(spec, trial, data, progress, pad=spec.gpu > 0)
    tune.report({"fraction": 1.0, "records": _to_parquet(records), "curves": _to_parquet(curves),
                 "compiles": compiles})


def _to_parquet(table: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    table.to_parquet(out, index=False)
    return out.getvalue()


def _from_parquet(blob: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(blob))


def _trial_error(trial) -> str:
    """The last line of a failed trial's error (its exception), or what Ray said of it."""
    error = getattr(trial, "error_file", None)
    text = ""
    if error and os.path.isfile(error):
        with open(error) as f:
            text = f.read()
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "the trial failed (no error recorded)"


def _authenticate(address: str) -> None:
    """Before joining the cluster at `address`, ask it whether it admits this driver: where it wants
    a token and RAY_AUTH_MODE is unset, turn token authentication on for this driver if a token is at
    hand (`_token_source`), and ask again; where it still refuses, ClusterError at once (Ray itself
    retries for 20 s, then says only that it could not connect). Token mode stays off for a cluster
    without it, whose workers could not then reach this driver."""
    from ray._private.services import canonicalize_bootstrap_address

    if address.startswith("ray://"):
        return
    try:
        gcs = canonicalize_bootstrap_address(address)  # host:port, as ray.init resolves it ('auto' too)
    except Exception:  # an address Ray cannot read, or no cluster at 'auto': ray.init says which
        return
    source, mode = _token_source(), os.environ.get("RAY_AUTH_MODE")
    if gcs is None or (mode == "token" and source is None) or not _refused(gcs):
        return  # (token mode without a token: ray.init says so at once)
    if mode is None and source is not None:
        os.environ["RAY_AUTH_MODE"] = "token"
        if not _refused(gcs):
            return
    if os.environ.get("RAY_AUTH_MODE") == "token":
        raise ClusterError(f"the Ray cluster at {address} refused the token in {source}; set RAY_AUTH_TOKEN "
                           "(or RAY_AUTH_TOKEN_PATH) to its token, as on its nodes.")
    also = "" if mode is None else "RAY_AUTH_MODE=token and "
    raise ClusterError(f"the Ray cluster at {address} requires token authentication; set {also}RAY_AUTH_TOKEN "
                       "(or RAY_AUTH_TOKEN_PATH) to its token, as on its nodes.")


def _token_source() -> str | None:
    """Where Ray reads this process's token, first found: $RAY_AUTH_TOKEN, the file $RAY_AUTH_TOKEN_PATH
    names, Ray's default file ~/.ray/auth_token; None where there is none."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"RAY_AUTH_TOKEN_PATH ({path})" if Path(path).is_file() else None
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def _refused(gcs: str) -> bool:
    """Whether the GCS at `gcs` (host:port) refuses this process's credentials, as its environment
    has them now, which it says at once; one that does not answer within AUTH_PROBE_S is left to
    ray.init."""
    from ray._raylet import AuthenticationTokenLoader, Config, GcsClient
    from ray.exceptions import AuthenticationError

    Config.initialize("")  # Ray keeps its settings and token from their first read: read them again
    AuthenticationTokenLoader.instance().reset_cache()
    refused = threading.Event()

    def probe() -> None:
        try:
            GcsClient(address=gcs)
        except AuthenticationError:
            refused.set()
        except Exception:  # unreachable or not a GCS: ray.init says so
            pass

    thread = threading.Thread(target=probe, daemon=True, name="mupc-sweep-auth-probe")
    thread.start()
    thread.join(AUTH_PROBE_S)
    return refused.is_set()


def _first_line(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]
