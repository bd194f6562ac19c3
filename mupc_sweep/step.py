"""One training step of one grid point (README, "What is trained"), and the same step vmapped over
the points of a chunk. Pure and jitted by its callers: the cell program (`train`) and the
verification entry point (`verify`) both run `grid_step`.

A PC step: record `train_loss` of the feedforward pass; T steps of z ← z − β∇_z F; one Adam(η)
step on ∇_W F at the final activities. A BP step: Adam(η) on the gradient of `train_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from .cell import Activation, Algorithm, inference_windows
from .pcn import (
    Scalings,
    Weights,
    activity_grad,
    errors,
    forward,
    half_mse,
    output_activity_grad,
    predict,
    transposes,
    weight_grads,
)

STATUSES = ("ok", "diverged", "no_learning")
OK, DIVERGED, NO_LEARNING = range(3)

# Every product of the trainer runs in full float32 (or float64) on every device. JAX's default
# would let Ampere and later GPUs round float32 operands to TF32 (10-bit mantissa); that changes the
# results between a laptop and a cluster and buys little here, since a step's B = 64-column products
# are bound by reading the weights (benchmarks/RESULTS.md).
MATMUL_PRECISION = "float32"

# Adam with optax's defaults (b1 = 0.9, b2 = 0.999, eps = 1e-8); the step is −η times its output,
# so η stays a traced per-point value. The default of `Net.optimizer`; never reassigned.
ADAM = optax.scale_by_adam()


@dataclass(frozen=True)
class Net:
    """What the step function needs to know statically about a network, and the direction the
    weights step along (−η times `optimizer`'s output): Adam for the trainer, another optax
    transformation where a benchmark or a test passes one."""

    activation: Activation
    algorithm: Algorithm
    inference_steps: int
    scalings: Scalings
    optimizer: optax.GradientTransformation = ADAM


class PointState(NamedTuple):
    """Everything one grid point carries from step to step."""

    weights: Weights
    optimizer: optax.OptState  # Adam's moments for the trainer
    alive: Array  # () bool: still training
    status: Array  # () int32: OK, DIVERGED or NO_LEARNING
    steps_run: Array  # () int32: steps whose train_loss was recorded


def init_state(weights: Weights, net: Net) -> PointState:
    return PointState(weights, net.optimizer.init(weights), jnp.array(True), jnp.array(OK), jnp.array(0))


def pc_loss_and_grads(
    w: Weights, x: Array, y: Array, beta: Array, net: Net, measure: Array | None = None
) -> tuple[Array, Weights, Array]:
    """train_loss of the feedforward pass, ∇_W F after T inference steps of size β, and where
    `measure` holds the inference residual (`inference_residual`; NaN otherwise); x (D, B), y (C, B).

    Step 1 moves only z_H; steps 2..T run on the windows of `inference_windows`.
    """
    s, act = net.scalings, net.activation
    z_ff, y_hat = forward(w, x, s, act)  # (H, N, B); z_ff[0] = a_1 W_1 x, constant while x is clamped
    z = z_ff
    if net.inference_steps >= 1 or measure is not None:
        g_ff = output_activity_grad(w, z_ff, y - y_hat, s, act)  # ∇_z F at the feedforward activities
    if net.inference_steps >= 1:
        z = z - beta * g_ff
    depth = z.shape[0]
    for k, n in inference_windows(depth, net.inference_steps):
        low = depth - k
        top = Weights(w.w_in, w.w_hidden[low:], w.w_out)
        z_top = _infer(top, z[low:], z_ff[low], y, beta, n, net)
        z = jnp.concatenate([z[:low], z_top], axis=0)
    e, e_out = errors(w, z, z_ff[0], y, s, act)
    residual = jnp.full((), jnp.nan, y.dtype) if measure is None else jax.lax.cond(
        measure, lambda: inference_residual(w, z, e, e_out, g_ff, net), lambda: jnp.full((), jnp.nan, y.dtype))
    return half_mse(y_hat, y), weight_grads(z, x, e, e_out, s, act), residual


def inference_residual(w: Weights, z: Array, e: Array, e_out: Array, g_ff: Array, net: Net) -> Array:
    """How far inference got towards the activity equilibrium: ‖∇_z F(z_T)‖ / ‖∇_z F(z_0)‖ over all
    hidden layers and the batch, from the errors `e`, `e_out` at the final activities z_T and the
    gradient `g_ff` at the feedforward ones z_0. 0 at equilibrium; 1 where inference did not move."""
    g = activity_grad(transposes(w), z, e, e_out, net.scalings, net.activation)
    return jnp.sqrt(jnp.sum(g * g) / jnp.sum(g_ff * g_ff))


def _infer(top: Weights, z_top: Array, drive: Array, y: Array, beta: Array, n: int, net: Net) -> Array:
    """n inference steps on the top layers alone: a network whose first layer's input is frozen, so
    its error is z − `drive`, that layer's feedforward value.

    The window's transposes are formed here, once, from its own slice of W: sliced from a Wᵀ stack
    of all layers instead, XLA's CPU backend fuses the transpose into the slice, which then runs
    about four times slower per layer than a plain transpose.
    """
    s, act = net.scalings, net.activation
    top_t = transposes(top)

    def step(z, _):
        e, e_out = errors(top, z, drive, y, s, act)
        return z - beta * activity_grad(top_t, z, e, e_out, s, act), None

    return jax.lax.scan(step, z_top, length=n)[0]


def bp_loss_and_grads(w: Weights, x: Array, y: Array, net: Net) -> tuple[Array, Weights]:
    """train_loss and its gradient by backprop (the Depth-μP baseline)."""
    return jax.value_and_grad(lambda w: half_mse(predict(w, x, net.scalings, net.activation), y))(w)


def point_step(
    state: PointState, x: Array, y: Array, eta: Array, beta: Array, net: Net, measure: Array | None = None
) -> tuple[PointState, Array, Array]:
    """One training step of one point on a batch x (D, B), y (C, B): its new state, its train_loss
    and, where `measure` holds, its inference residual (NaN otherwise, for bp, and once stopped). A
    non-finite train_loss freezes the point as diverged."""
    residual = jnp.full((), jnp.nan, x.dtype)
    if net.algorithm == "pc":
        loss, grads, residual = pc_loss_and_grads(state.weights, x, y, beta, net, measure)
    else:
        loss, grads = bp_loss_and_grads(state.weights, x, y, net)
    direction, optimizer = net.optimizer.update(grads, state.optimizer)
    weights = jax.tree.map(lambda w, d: w - eta * d, state.weights, direction)
    finite = jnp.isfinite(loss)
    update = state.alive & finite

    def keep(new, old):
        return jax.tree.map(lambda n, o: jnp.where(update, n, o), new, old)

    new_state = PointState(
        weights=keep(weights, state.weights),
        optimizer=keep(optimizer, state.optimizer),
        alive=update,
        status=jnp.where(state.alive & ~finite, DIVERGED, state.status),
        steps_run=state.steps_run + state.alive,
    )
    return new_state, jnp.where(state.alive, loss, jnp.nan), jnp.where(state.alive, residual, jnp.nan)


def grid_step(
    states: PointState, x: Array, y: Array, etas: Array, betas: Array, net: Net, measure: Array | None = None
) -> tuple[PointState, Array, Array]:
    """`point_step` for every point of a chunk: leading axis G on all but `net` and `measure` (one
    flag for every point, so the residual's products run only at the steps that keep it). Sweeps and
    `train_points` both run this, every product in `MATMUL_PRECISION`. One point runs unbatched:
    XLA's CPU backend compiles a size-1 vmap of the step about 40 % slower."""
    with jax.default_matmul_precision(MATMUL_PRECISION):
        if etas.shape[0] == 1:
            out = point_step(*jax.tree.map(lambda a: a[0], (states, x, y, etas, betas)), net, measure)
            return jax.tree.map(lambda a: a[None], out)
        return jax.vmap(point_step, in_axes=(0, 0, 0, 0, 0, None, None))(states, x, y, etas, betas, net, measure)
