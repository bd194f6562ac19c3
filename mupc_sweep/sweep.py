"""Fanning a sweep out with Ray Tune: one trial per shard of a cell (`shards.Trial`: some or all of
its points), the trial's points trained by one jitted program.

The only module that imports Ray. The driver (the `mupc-sweep run` process) never trains and never
touches an accelerator: it puts the dataset in Ray's object store once, starts the trials, and
writes each trial's records when it reports them. Records therefore travel back through the
driver, and no worker node needs the results directory or a data directory: a cluster needs shared
storage for nothing. The store stays the source of truth (a point is done when a records file holds
it), so Tune's own state is kept in a temporary folder and thrown away.

Without an address Ray runs embedded on this machine, listening on loopback only, with Ray's token
authentication left on. With an address (or RAY_ADDRESS) the driver joins that cluster.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from .data import Dataset
from .device import trial_settings
from .errors import ClusterError
from .runner import run_trial
from .shards import Trial
from .spec import SweepSpec

MAX_FAILURES = 2  # retries of a cell whose trial failed (a lost node, a crashed worker)
REPORT_EVERY_S = 2.0  # a trial's progress reports are at most this frequent (each is a driver round trip)
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray then binds every port to 127.0.0.1


@dataclass
class SweepEvents:
    """What the driver is told while a sweep runs; every callback is optional."""

    progress: Callable[[str, float], None] | None = None  # trial stem, fraction of that trial done
    done: Callable[[str, pd.DataFrame, int], None] | None = None  # stem, its records (written), programs compiled
    retry: Callable[[str, str], None] | None = None  # stem, the error that is being retried
    failed: Callable[[str, str], None] | None = None  # stem, the error after the last retry


def resolve_address(address: str | None) -> str | None:
    """The cluster to join: `address`, else $RAY_ADDRESS, else None (embedded Ray on this machine)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None) -> str:
    """Join the Ray cluster at `address` (see `resolve_address`), or start an embedded one on loopback.

    Returns a one-line description of the cluster. Raises ClusterError when it cannot be reached.
    """
    address = resolve_address(address)
    if address is None:
        os.environ.update(LOOPBACK_ENV)  # for every process Ray starts from here
    import ray
    import ray._private.ray_constants as ray_constants

    if address is None:
        ray_constants.ENABLE_RAY_CLUSTER = False  # for this process, should Ray have been imported earlier
    else:
        _check_reachable(address)
    options = dict(log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address is None:
            ray.init(address="local", include_dashboard=False, **options)  # all CPUs and GPUs Ray detects
        else:
            ray.init(address=address, **options)
    except Exception as error:  # Ray raises ConnectionError, RuntimeError or its own types here
        raise ClusterError(f"could not {'start Ray' if address is None else f'join the Ray cluster at {address}'}: "
                           f"{_first_line(error)}") from None
    resources = ray.cluster_resources()
    where = "embedded on this machine (loopback only)" if address is None else f"at {address}"
    return (f"Ray {where}: {len(ray.nodes())} node(s), {resources.get('CPU', 0):g} CPU, "
            f"{resources.get('GPU', 0):g} GPU")


def disconnect() -> None:
    """Leave the cluster; an embedded one shuts down."""
    import ray

    ray.shutdown()


def check_fits(spec: SweepSpec, *, strict: bool) -> str | None:
    """Whether one trial's resources fit the cluster. Raises ClusterError when `strict` (an embedded
    cluster cannot grow); otherwise returns a warning (an autoscaling cluster may add the nodes)."""
    import ray

    have = ray.cluster_resources()
    for key, need in (("CPU", spec.cpu), ("GPU", spec.gpu)):
        if need > have.get(key, 0):
            option = f"--{key.lower()}s-per-trial"
            message = (f"each trial asks for {need:g} {key} (resources.{key.lower()} in the spec, or {option}) but "
                       f"the cluster has {have.get(key, 0):g}; lower it with {option} or run where it fits.")
            if strict:
                raise ClusterError(message)
            return message + " Waiting for the cluster to grow."
    return None


def cluster_slots(spec: SweepSpec) -> int:
    """How many trials of `spec` the connected cluster runs at once: its GPUs over a trial's GPU
    share, or for CPU trials its CPUs over a trial's CPUs."""
    import ray

    have = ray.cluster_resources()
    return max(1, int(have.get("GPU", 0) / spec.gpu if spec.gpu > 0 else have.get("CPU", 0) / spec.cpu))


def run_trials(spec: SweepSpec, data: Dataset, results, trials: list[Trial], events: SweepEvents) -> dict[str, str]:
    """Train `trials` (in this order) as Ray Tune trials and write each one's records as it reports them.

    Must be connected (`connect`). Returns {stem: error} for the trials that failed after
    MAX_FAILURES retries; the others are written, including those whose points all diverged.
    """
    from ray import tune

    from .store import clear_failure, write_cell, write_curves, write_failure

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # no CSV/JSON/TensorBoard copies of the records
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's own tables stay quiet (verbose=0); the CLI reports
    failures: dict[str, str] = {}

    class Recorder(tune.Callback):
        """Driver side: writes records (curves first; the records file marks the cell done)."""

        def __init__(self) -> None:
            self.written: set[str] = set()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            stem = trial.config["trial"]
            if "records" not in result:
                if events.progress:
                    events.progress(stem, result["fraction"])
                return
            records, curves = _from_parquet(result.pop("records")), _from_parquet(result.pop("curves"))
            if stem in self.written:  # a retried trial reporting again
                return
            cell_id = by_stem[stem].cell.cell_id
            write_curves(results, spec.name, cell_id, curves, stem=stem)
            write_cell(results, spec.name, cell_id, records, stem=stem)
            clear_failure(results, spec.name, stem)
            self.written.add(stem)
            if events.done:
                events.done(stem, records, result["compiles"])

        def on_trial_recover(self, iteration, trials, trial, **info):
            if events.retry:
                events.retry(trial.config["trial"], _trial_error(trial))

        def on_trial_error(self, iteration, trials, trial, **info):
            stem = trial.config["trial"]
            failures[stem] = _trial_error(trial)
            write_failure(results, spec.name, stem, failures[stem])
            if events.failed:
                events.failed(stem, failures[stem])

    by_stem = {t.stem: t for t in trials}
    trainable = tune.with_resources(
        tune.with_parameters(_trial, spec=spec, data=data, trials=by_stem), {"cpu": spec.cpu, "gpu": spec.gpu}
    )
    storage = tempfile.mkdtemp(prefix="mupc-sweep-tune-")
    main = threading.current_thread() is threading.main_thread()  # where signal handlers can be set
    previous = signal.signal(signal.SIGTERM, _stop_as_on_sigint) if main else None
    try:
        tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(list(by_stem))},
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=storage, verbose=0, callbacks=[Recorder()],
                failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            ),
        ).fit()
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        shutil.rmtree(storage, ignore_errors=True)
    return failures


