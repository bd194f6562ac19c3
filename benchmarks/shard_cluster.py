"""Shards against whole-cell trials on a real Ray cluster: one head (no CPU for trials) and two
1-CPU worker nodes on this machine, on loopback as the tests start them, running a sweep that one
cell dominates, once with one trial per cell and once with the automatic shards. Prints each run's
wall time (Ray's start-up excluded: the cluster is up before the clock starts), their ratio, the
trials and the programs compiled.

    .venv/bin/python benchmarks/shard_cluster.py [--depths 4 32] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from ray.cluster_utils import Cluster
from typer.testing import CliRunner

from mupc_sweep.cli import app


def spec(depths: list[int], seeds: int) -> dict:
    return {
        "name": "dominated", "dataset": "mnist",
        "network": {"activation": "tanh", "param": "mupc", "width": 64, "depth": depths},
        "training": {"epochs": 0.25, "eval_every": 100, "seeds": list(range(seeds))},
        "grid": {"eta": [0.5, 0.1, 0.05, 0.01], "beta": [10, 1, 0.1, 0.01]},
    }


def timed_run(address: str, spec_file: Path, results: Path, *extra: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = CliRunner().invoke(app, ["run", str(spec_file), "--results", str(results), "--address", address, *extra])
    wall = time.perf_counter() - start
    if out.exit_code != 0:
        raise SystemExit(f"run failed: {out.output}")
    return wall, out.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shards-"))
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    spec_file = work / "dominated.yaml"
    spec_file.write_text(yaml.safe_dump(spec(args.depths, args.seeds)))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    try:
        whole, whole_err = timed_run(cluster.address, spec_file, work / "whole", "--points-per-trial", "1000000")
        sharded, sharded_err = timed_run(cluster.address, spec_file, work / "sharded")
    finally:
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    for label, wall, err in (("one trial per cell", whole, whole_err), ("automatic shards", sharded, sharded_err)):
        trials = next(line for line in err.splitlines() if "programs compiled" in line)
        print(f"{label:>20}: {wall:6.1f} s   ({trials})")
    print(f"{'ratio':>20}: {whole / sharded:.2f}x faster with shards "
          f"(sweep: N = 64, H = {args.depths}, 4 x 4 grid, {args.seeds} seeds, a quarter MNIST epoch)")


if __name__ == "__main__":
    main()
