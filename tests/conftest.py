"""Shared fixtures and the independent reference: the paper's energy (Eq. 1, skips of Eq. 23) and training step
written layer by layer, differentiated by jax.grad."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

from mupc_sweep import data
from mupc_sweep.data import FILES
from mupc_sweep.store import write_cell

PHI = {"linear": lambda z: z, "tanh": jnp.tanh, "relu": jax.nn.relu}


def ref_scalings(param: str, d_in: int, width: int, depth: int) -> tuple[float, float, float]:
    """Table 1, written out again."""
    if param == "mupc":
        return d_in**-0.5, (width * (depth + 1)) ** -0.5, 1.0 / width
    return 1.0, 1.0, 1.0


def ref_energy(ws: list, zs: list, x, y, activation: str, param: str):
    """The energy (Eq. 1 with the skips of Eq. 23) with ws = [W_1, ..., W_L] (out, in) and zs = [z_1, ..., z_H], each (B, N)."""
    phi = PHI[activation]
    a_1, a_h, a_L = ref_scalings(param, x.shape[1], ws[0].shape[0], len(zs))
    f = 0.5 * jnp.sum((zs[0] - a_1 * x @ ws[0].T) ** 2)
    for l in range(1, len(zs)):
        f += 0.5 * jnp.sum((zs[l] - zs[l - 1] - a_h * phi(zs[l - 1]) @ ws[l].T) ** 2)
    f += 0.5 * jnp.sum((y - a_L * phi(zs[-1]) @ ws[-1].T) ** 2)
    return f / x.shape[0]


def ref_forward(ws: list, x, activation: str, param: str) -> tuple[list, object]:
    """The feedforward recursion: z_1 = a_1 W_1 x, z_l = z_{l-1} + a_h W_l φ(z_{l-1}), ŷ."""
    phi = PHI[activation]
    a_1, a_h, a_L = ref_scalings(param, x.shape[1], ws[0].shape[0], len(ws) - 1)
    zs = [a_1 * x @ ws[0].T]
    for w in ws[1:-1]:
        zs.append(zs[-1] + a_h * phi(zs[-1]) @ w.T)
    return zs, a_L * phi(zs[-1]) @ ws[-1].T


def ref_train(ws, xs, ys, *, activation, param, eta, beta, inference_steps):
    """One point's training: feedforward loss, T GD steps on jax.grad of the energy, Adam(η) on its weight gradient."""
    opt = optax.adam(eta)
    state = opt.init(ws)
    losses = []
    for x, y in zip(xs, ys):
        zs, y_hat = ref_forward(ws, x, activation, param)
        losses.append(0.5 * jnp.sum((y_hat - y) ** 2) / x.shape[0])
        for _ in range(inference_steps):
            grads = jax.grad(lambda zs: ref_energy(ws, zs, x, y, activation, param))(zs)
            zs = [z - beta * g for z, g in zip(zs, grads)]
        w_grads = jax.grad(lambda ws: ref_energy(ws, zs, x, y, activation, param))(ws)
        updates, state = opt.update(w_grads, state, ws)
        ws = optax.apply_updates(ws, updates)
    return np.array(losses), ws


def random_net(key_seed: int, d_in: int, width: int, depth: int, d_out: int, dtype=np.float64) -> list[np.ndarray]:
    """L = depth + 1 weight matrices (out, in) drawn N(0, 1)."""
    rng = np.random.default_rng(key_seed)
    shapes = [(width, d_in)] + [(width, width)] * (depth - 1) + [(d_out, width)]
    return [rng.normal(size=s).astype(dtype) for s in shapes]