def _stop_as_on_sigint(signum: int, frame) -> None:
    """SIGTERM (kill, a batch scheduler, a pod's end) during a sweep: what SIGINT does, which while
    Tune runs is its graceful stop; a KeyboardInterrupt where SIGINT is ignored or default. Without
    it Ray's fatal-signal handler dumps a stack and ends the driver with no word on what is left."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


def _trial(config: dict, *, spec: SweepSpec, data: Dataset, trials: dict[str, Trial]) -> None:
    """Worker side: train one trial's points and report its records and curves (as Parquet bytes)
    and how many programs it compiled (0 when this worker already ran a trial of the same shape)."""
    import jax
    from ray import tune

    settings = trial_settings(spec.gpu, os.environ)
    if "JAX_PLATFORMS" in settings:
        jax.config.update("jax_platforms", settings.pop("JAX_PLATFORMS"))  # jax read its env at import
    os.environ.update(settings)
    last = [0.0]

    def progress(fraction: float) -> None:
        if time.monotonic() - last[0] >= REPORT_EVERY_S:
            last[0] = time.monotonic()
            tune.report({"fraction": fraction})

    records, curves, compiles = run_trial(spec, trials[config["trial"]], data, progress, pad=spec.gpu > 0)
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


def _check_reachable(address: str) -> None:
    """A host:port address must accept a connection; 'auto' and others are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise ClusterError(f"cannot reach a Ray cluster at {address} ({error.strerror or error}); check the "
                           "address (the head's GCS port, 6379 by default) or leave --address out to run "
                           "on this machine.") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]
