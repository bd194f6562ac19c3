"""The grid trainer: training steps against a jax.grad reference and by hand, grids, chunks, stopping rules."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import classification_data, random_batches, random_net, ref_forward, ref_train

from mupc_sweep import CellConfig, train_cell, train_points
from mupc_sweep.pcn import Weights, init_weights, scalings
from mupc_sweep.records import cell_records, loss_summary
from mupc_sweep.device import GPU_XLA_FLAG, xla_flags
from mupc_sweep.step import DIVERGED, NO_LEARNING, OK, Net, init_state, point_step
from mupc_sweep.train import balanced_chunk, network


def test_tiny_linear_network_by_hand(x64):
    # D = N = C = 1, H = 2, SP (all a = 1), linear; x = 1, y = 2; W = (0.5, 0.5, 1); β = 0.1, η = 0.01, T = 1.
    # Feedforward: z1 = 0.5, z2 = 0.5 + 0.5·0.5 = 0.75, ŷ = 0.75, loss = ½(2 − 0.75)² = 0.78125.
    # Inference from the feedforward pass: only z2 moves, z2 ← 0.75 + β·W3·(y − ŷ) = 0.875.
    # Errors: e1 = 0, e2 = 0.875 − 0.75 = 0.125, e_out = 2 − 0.875 = 1.125.
    # ∇W = (−e1·x, −e2·z1, −e_out·z2) = (0, −0.0625, −0.984375); Adam's first step is −η·sign(g).
    # W = (0.5, 0.51, 1.01); step 2: z1 = 0.5, z2 = 0.755, ŷ = 0.76255, loss = ½·1.23745² = 0.76564125.
    weights = [np.array([[0.5]]), np.array([[0.5]]), np.array([[1.0]])]
    xs, ys = np.ones((2, 1, 1)), np.full((2, 1, 1), 2.0)
    kw = dict(activation="linear", param="sp", etas=np.array([0.01]), betas=np.array([0.1]), inference_steps=1)
    losses, _ = train_points(weights, xs, ys, **kw)
    np.testing.assert_allclose(losses[0], [0.78125, 0.76564125], rtol=1e-7)
    _, after_one = train_points(weights, xs[:1], ys[:1], **kw)
    np.testing.assert_allclose([w[0, 0, 0] for w in after_one], [0.5, 0.51, 1.01], rtol=1e-7)


@pytest.mark.parametrize("activation,param,steps,depth", [
    ("tanh", "mupc", None, 3), ("relu", "sp", 2, 3), ("linear", "mupc", 1, 3),
    ("tanh", "mupc", None, 6), ("relu", "mupc", 3, 6), ("tanh", "sp", 9, 6),  # windows 2, 4, 6; T < H; T > H
    ("tanh", "mupc", None, 1), ("relu", "sp", 3, 1),  # one hidden layer: no hidden weights, no windows
])
def test_train_points_matches_the_autodiff_reference(x64, activation, param, steps, depth):
    d_in, width, d_out = 6, 5, 4
    ws = random_net(0, d_in, width, depth, d_out)
    if param == "sp":
        ws = [w / np.sqrt(w.shape[1]) for w in ws]
    xs, ys = random_batches(1, 4, 3, d_in, d_out)
    etas, betas = np.array([0.05, 0.01, 0.2]), np.array([0.5, 0.1, 1.0])
    t = depth if steps is None else steps
    losses, final = train_points(ws, xs, ys, activation=activation, param=param, etas=etas, betas=betas, inference_steps=t)
    assert losses.shape == (3, 4) and [w.shape for w in final] == [(3, *w.shape) for w in ws]
    for g in range(3):
        ref_losses, ref_ws = ref_train(ws, xs, ys, activation=activation, param=param, eta=etas[g], beta=betas[g],
                                       inference_steps=t)
        np.testing.assert_allclose(losses[g], ref_losses, rtol=1e-9)
        for got, want in zip(final, ref_ws):  # Adam's g/|g| turns rounding in near-zero gradients into ~η·1e-8
            np.testing.assert_allclose(got[g], want, rtol=1e-8, atol=1e-8)


def test_vmapped_grid_equals_points_run_one_by_one(x64):
    ws = random_net(2, 8, 16, 4, 3)
    xs, ys = random_batches(3, 5, 4, 8, 3)
    etas, betas = np.array([0.1, 0.05, 0.01, 0.1]), np.array([0.5, 1.0, 0.1, 0.05])
    kw = dict(activation="tanh", param="mupc", inference_steps=4)
    losses, final = train_points(ws, xs, ys, etas=etas, betas=betas, **kw)
    for g in range(4):
        one, one_final = train_points(ws, xs, ys, etas=etas[g:g + 1], betas=betas[g:g + 1], **kw)
        assert losses.dtype == np.float64
        np.testing.assert_allclose(losses[g], one[0], rtol=1e-10)
        for a, b in zip(final, one_final):
            np.testing.assert_allclose(a[g], b[0], rtol=1e-9, atol=1e-9)


def small_cell(**overrides) -> CellConfig:
    settings = dict(width=16, depth=3, activation="tanh", batch_size=16, epochs=1.0, eval_every=10)
    return CellConfig(**{**settings, **overrides})


def test_cell_chunks_and_seeds(x64):
    x_train, y_train, x_test, y_test = classification_data(0, 320, 100)
    data = (x_train.astype(np.float64), y_train, x_test.astype(np.float64), y_test)
    seeds = np.array([0, 0, 1, 0, 1])
    etas = np.array([0.05, 0.05, 0.05, 0.01, 0.01])
    betas = np.array([0.5, 0.5, 0.5, 0.1, 0.1])
    results = [train_cell(small_cell(), *data, seeds, etas, betas, chunk=c) for c in (1, 2)]  # unbatched; padded
    for other in results[1:]:
        np.testing.assert_allclose(other.losses, results[0].losses, rtol=1e-10)
        np.testing.assert_array_equal(other.test_acc_final, results[0].test_acc_final)
        np.testing.assert_array_equal(other.status, results[0].status)
    r = results[0]
    assert results[1].chunk == 2 and r.chunk == 1
    assert r.losses.shape == (5, 20) and list(r.eval_steps) == [10, 20] and r.eval_acc.shape == (5, 2)
    np.testing.assert_array_equal(r.losses[0], r.losses[1])  # same seed and rates: same weights, same batches
    assert r.losses.dtype == np.float64
    assert r.losses[0, 0] == r.losses[3, 0]  # same seed: same first feedforward loss
    assert r.losses[0, 0] != pytest.approx(r.losses[2, 0], rel=1e-3)  # another seed: other weights
    assert np.all(r.status[:3] == OK) and np.all(r.steps_run[:3] == 20)


def test_accuracies_are_exact_fractions_of_the_test_set():
    data = classification_data(1, 96, 30)  # 30 test examples: percentages 10/3 apart, inexact in float32
    r = train_cell(small_cell(epochs=2.0), *data, [0], [0.05], [0.5])
    for acc in (r.test_acc_final, r.eval_acc[:, 0]):
        correct = acc * 30 / 100  # float32 rounding would leave ~1e-6 here
        np.testing.assert_allclose(correct, np.round(correct), rtol=0, atol=1e-12)
        assert acc.dtype == np.float64


def test_a_diverged_point_is_frozen_and_the_others_go_on():
    ws = random_net(4, 6, 8, 3, 3, np.float32)
    xs, ys = random_batches(5, 6, 4, 6, 3, np.float32)
    kw = dict(activation="linear", param="mupc", inference_steps=3)
    losses, final = train_points(ws, xs, ys, etas=np.array([0.01, 0.01]), betas=np.array([0.1, 1e30]), **kw)
    alone, _ = train_points(ws, xs, ys, etas=np.array([0.01]), betas=np.array([0.1]), **kw)
    np.testing.assert_allclose(losses[0], alone[0], rtol=2e-5)
    first_bad = int(np.argmax(~np.isfinite(losses[1])))
    assert first_bad >= 1 and np.all(np.isfinite(losses[1, :first_bad])) and np.all(np.isnan(losses[1, first_bad + 1:]))
    _, at_divergence = train_points(ws, xs[:first_bad], ys[:first_bad], etas=np.array([0.01]), betas=np.array([1e30]), **kw)
    for frozen, then in zip(final, at_divergence):
        np.testing.assert_array_equal(frozen[1], then[0])


def test_cell_records_divergence_and_no_learning():
    x_train, y_train, x_test, y_test = classification_data(1, 640, 200)
    seeds, etas, betas = np.zeros(2, int), np.array([0.05, 0.05]), np.array([0.5, 1e30])
    r = train_cell(small_cell(activation="linear"), x_train, y_train, x_test, y_test, seeds, etas, betas)
    assert list(r.status) == [OK, DIVERGED]
    assert r.steps_run[0] == 40 and r.eval_acc[0, 0] > 15
    records = cell_records(r, "synthetic")
    bad = records.iloc[1]
    assert bad.status == "diverged" and bad.steps_run == r.steps_run[1] < 40
    assert bad.min_train_loss == np.nanmin(r.losses[1][np.isfinite(r.losses[1])])
    assert not np.isfinite(bad.final_train_loss)

    _, noise_train, _, _ = classification_data(2, 640, 10, learnable=False)
    r = train_cell(small_cell(), x_train, noise_train, *classification_data(3, 10, 2000, learnable=False)[2:],
                   seeds, etas, np.array([0.5, 0.1]))
    assert list(r.status) == [NO_LEARNING, NO_LEARNING]
    assert np.all(r.steps_run == 10) and np.all(np.isnan(r.losses[:, 10:])) and np.all(r.eval_acc[:, 0] < 15)
    assert set(cell_records(r, "noise").status) == {"no_learning"}


def test_no_learning_is_judged_only_at_the_first_evaluation():
    x_train, y_train, x_test, y_test = classification_data(4, 640, 500)
    rng = np.random.default_rng(0)
    late_noise = np.where(np.arange(500) < 250, y_test, rng.integers(0, 10, 500))  # caps accuracy near 55 %
    r = train_cell(small_cell(eval_every=30), x_train, y_train, x_test, late_noise, [0], [0.05], [0.5])
    assert r.status[0] == OK and r.steps_run[0] == 40 and r.eval_acc[0, 0] > 15


def test_loss_summary_by_hand():
    nan = np.nan
    losses = np.array([[3.0, 2.0, 2.5, nan], [1.0, nan, nan, nan], [nan] * 4, [4.0, 3.0, 1.0, 2.0], [2.0, 1.5, nan, nan]])
    steps_run = np.array([3, 2, 1, 4, 2])  # point 1 diverged at step 1, point 2 at step 0, point 4 stopped at 2
    min_loss, step_of_min, final = loss_summary(losses, steps_run)
    np.testing.assert_array_equal(min_loss, [2.0, 1.0, nan, 1.0, 1.5])
    np.testing.assert_array_equal(step_of_min, [1, 0, -1, 2, 1])
    np.testing.assert_array_equal(final, [2.5, nan, nan, 2.0, 1.5])


def test_bp_step_is_adam_on_the_autodiff_loss_gradient(x64):
    d_in, width, depth, d_out = 5, 4, 3, 2
    ws = random_net(6, d_in, width, depth, d_out)
    xs, ys = random_batches(7, 3, 4, d_in, d_out)
    net = Net("relu", "bp", depth, scalings("mupc", d_in, width, depth))
    state = init_state(Weights(jnp.asarray(ws[0]), jnp.stack(ws[1:-1]), jnp.asarray(ws[-1])), net)
    opt, ref_ws = optax.adam(0.05), list(ws)
    ref_state = opt.init(ref_ws)
    for x, y in zip(xs, ys):
        state, loss, residual = point_step(state, jnp.asarray(x.T), jnp.asarray(y.T), 0.05, 0.0, net)  # columns
        assert np.isnan(residual)  # bp has no inference

        def half_mse(ws):
            return 0.5 * jnp.sum((ref_forward(ws, x, "relu", "mupc")[1] - y) ** 2) / x.shape[0]

        ref_loss, grads = jax.value_and_grad(half_mse)(ref_ws)
        updates, ref_state = opt.update(grads, ref_state, ref_ws)
        ref_ws = optax.apply_updates(ref_ws, updates)
        assert float(loss) == pytest.approx(float(ref_loss), rel=1e-10)
    np.testing.assert_allclose(state.weights.w_hidden, np.stack(ref_ws[1:-1]), rtol=1e-9)


def test_bp_cell_trains_and_records_null_beta():
    data = classification_data(5, 320, 100)
    r = train_cell(small_cell(algorithm="bp"), *data, [0, 0], [0.05, 0.01], [np.nan, np.nan])
    assert np.all(r.status == OK) and np.nanmin(r.losses[:, -5:]) < r.losses[:, 0].min()
    assert cell_records(r, "synthetic").beta.isna().all()


def test_float64_path_with_jax_enable_x64():
    script = """
