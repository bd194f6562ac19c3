"""The public Python API: what `import mupc_sweep` offers, without JAX or Ray for analysis, and the
README's "From Python" example, run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import synthetic, write_sweep

import mupc_sweep

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
try:
    mupc_sweep.train_cell
except ImportError as error:
    print("train_cell:", error)
"""


def test_analysis_needs_neither_jax_nor_ray_and_leaves_the_backend_alone(tmp_path):
    write_sweep(tmp_path, synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0))
    env = {**os.environ, "MPLBACKEND": "svg"}
    done = subprocess.run([sys.executable, "-c", WITHOUT_JAX_OR_RAY, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("True ['contours_mnist_tanh_mupc_pc_N512_by_depth', 'transfer_mnist_tanh_mupc_pc_N512_by_depth'] "
                        f"{3 * 4 * 6}")
    assert lines[1].startswith("train_cell: ") and "jax" in lines[1]  # loaded on first use, and only then


def test_every_public_name_resolves():
    assert sorted(mupc_sweep.__all__) == sorted(set(mupc_sweep.__all__))
    for name in mupc_sweep.__all__:
        assert getattr(mupc_sweep, name) is not None, name
    assert set(mupc_sweep.__all__) <= set(dir(mupc_sweep))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mupc_sweep.nope  # noqa: B018


def test_api_transfer_is_what_transfer_json_prints(tmp_path):
    write_sweep(tmp_path, synthetic([8, 16, 32], lambda s: 0.1, lambda s: 1.0))
    from typer.testing import CliRunner

    from mupc_sweep.cli import app

    out = CliRunner().invoke(app, ["transfer", "--from", "8", "--to", "32", "--results", str(tmp_path), "--json"])
    import json

    (family,) = json.loads(out.stdout)["families"]
    (report,) = mupc_sweep.transfer(mupc_sweep.load_records(tmp_path), source=8, target=32)
    assert json.loads(json.dumps(mupc_sweep.report.finite_or_null(report.to_dict()))) == family


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    """The README's "From Python" block, run in a folder holding a small depth sweep under results/."""
    block = re.search(r"## From Python\n.*?```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no From Python example"
    records = synthetic([8, 16, 32, 64, 128], lambda s: 0.1, lambda s: 1.0)
    write_sweep(tmp_path / "results", records.assign(sweep="paper-depth"), name="paper-depth")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102
    assert isinstance(namespace.get("records"), pd.DataFrame) and len(namespace["records"]) == len(records)
