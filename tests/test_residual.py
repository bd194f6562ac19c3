"""The inference residual ‖∇_z F(z_T)‖ / ‖∇_z F(z_0)‖: 0 where inference reaches the equilibrium in
closed form, falling with T at a stable β, equal to a float64 reference differentiated by jax.grad
apart from the cell program, and carried into records and curves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import classification_data, random_batches, random_net, ref_energy, ref_forward

from mupc_sweep import CellConfig, train_cell
from mupc_sweep.pcn import Weights, from_layers, scalings
from mupc_sweep.records import cell_curves, cell_records
from mupc_sweep.step import Net, pc_loss_and_grads


def residual(ws, x, y, *, activation, param, beta, steps):
    """The product's residual for one batch: x (B, D), y (B, C) as rows."""
    depth, width, d_in = len(ws) - 1, ws[0].shape[0], ws[0].shape[1]
    net = Net(activation, "pc", steps, scalings(param, d_in, width, depth))
    return float(pc_loss_and_grads(from_layers([jnp.asarray(w) for w in ws]), jnp.asarray(x.T), jnp.asarray(y.T),
                                   beta, net, jnp.asarray(True))[2])


def test_zero_where_one_step_reaches_the_equilibrium_in_closed_form(x64):
    """A linear network with one hidden layer, standard parameterisation, output weights s·Q (Q
    orthogonal): F = (1/B)[½‖z − W₁x‖² + ½‖y − sQz‖²] has the Hessian (1 + s²)/B · I, so one
    gradient step of size β = B/(1 + s²) lands on its minimum."""
    rng = np.random.default_rng(0)
    n, d, b, s = 3, 5, 4, 0.7
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    ws = [rng.normal(size=(n, d)), s * q]
    x, y = rng.normal(size=(b, d)), np.eye(n)[rng.integers(0, n, b)]
    assert residual(ws, x, y, activation="linear", param="sp", beta=b / (1 + s * s), steps=1) < 1e-12
    assert residual(ws, x, y, activation="linear", param="sp", beta=0.5 * b / (1 + s * s), steps=1) == pytest.approx(0.5)
    assert residual(ws, x, y, activation="linear", param="sp", beta=1.0, steps=0) == pytest.approx(1.0)


def test_it_falls_with_the_inference_steps_at_a_stable_beta(x64):
    ws = random_net(1, 6, 8, 4, 3)
    xs, ys = random_batches(2, 1, 5, 6, 3)
    values = [residual(ws, xs[0], ys[0], activation="tanh", param="mupc", beta=2.0, steps=t) for t in (1, 2, 4, 8, 16)]
    assert all(later < earlier for earlier, later in zip(values, values[1:])), values
    assert values[-1] < 0.5 * values[0]


@pytest.mark.parametrize("activation,param,steps", [("tanh", "mupc", 5), ("relu", "sp", 3)])
def test_it_equals_a_float64_reference_differentiated_apart_from_the_cell_program(x64, activation, param, steps):
    """T gradient steps on the layer-by-layer energy of conftest (its jax.grad), from the
    feedforward activities; the ratio of the gradient norms after and before."""
    ws = random_net(3, 7, 6, 4, 3)
    xs, ys = random_batches(4, 1, 5, 7, 3)
    x, y, beta = jnp.asarray(xs[0]), jnp.asarray(ys[0]), 0.8
    grad = jax.grad(lambda zs: ref_energy([jnp.asarray(w) for w in ws], zs, x, y, activation, param))
    zs, _ = ref_forward([jnp.asarray(w) for w in ws], x, activation, param)
    first = grad(zs)
    for _ in range(steps):
        zs = [z - beta * g for z, g in zip(zs, grad(zs))]
    norm = lambda gs: float(jnp.sqrt(sum(jnp.sum(g * g) for g in gs)))  # noqa: E731
    expected = norm(grad(zs)) / norm(first)
    got = residual(ws, xs[0], ys[0], activation=activation, param=param, beta=beta, steps=steps)
    assert got == pytest.approx(expected, rel=1e-10)


def test_records_and_curves_carry_it_at_the_kept_steps_and_bp_has_none():
    data = classification_data(0, 96, 30)
    pc = train_cell(CellConfig(width=8, depth=3, epochs=2.0, eval_every=100, batch_size=16), *data, [0, 0],
                    [0.05, 0.01], [0.5, 0.5], residual_every=4)
    assert list(pc.residual_steps) == [0, 4, 8] and pc.residuals.shape == (2, 3)
    assert np.all((pc.residuals > 0) & (pc.residuals < 1))
    records = cell_records(pc, "mnist")
    np.testing.assert_allclose(records.inference_residual.to_numpy(float), np.median(pc.residuals, axis=1))
    curves = cell_curves(pc, "mnist", every=4)
    kept = curves[curves.inference_residual.notna()]
    assert sorted(set(kept.step)) == [0, 4, 8] and len(kept) == 2 * 3
    bp = train_cell(CellConfig(width=8, depth=3, epochs=2.0, eval_every=100, batch_size=16, algorithm="bp"), *data,
                    [0], [0.01], [np.nan], residual_every=4)
    assert cell_records(bp, "mnist").inference_residual.isna().all()  # no inference: null, no error