import json, numpy as np
from mupc_sweep import train_points
rng = np.random.default_rng(0)
ws = [rng.normal(size=s) for s in [(4, 3), (4, 4), (2, 4)]]
xs = rng.normal(size=(2, 5, 3)); ys = np.eye(2)[rng.integers(0, 2, (2, 5))]
out = {}
for dtype in ("float64", "float32"):
    losses, final = train_points([w.astype(dtype) for w in ws], xs.astype(dtype), ys.astype(dtype),
                                 activation="tanh", param="mupc", etas=np.array([0.1]), betas=np.array([0.5]),
                                 inference_steps=2)
    out[dtype] = [str(losses.dtype), str(final[0].dtype), losses[0].tolist()]
print(json.dumps(out))
"""
    env = {**os.environ, "JAX_ENABLE_X64": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["float64"][:2] == ["float64", "float64"] and out["float32"][:2] == ["float32", "float32"]
    rng = np.random.default_rng(0)
    ws = [rng.normal(size=s) for s in [(4, 3), (4, 4), (2, 4)]]
    xs = rng.normal(size=(2, 5, 3))
    ys = np.eye(2)[rng.integers(0, 2, (2, 5))]
    with jax.enable_x64(True):
        ref, _ = ref_train(ws, xs, ys, activation="tanh", param="mupc", eta=0.1, beta=0.5, inference_steps=2)
    np.testing.assert_allclose(out["float64"][2], ref, rtol=1e-12)
    assert np.max(np.abs(np.array(out["float32"][2]) - ref) / ref) > 1e-12  # float32 really is float32


def test_program_size_grows_with_log_depth():
    """One loop body per inference window: each doubling of H (with T = H) adds the same few equations."""

    def n_equations(depth):
        net = network(CellConfig(width=8, depth=depth), 4)
        state = init_state(init_weights(jax.random.PRNGKey(0), "mupc", 4, 8, depth, 2), net)
        jaxpr = jax.make_jaxpr(lambda s: point_step(s, jnp.ones((4, 3)), jnp.ones((2, 3)), 0.1, 0.1, net))(state)
        return len(jaxpr.eqns)

    growth = np.diff([n_equations(depth) for depth in (16, 32, 64, 128)])
    assert growth[0] > 0 and np.all(growth == growth[0])


@pytest.mark.parametrize("algorithm", ["pc", "bp"])
def test_every_product_of_the_cell_program_is_full_float32(algorithm):
    """No product may fall to JAX's GPU default, which rounds float32 operands to TF32."""
    from mupc_sweep import train as train_module

    x_train, y_train, x_test, y_test = (jnp.asarray(a) for a in classification_data(0, 64, 16))
    args = (x_train, y_train, x_test, y_test, jnp.zeros(1, jnp.uint32), jnp.zeros(2, jnp.int32),
            jnp.full(2, 1e-3, jnp.float32), jnp.full(2, 0.1, jnp.float32), jnp.asarray(0, jnp.int32))
    cfg = small_cell(algorithm=algorithm)
    text = train_module._train_cell.lower(*args, cfg=cfg, n_classes=10, chunk=2).as_text()
    dots = [line for line in text.splitlines() if "dot_general" in line]
    assert len(dots) >= 8  # feedforward, inference or backprop, weight gradients, evaluation
    assert all("precision = [HIGHEST, HIGHEST]" in line for line in dots)