def random_batches(seed: int, steps: int, batch: int, d_in: int, d_out: int, dtype=np.float64):
    """xs (S, B, D) standard normal and ys (S, B, C) one-hot."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(steps, batch, d_in)).astype(dtype)
    ys = np.eye(d_out, dtype=dtype)[rng.integers(0, d_out, size=(steps, batch))]
    return xs, ys


@pytest.fixture
def x64():
    """Run the test with float64 enabled."""
    with jax.enable_x64(True):
        yield


def classification_data(seed: int, n_train: int, n_test: int, d_in: int = 20, learnable: bool = True):
    """A small 10-class problem: the label is the argmax of the first 10 inputs, or random."""
    rng = np.random.default_rng(seed)
    x_train = rng.normal(size=(n_train, d_in)).astype(np.float32)
    x_test = rng.normal(size=(n_test, d_in)).astype(np.float32)
    if learnable:
        return x_train, x_train[:, :10].argmax(1).astype(np.int32), x_test, x_test[:, :10].argmax(1).astype(np.int32)
    return x_train, rng.integers(0, 10, n_train).astype(np.int32), x_test, rng.integers(0, 10, n_test).astype(np.int32)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def small_mnist(monkeypatch, tmp_path):
    """Four small IDX files (5 train, 3 test images), registered as the published MNIST files; returns their bytes."""
    rng = np.random.default_rng(0)
    arrays = {
        FILES["x_train"]: rng.integers(0, 256, (5, 28, 28)),
        FILES["y_train"]: np.array([0, 1, 2, 3, 9]),
        FILES["x_test"]: rng.integers(0, 256, (3, 28, 28)),
        FILES["y_test"]: np.array([4, 5, 6]),
    }
    arrays[FILES["x_train"]][0, 0, :2] = [0, 255]
    raw = {name: idx_bytes(a) for name, a in arrays.items()}
    monkeypatch.setitem(data.MD5, "mnist", md5s(raw))
    monkeypatch.setenv("MUPC_SWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MUPC_SWEEP_DATA", raising=False)
    monkeypatch.setitem(data.SYSTEM_DIRS, "mnist", ())
    return raw


def write(directory: Path, raw: dict, gz: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in raw.items():
        (directory / (name + ".gz" if gz else name)).write_bytes(gzip.compress(content) if gz else content)
    return directory


@pytest.fixture
def ray_tmp(monkeypatch) -> Path:
    """RAY_TMPDIR for one test: a short folder of its own (Ray's socket paths are length-limited)."""
    path = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fake_mnist(seed: int, n_train: int, n_test: int) -> dict[str, bytes]:
    """The four MNIST IDX files with random images and labels."""
    rng = np.random.default_rng(seed)
    arrays = {
        FILES["x_train"]: rng.integers(0, 256, (n_train, 28, 28)),
        FILES["y_train"]: rng.integers(0, 10, n_train),
        FILES["x_test"]: rng.integers(0, 256, (n_test, 28, 28)),
        FILES["y_test"]: rng.integers(0, 10, n_test),
    }
    return {name: idx_bytes(a) for name, a in arrays.items()}


def md5s(raw: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.md5(b).hexdigest() for name, b in raw.items()}


ETAS = [0.5, 0.1, 0.05, 0.01]
BETAS = [10.0, 5.0, 1.0, 0.5, 0.1, 0.05]


def synthetic(sizes, eta_star, beta_star, *, etas=ETAS, betas=BETAS, seeds=(0, 1, 2), axis="depth", curvature=1.0,
              param="mupc"):
    """Records whose seed-mean log10 loss is curvature·((log η − log η*)² + (log β − log β*)²) − 2,
    with η*, β* functions of the size; seeds scatter ±1 % around the mean (the same factor at every
    point of a seed, so ratios of seed means are exact)."""
    rows = []
    for size in sizes:
        for seed in seeds:
            for eta in etas:
                for beta in betas:
                    du, dv = np.log10(eta / eta_star(size)), np.log10(beta / beta_star(size))
                    loss = 10 ** (curvature * (du * du + dv * dv) - 2) * (1 + 0.01 * (seed - 1))
                    rows.append(dict(dataset="mnist", activation="tanh", param=param, algorithm="pc",
                                     width=512 if axis == "depth" else size, depth=size if axis == "depth" else 8,
                                     seed=seed, eta=eta, beta=beta, min_train_loss=loss, status="ok"))
    return pd.DataFrame(rows)


def write_sweep(results, records, name="toy"):
    """Synthetic records as a sweep's files, with the columns a run adds that `synthetic` leaves out."""
    filled = dict(inference_steps=records.depth, batch_size=64, epochs=1.0, final_train_loss=records.get("min_train_loss"),
                  step_of_min=10, steps_run=100, test_acc_final=90.0, test_acc_max=90.0, wall_s=1.0, device="cpu",
                  code_version="test", jax_version="test", created_at=pd.Timestamp("2026-01-01", tz="UTC"))
    records = records.assign(**{k: v for k, v in filled.items() if k not in records.columns})
    for (param, width, depth), cell in records.groupby(["param", "width", "depth"]):
        write_cell(results, name, f"{param}-N{width}-H{depth}", cell)


def learnable_mnist(seed: int, n_train: int, n_test: int) -> dict[str, bytes]:
    """The four MNIST IDX files of dim noise with the label drawn in: class k lights row 2k + 4, so
    that a small network learns it (test accuracy well above chance within a few epochs)."""
    rng = np.random.default_rng(seed)
    labels = {n: rng.integers(0, 10, count) for n, count in (("train", n_train), ("test", n_test))}
    images = {n: rng.integers(0, 64, (len(y), 28, 28)) for n, y in labels.items()}
    for n, y in labels.items():
        images[n][np.arange(len(y)), 2 * y + 4, :] = 255
    return {FILES["x_train"]: idx_bytes(images["train"]), FILES["y_train"]: idx_bytes(labels["train"]),
            FILES["x_test"]: idx_bytes(images["test"]), FILES["y_test"]: idx_bytes(labels["test"])}


def patch(records, size, etas, betas, axis="depth"):
    """`records` with the points of `size` along `axis` cut to the (η, β) rectangle `etas` × `betas`,
    as a `grid.targets: patch` sweep trains them."""
    outside = (records[axis] == size) & ~(records.eta.isin(etas) & records.beta.isin(betas))
    return records[~outside].reset_index(drop=True)


def pytest_collection_modifyitems(items):
    """The Ray tests first: with `-n 2 --dist loadgroup` (make test) one worker runs them from the
    start while the other takes the rest, instead of their minute and a half coming last."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)
