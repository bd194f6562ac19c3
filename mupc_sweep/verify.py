"""The verification entry point (README, "Verification entry point"): S training steps for G paired
(η, β) points from given weights and batches, through the same jitted `grid_step` that sweeps run."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from .cell import ACTIVATIONS, PARAMS, Activation, Param
from .checks import check_choice, check_int, check_rates
from .errors import InputError
from .pcn import Weights, from_layers, scalings, to_layers
from .step import Net, grid_step, init_state


def train_points(
    weights: list[np.ndarray],
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    activation: Activation,
    param: Param,
    etas: np.ndarray,
    betas: np.ndarray,
    inference_steps: int,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run S PC training steps (README, "What is trained") for G paired (η, β) points from the same initial weights.

    weights: L arrays (out, in); xs: (S, B, D); ys: (S, B, C) one-hot; etas, betas: (G,).
    Returns losses (G, S), each step's train_loss, and the final weights, each (G, out, in).
    Runs `grid_step`, the step sweeps run; computes in float64 when x64 is on and inputs are float64.
    """
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("param", param, PARAMS)
    check_int("inference_steps", inference_steps, minimum=0)
    w = from_layers(weights)
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    (d_out, width), d_in = w.w_out.shape, w.w_in.shape[1]
    if xs.ndim != 3 or xs.shape[2] != d_in:
        raise InputError(f"xs: must have shape (S, B, {d_in}); got {xs.shape}.")
    if ys.shape != (*xs.shape[:2], d_out):
        raise InputError(f"ys: must have shape {(*xs.shape[:2], d_out)}; got {ys.shape}.")
    etas, betas = np.asarray(etas, np.float64), np.asarray(betas, np.float64)
    if etas.ndim != 1 or etas.shape != betas.shape:
        raise InputError(f"etas, betas: must be 1-D and of one length; got shapes {etas.shape} and {betas.shape}.")
    check_rates("etas", etas.tolist())
    check_rates("betas", betas.tolist())
    depth = len(weights) - 1
    net = Net(activation, "pc", inference_steps, scalings(param, d_in, width, depth))
    dtype = w.w_in.dtype
    losses, final = _train_points(w, xs.astype(dtype), ys.astype(dtype), jnp.asarray(etas, dtype),
                                  jnp.asarray(betas, dtype), net=net)
    return np.asarray(losses), to_layers(jax.device_get(final))


@partial(jax.jit, static_argnames="net")
def _train_points(w: Weights, xs, ys, etas, betas, *, net: Net):
    n_points = etas.shape[0]
    state = jax.vmap(lambda w: init_state(w, net))(jax.tree.map(lambda a: jnp.broadcast_to(a, (n_points, *a.shape)), w))

    def step(state, batch):
        x, y = (jnp.broadcast_to(a.T, (n_points, *a.T.shape)) for a in batch)
        state, losses, _ = grid_step(state, x, y, etas, betas, net)
        return state, losses

    state, losses = jax.lax.scan(step, state, (xs, ys))
    return losses.T, state.weights