def test_every_product_of_the_verification_entry_point_is_full_float32():
    from mupc_sweep import verify

    w = init_weights(jax.random.PRNGKey(0), "mupc", 4, 8, 3, 2)
    net = Net("tanh", "pc", 3, scalings("mupc", 4, 8, 3))
    xs, ys = jnp.ones((2, 5, 4)), jnp.ones((2, 5, 2))
    text = verify._train_points.lower(w, xs, ys, jnp.full(3, 0.1), jnp.full(3, 0.1), net=net).as_text()
    dots = [line for line in text.splitlines() if "dot_general" in line]
    assert len(dots) >= 6 and all("precision = [HIGHEST, HIGHEST]" in line for line in dots)


def test_xla_flags_add_the_gpu_compile_flag_and_keep_the_users_own():
    assert xla_flags({}) == GPU_XLA_FLAG
    assert xla_flags({"XLA_FLAGS": "--xla_dump_to=/tmp/hlo"}).split() == ["--xla_dump_to=/tmp/hlo", GPU_XLA_FLAG]
    assert xla_flags({"XLA_FLAGS": "--xla_gpu_enable_triton_gemm=true"}) == "--xla_gpu_enable_triton_gemm=true"
    similar = "--xla_gpu_enable_triton_gemm_int4=true"  # another option that only starts the same
    assert xla_flags({"XLA_FLAGS": similar}).split() == [similar, GPU_XLA_FLAG]


