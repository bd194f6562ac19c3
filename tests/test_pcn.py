"""The network maths against the energy written layer by layer and its jax.grad (float64).

The reference keeps examples as rows, (B, ·); the package keeps them as columns, (·, B).
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batches, random_net, ref_energy, ref_forward

from mupc_sweep import pcn
from mupc_sweep.cell import inference_windows

D, N, H, C, B = 7, 5, 4, 3, 6
COMBOS = list(itertools.product(pcn.ACTIVATIONS, pcn.PARAMS))


def stacked(ws: list) -> pcn.Weights:
    return pcn.Weights(jnp.asarray(ws[0]), jnp.stack([jnp.asarray(w) for w in ws[1:-1]]), jnp.asarray(ws[-1]))


def cols(a) -> jnp.ndarray:
    """Rows to columns: swap the last two axes."""
    return jnp.swapaxes(jnp.asarray(a), -1, -2)


def setup(seed: int, activation: str, param: str):
    ws = random_net(seed, D, N, H, C)
    xs, ys = random_batches(seed, 1, B, D, C)
    zs = list(np.random.default_rng(seed + 1).normal(size=(H, B, N)))
    return ws, xs[0], ys[0], zs, pcn.scalings(param, D, N, H)


def test_scalings_follow_table_1():
    s = pcn.scalings("mupc", 784, 512, 8)
    assert s.a_in == pytest.approx(1 / 28)
    assert s.a_hidden == pytest.approx(1 / math.sqrt(512 * 9))
    assert s.a_out == pytest.approx(1 / 512)
    assert pcn.scalings("sp", 784, 512, 8) == (1.0, 1.0, 1.0)


def test_initial_weights_have_the_tabled_distributions():
    key = jax.random.PRNGKey(0)
    mu = pcn.init_weights(key, "mupc", 300, 200, 3, 10)
    assert mu.w_in.shape == (200, 300) and mu.w_hidden.shape == (2, 200, 200) and mu.w_out.shape == (10, 200)
    assert abs(float(mu.w_hidden.mean())) < 0.01 and float(mu.w_hidden.std()) == pytest.approx(1.0, abs=0.01)
    sp = pcn.init_weights(key, "sp", 300, 200, 3, 10)
    for w, fan_in in ((sp.w_in, 300), (sp.w_hidden, 200), (sp.w_out, 200)):
        bound = 1 / math.sqrt(fan_in)
        assert float(jnp.abs(w).max()) <= bound
        assert float(jnp.abs(w).max()) > 0.95 * bound
    assert float(sp.w_hidden.std()) == pytest.approx(1 / math.sqrt(3 * 200), rel=0.02)


def test_same_key_gives_same_weights_and_other_keys_differ():
    a = pcn.init_weights(jax.random.PRNGKey(3), "mupc", 8, 4, 3, 2)
    b = pcn.init_weights(jax.random.PRNGKey(3), "mupc", 8, 4, 3, 2)
    c = pcn.init_weights(jax.random.PRNGKey(4), "mupc", 8, 4, 3, 2)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.allclose(a.w_hidden, c.w_hidden)


@pytest.mark.parametrize("activation,param", COMBOS)
def test_forward_is_the_spec_recursion(x64, activation, param):
    ws, x, y, _, s = setup(0, activation, param)
    z, y_hat = pcn.forward(stacked(ws), cols(x), s, activation)
    ref_zs, ref_y = ref_forward(ws, x, activation, param)
    np.testing.assert_allclose(z, cols(np.stack(ref_zs)), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(y_hat, cols(ref_y), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(pcn.predict(stacked(ws), cols(x), s, activation), cols(ref_y), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("activation,param", COMBOS)
def test_energy_is_the_spec_energy(x64, activation, param):
    ws, x, y, zs, s = setup(1, activation, param)
    got = pcn.energy(stacked(ws), cols(np.stack(zs)), cols(x), cols(y), s, activation)
    assert float(got) == pytest.approx(float(ref_energy(ws, zs, x, y, activation, param)), rel=1e-10)


@pytest.mark.parametrize("activation,param", COMBOS)
def test_energy_at_the_feedforward_pass_is_the_train_loss(x64, activation, param):
    ws, x, y, _, s = setup(2, activation, param)
    zs, y_hat = ref_forward(ws, x, activation, param)
    half_mse = 0.5 * np.sum((np.asarray(y_hat) - y) ** 2) / B
    assert float(ref_energy(ws, zs, x, y, activation, param)) == pytest.approx(half_mse, rel=1e-10)
    assert float(pcn.half_mse(cols(y_hat), cols(y))) == pytest.approx(half_mse, rel=1e-10)


@pytest.mark.parametrize("activation,param", COMBOS)
def test_activity_gradient_is_autodiff_of_the_energy(x64, activation, param):
    ws, x, y, zs, s = setup(3, activation, param)
    w = stacked(ws)
    z = cols(np.stack(zs))
    e, e_out = pcn.errors(w, z, pcn.input_drive(w, cols(x), s), cols(y), s, activation)
    got = pcn.activity_grad(pcn.transposes(w), z, e, e_out, s, activation)
    want = jax.grad(lambda zs: ref_energy(ws, zs, x, y, activation, param))(zs)
    np.testing.assert_allclose(got, cols(np.stack(want)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation,param", COMBOS)
def test_first_inference_gradient_only_moves_the_last_layer(x64, activation, param):
    ws, x, y, _, s = setup(4, activation, param)
    w = stacked(ws)
    z, y_hat = pcn.forward(w, cols(x), s, activation)
    got = pcn.output_activity_grad(w, z, cols(y) - y_hat, s, activation)
    want = jax.grad(lambda zs: ref_energy(ws, zs, x, y, activation, param))(list(cols(z)))
    np.testing.assert_allclose(got, cols(np.stack(want)), rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(got[:-1]) == 0)


@pytest.mark.parametrize("activation,param", COMBOS)
def test_weight_gradients_are_autodiff_of_the_energy(x64, activation, param):
    ws, x, y, zs, s = setup(5, activation, param)
    w, z = stacked(ws), cols(np.stack(zs))
    e, e_out = pcn.errors(w, z, pcn.input_drive(w, cols(x), s), cols(y), s, activation)
    got = pcn.weight_grads(z, cols(x), e, e_out, s, activation)
    want = jax.grad(lambda ws: ref_energy(ws, zs, x, y, activation, param))(ws)
    np.testing.assert_allclose(got.w_in, want[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.w_hidden, np.stack(want[1:-1]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.w_out, want[-1], rtol=1e-10, atol=1e-12)


def test_inference_windows_double_up_to_the_depth():
    assert inference_windows(8, 8) == [(2, 1), (4, 2), (8, 4)]
    assert inference_windows(6, 9) == [(2, 1), (4, 2), (6, 5)]
    assert inference_windows(8, 3) == [(2, 1), (4, 1)]
    assert inference_windows(1, 3) == [(1, 2)]
    assert inference_windows(8, 1) == inference_windows(8, 0) == []


@pytest.mark.parametrize("activation", pcn.ACTIVATIONS)
def test_inference_from_the_feedforward_pass_moves_one_more_layer_per_step(x64, activation):
    """The premise of the windows: on the reference energy, step t leaves all but the top t layers
    still, up to float64 rounding (the feedforward errors are (z + p) − z − p, not exactly 0)."""
    depth = 6
    ws = random_net(7, D, N, depth, C)
    xs, ys = random_batches(7, 1, B, D, C)
    x, y = xs[0], ys[0]
    zs, _ = ref_forward(ws, x, activation, "mupc")
    start = np.stack(zs)
    for t in range(1, depth + 1):
        grads = jax.grad(lambda zs: ref_energy(ws, zs, x, y, activation, "mupc"))(zs)
        zs = [z - 0.5 * g for z, g in zip(zs, grads)]
        moved = [float(np.max(np.abs(z - z0))) for z, z0 in zip(zs, start)]
        scale = float(np.max(np.abs(start)))
        assert max(moved[: depth - t], default=0.0) < 1e-13 * scale, moved
        assert min(moved[depth - t :]) > 1e-10 * scale, moved


@pytest.mark.parametrize("name,value,call", [
    ("activation", "sigmoid", lambda: pcn.activation_fns("sigmoid")),
    ("param", "ntk", lambda: pcn.scalings("ntk", 4, 4, 2)),
    ("param", "ntk", lambda: pcn.init_weights(jax.random.PRNGKey(0), "ntk", 4, 4, 2, 2)),
])
def test_unknown_options_name_the_argument_and_the_choices(name, value, call):
    with pytest.raises(ValueError, match=rf"^{name}: must be one of .*; got '{value}'\.$"):
        call()
