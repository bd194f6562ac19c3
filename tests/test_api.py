"""The public Python API: what `import mupc_sweep` offers, without JAX or Ray for reading and
planning, and the README's "From Python" example, run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import fake_mnist, md5s, synthetic, write, write_sweep

import mupc_sweep
from mupc_sweep import data
from mupc_sweep.regions import grid_region, region_points
from mupc_sweep.store import RECORD_COLUMNS, prepare, write_cell

README = Path(__file__).resolve().parents[1] / "README.md"

# Runs in a fresh interpreter where `import jax` and `import ray` fail, as on a laptop with neither.
WITHOUT_JAX_OR_RAY = """
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jax", "jaxlib", "ray", "optax"):
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, Refuse())
import matplotlib
backend = matplotlib.get_backend()
import mupc_sweep
records = mupc_sweep.load_records(sys.argv[1])
(report,) = mupc_sweep.transfer(records, source=8, target=32)
figures = mupc_sweep.figures(records, curves=mupc_sweep.load_curves(sys.argv[1], "toy"))
assert matplotlib.get_backend() == backend, "the backend was switched"
print(report.transfer_holds, sorted(figures), len(mupc_sweep.surfaces(records)))
status = mupc_sweep.sweep_status(sys.argv[2])
plan = mupc_sweep.plan_sweep(mupc_sweep.load_spec(sys.argv[3]), results=sys.argv[2])
print(list(status.complete), list(plan.points))
try:
    mupc_sweep.train_cell
except ImportError as error:
    print("train_cell:", error)
"""


QUICK = Path(__file__).resolve().parents[1] / "sweeps" / "quick.yaml"


def write_complete_sweep(results: Path, spec) -> pd.DataFrame:
    """Every point of every cell of `spec` as a run would record it, with a synthetic loss whose
    optimum is η = 0.1, β = 10 at every depth, and the kept spec."""
    prepare(spec, results, restart=False)
    tables = []
    for cell in spec.cells():
        points = pd.DataFrame(region_points(spec, cell, grid_region(spec, cell)), columns=["seed", "eta", "beta"])
        loss = 10 ** ((np.log10(points.eta / 0.1)) ** 2 + (np.log10(points.beta.astype(float) / 10)) ** 2 - 2)
        table = points.assign(
            dataset=spec.dataset, activation=cell.activation, param=cell.param, algorithm=cell.algorithm,
            width=cell.width, depth=cell.depth, inference_steps=cell.inference_steps, batch_size=cell.batch_size,
            epochs=cell.epochs, min_train_loss=loss * (1 + 0.01 * points.seed), final_train_loss=loss, step_of_min=1,
            steps_run=2, status="ok", test_acc_final=90.0, test_acc_max=90.0, wall_s=1.0, device="cpu",
            code_version="test", jax_version="test", created_at=pd.Timestamp("2026-01-01", tz="UTC"))
        write_cell(results, spec.name, cell.cell_id, table, stem=f"{cell.cell_id}.whole")
        tables.append(table)
    assert set(RECORD_COLUMNS) <= set(tables[0].columns) | {"sweep", "cell_id"}
    return pd.concat(tables)


def test_reading_and_planning_need_neither_jax_nor_ray_and_leave_the_backend_alone(tmp_path):
    write_sweep(tmp_path, synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0))
    write_complete_sweep(tmp_path / "quick", mupc_sweep.load_spec(QUICK))
    env = {**os.environ, "MPLBACKEND": "svg"}
    done = subprocess.run([sys.executable, "-c", WITHOUT_JAX_OR_RAY, str(tmp_path), str(tmp_path / "quick"),
                           str(QUICK)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("True ['contours_toy_mnist_tanh_mupc_pc_N512_by_depth', "
                        f"'transfer_toy_mnist_tanh_mupc_pc_N512_by_depth'] {3 * 4 * 6}")
    assert lines[1] == "[True, True, True] [0, 0, 0]"  # quick's three cells done: nothing to plan
    assert lines[2].startswith("train_cell: ") and "jax" in lines[2]  # loaded on first use, and only then


def test_every_public_name_resolves():
    assert sorted(mupc_sweep.__all__) == sorted(set(mupc_sweep.__all__))
    for name in mupc_sweep.__all__:
        assert getattr(mupc_sweep, name) is not None, name
    assert set(mupc_sweep.__all__) <= set(dir(mupc_sweep))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mupc_sweep.nope  # noqa: B018


def test_transfer_json_holds_the_known_answer_of_a_stable_surface(tmp_path):
    """A surface whose optimum is (0.1, 1) at every depth: regret 1, the source's optimum recommended."""
    write_sweep(tmp_path, synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0))
    from typer.testing import CliRunner

    from mupc_sweep.cli import app

    out = CliRunner().invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path), "--json"])
    import json

    document = json.loads(out.stdout)
    (family,) = document["families"]
    assert (document["schema"], document["source"], document["target"], document["left_out"]) == (1, 8, 32, [])
    assert (family["recommended_eta"], family["recommended_beta"], family["regret"]) == (0.1, 1.0, 1.0)
    assert family["transfer_holds"] is True and family["regret_interval"] == [1.0, 1.0]
    assert [o["size"] for o in family["optima"]] == [8, 16, 32]


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    """The README's "From Python" block, run in a folder whose results/ holds the quick sweep done
    (so `run_sweep` has nothing to train and starts nothing) and whose MNIST is 300 random images."""
    block = re.search(r"## From Python\n.*?```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no From Python example"
    spec = mupc_sweep.load_spec(QUICK)
    records = write_complete_sweep(tmp_path / "results", spec)
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "quick.yaml").write_text(QUICK.read_text())
    raw = fake_mnist(0, n_train=300, n_test=20)
    monkeypatch.setitem(data.MD5, "mnist", md5s(raw))
    monkeypatch.setenv("MUPC_SWEEP_DATA", str(write(tmp_path / "idx", raw)))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102
    assert len(namespace["records"]) == len(records) == 144 and namespace["outcome"].complete
    assert namespace["outcome"].trained == 0 and list(namespace["plan"].points) == [0, 0, 0]
    assert list(namespace["status"].complete) == [True, True, True]
    report = namespace["report"]
    assert (report.recommended_eta, report.recommended_beta, report.regret) == (0.1, 10.0, 1.0)
    assert (tmp_path / "contours.png").stat().st_size > 0 and len(namespace["mnist"].x_train) == 300