def test_a_cpu_process_accepts_the_gpu_compile_flag():
    """XLA aborts on flags it does not know; `mupc-sweep train` sets this one on every machine."""
    env = {**os.environ, "XLA_FLAGS": xla_flags({}), "JAX_PLATFORMS": "cpu"}
    code = "import jax, jax.numpy as jnp; print(float(jax.jit(lambda a: a @ a)(jnp.eye(2)).sum()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "2.0", out.stderr


@pytest.mark.parametrize("overrides,message", [
    (dict(activation="gelu"), "activation: must be one of linear, tanh, relu; got 'gelu'"),
    (dict(param="ntk"), "param: must be one of mupc, sp"),
    (dict(algorithm="ep"), "algorithm: must be one of pc, bp"),
    (dict(width=0), "width: must be an integer of at least 1"),
    (dict(batch_size=-64), "batch_size: must be an integer of at least 1"),
    (dict(epochs=0), "epochs: must be a positive number"),
    (dict(inference_steps=-1), "inference_steps: must be an integer of at least 0"),
])
def test_bad_cell_settings_are_one_clear_value_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_cell(**overrides)


def test_bad_grids_and_shapes_are_value_errors():
    data = classification_data(6, 64, 10)
    with pytest.raises(ValueError, match=r"etas\[0\]: must be a positive learning rate; got -0.1"):
        train_cell(small_cell(), *data, [0], [-0.1], [0.5])
    with pytest.raises(ValueError, match=r"betas\[0\]: must be a positive learning rate; got 0.0"):
        train_cell(small_cell(), *data, [0], [0.1], [0.0])
    with pytest.raises(ValueError, match="one length"):
        train_cell(small_cell(), *data, [0, 1], [0.1], [0.5])
    for seed in (-1, 2**32):
        with pytest.raises(ValueError, match=r"seeds\[0\]: must be an integer from 0 to 2\*\*32 - 1"):
            train_cell(small_cell(), *data, [seed], [0.1], [0.5])
    with pytest.raises(ValueError, match="chunk: must be an integer of at least 1; got 0"):
        train_cell(small_cell(), *data, [0], [0.1], [0.5], chunk=0)
    ws = random_net(0, 3, 4, 2, 2, np.float32)
    xs, ys = random_batches(0, 2, 2, 3, 2, np.float32)
    kw = dict(activation="tanh", param="mupc", etas=np.array([0.1]), betas=np.array([0.1]), inference_steps=1)
    with pytest.raises(ValueError, match=r"xs: must have shape \(S, B, 3\)"):
        train_points(ws, xs[..., :2], ys, **kw)
    with pytest.raises(ValueError, match=r"ys: must have shape \(2, 2, 2\)"):
        train_points(ws, xs, ys[..., :1], **kw)
    with pytest.raises(ValueError, match=r"weights\[1\]: must have shape \(out, 4\)"):
        train_points([ws[0], ws[1][:, :3], ws[2]], xs, ys, **kw)
    with pytest.raises(ValueError, match="etas, betas: must be 1-D and of one length"):
        train_points(ws, xs, ys, **{**kw, "betas": np.array([0.1, 0.2])})


def test_progress_reports_rise_to_completion():
    data = classification_data(7, 3200, 50)
    seen = []
    train_cell(small_cell(eval_every=1000), *data, [0, 1], [0.01, 0.01], [0.1, 0.1], chunk=1, progress=seen.append)
    assert len(seen) == 8  # 200 steps per point, a report every 50, two points one after the other
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and seen[0] == pytest.approx(0.125)


def test_balanced_chunks_keep_the_chunk_count_and_pad_less_than_one_point_a_chunk():
    assert balanced_chunk(56, 132) == 44 and balanced_chunk(111, 132) == 66 and balanced_chunk(8, 5) == 5
    for n_points in range(1, 60):
        for largest in range(1, n_points + 3):
            chunk, n_chunks = balanced_chunk(largest, n_points), -(-n_points // largest)
            assert chunk <= largest and -(-n_points // chunk) == n_chunks
            assert 0 <= chunk * n_chunks - n_points < n_chunks


def test_out_of_memory_halves_the_chunk_and_restarts(monkeypatch):
    from mupc_sweep import train as train_module

    real, chunks = train_module._train_cell, []

    def fake(*args, chunk, **kwargs):
        chunks.append(chunk)
        if chunk > 2:
            raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating the cell")
        return real(*args, chunk=chunk, **kwargs)

    monkeypatch.setattr(train_module, "_train_cell", fake)
    data = classification_data(8, 160, 20)
    r = train_cell(small_cell(eval_every=1000), *data, [0] * 5, [0.01] * 5, [0.1] * 5, chunk=8)
    assert chunks == [5, 2] and r.chunk == 2 and r.losses.shape == (5, 10)  # 8 for 5 points runs as 5
    assert np.all(r.losses == r.losses[0])  # five identical points

    monkeypatch.setattr(train_module, "_train_cell", lambda *a, **k: (_ for _ in ()).throw(
        jax.errors.JaxRuntimeError("INTERNAL: something else")))
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        train_cell(small_cell(eval_every=1000), *data, [0], [0.01], [0.1], chunk=4)
