r"""The residual predictive-coding network: parameterisations (the paper's Table 1), forward pass,
energy (Eq. 1 with the skips of Eq. 23), and its activity and weight gradients.

Notation: input dimension D, output dimension C, width N, H hidden layers (the *depth*), batch B.
Examples are columns, as in the equations: x is (D, B), y and ŷ are (C, B). Activities are
stacked on a layer axis, ``z: (H, N, B)`` with ``z[0]`` = z_1, and the hidden weights W_2..W_H on
a matching axis, ``w_hidden: (H-1, N, N)``, so that every layer's error and gradient is one
batched product: PC inference is layer-parallel, and compile time grows only with the number of
inference windows (log₂ H, see `cell.inference_windows`), not with depth.

$$
F = \frac{1}{B}\sum_i \Big[\tfrac12\|z_1 - a_1 W_1 x\|^2
    + \sum_{l=2}^{H} \tfrac12\|z_l - z_{l-1} - a_h W_l\,\phi(z_{l-1})\|^2
    + \tfrac12\|y - a_L W_L\,\phi(z_H)\|^2\Big]
$$

Every function here is pure and shape-polymorphic in the dtype (float32 or float64).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from .cell import ACTIVATIONS, PARAMS, Activation, Param
from .checks import choice_error
from .errors import InputError


class Weights(NamedTuple):
    """All weights of one network, stored (out, in)."""

    w_in: Array  # (N, D)        W_1
    w_hidden: Array  # (H-1, N, N)  W_2 .. W_H
    w_out: Array  # (C, N)        W_L


def from_layers(layers: list) -> Weights:
    """`Weights` from L = H + 1 matrices (out, in): W_1 (N, D), W_2..W_H (N, N), W_L (C, N);
    InputError naming the first matrix of the wrong shape."""
    w = [jnp.asarray(a) for a in layers]
    if len(w) < 2:
        raise InputError(f"weights: must hold at least 2 matrices (input and output); got {len(w)}.")
    for i, (a, b) in enumerate(zip(w[:-1], w[1:])):
        if a.ndim != 2 or b.ndim != 2 or b.shape[1] != a.shape[0]:
            raise InputError(f"weights[{i + 1}]: must have shape (out, {a.shape[0]}) to follow weights[{i}] of "
                             f"shape {a.shape}; got {b.shape}.")
    width = w[0].shape[0]
    for i, a in enumerate(w[1:-1], start=1):
        if a.shape != (width, width):
            raise InputError(f"weights[{i}]: a hidden layer must be square ({width}, {width}); got {a.shape}.")
    hidden = jnp.stack(w[1:-1]) if len(w) > 2 else jnp.zeros((0, width, width), w[0].dtype)
    return Weights(w[0], hidden, w[-1])


def to_layers(w: Weights) -> list:
    """The L matrices of `w` as a list (a leading point axis, if any, kept on each)."""
    hidden = [w.w_hidden[..., i, :, :] for i in range(w.w_hidden.shape[-3])]
    return [w.w_in, *hidden, w.w_out]


class Scalings(NamedTuple):
    """Layer premultipliers a_1, a_h, a_L of Table 1."""

    a_in: float
    a_hidden: float
    a_out: float


def scalings(param: Param, d_in: int, width: int, depth: int) -> Scalings:
    """Table 1: μPC uses a_1 = 1/√D, a_h = 1/√(N·L), a_L = 1/N with L = H + 1; SP uses ones."""
    if param == "mupc":
        return Scalings(1 / math.sqrt(d_in), 1 / math.sqrt(width * (depth + 1)), 1 / width)
    if param == "sp":
        return Scalings(1.0, 1.0, 1.0)
    raise choice_error("param", param, PARAMS)


def init_weights(
    key: Array, param: Param, d_in: int, width: int, depth: int, d_out: int, dtype=jnp.float32
) -> Weights:
    """μPC: every W ~ N(0, 1). SP: W ~ U(−1/√fan_in, 1/√fan_in)."""
    k_in, k_hidden, k_out = jax.random.split(key, 3)
    shapes = ((k_in, (width, d_in)), (k_hidden, (depth - 1, width, width)), (k_out, (d_out, width)))
    if param == "mupc":
        return Weights(*(jax.random.normal(k, s, dtype) for k, s in shapes))
    if param == "sp":
        return Weights(
            *(
                jax.random.uniform(k, s, dtype, -1 / math.sqrt(s[-1]), 1 / math.sqrt(s[-1]))
                for k, s in shapes
            )
        )
    raise choice_error("param", param, PARAMS)


def activation_fns(activation: Activation) -> tuple[Callable[[Array], Array], Callable[[Array], Array]]:
    """φ and its derivative φ' (elementwise)."""
    if activation == "linear":
        return (lambda z: z), jnp.ones_like
    if activation == "tanh":
        return jnp.tanh, lambda z: 1 - jnp.tanh(z) ** 2
    if activation == "relu":
        return jax.nn.relu, lambda z: (z > 0).astype(z.dtype)
    raise choice_error("activation", activation, ACTIVATIONS)


def input_drive(w: Weights, x: Array, s: Scalings) -> Array:
    """a_1 W_1 x for a batch x: (D, B) -> (N, B). Constant during inference (x is clamped)."""
    return s.a_in * (w.w_in @ x)


def forward(w: Weights, x: Array, s: Scalings, activation: Activation) -> tuple[Array, Array]:
    """Feedforward pass, the activity initialisation: x (D, B) -> z (H, N, B), ŷ (C, B)."""
    phi, _ = activation_fns(activation)

    def layer(z_prev, w_l):
        z_l = z_prev + s.a_hidden * (w_l @ phi(z_prev))
        return z_l, z_l

    z_1 = input_drive(w, x, s)
    z_h, z_rest = jax.lax.scan(layer, z_1, w.w_hidden)
    z = jnp.concatenate([z_1[None], z_rest], axis=0)
    return z, s.a_out * (w.w_out @ phi(z_h))


def predict(w: Weights, x: Array, s: Scalings, activation: Activation) -> Array:
    """ŷ of the feedforward pass without keeping the activities: x (D, B) -> (C, B)."""
    phi, _ = activation_fns(activation)

    def layer(z_prev, w_l):
        return z_prev + s.a_hidden * (w_l @ phi(z_prev)), None

    z_h, _ = jax.lax.scan(layer, input_drive(w, x, s), w.w_hidden)
    return s.a_out * (w.w_out @ phi(z_h))


def half_mse(y_hat: Array, y: Array) -> Array:
    """train_loss = ½ · (1/B) Σ_i ‖ŷ_i − y_i‖² for (C, B) arrays."""
    return 0.5 * jnp.sum((y_hat - y) ** 2) / y.shape[-1]


def errors(
    w: Weights, z: Array, drive: Array, y: Array, s: Scalings, activation: Activation
) -> tuple[Array, Array]:
    """Prediction errors of every layer at once.

    e_1 = z_1 − a_1 W_1 x, e_l = z_l − z_{l−1} − a_h W_l φ(z_{l−1}) (l = 2..H): stacked (H, N, B);
    e_out = y − a_L W_L φ(z_H): (C, B). `drive` is `input_drive(w, x, s)`.
    """
    phi, _ = activation_fns(activation)
    hidden_pred = s.a_hidden * jnp.einsum("loi,lib->lob", w.w_hidden, phi(z[:-1]))
    e = jnp.concatenate([(z[0] - drive)[None], z[1:] - z[:-1] - hidden_pred], axis=0)
    e_out = y - s.a_out * (w.w_out @ phi(z[-1]))
    return e, e_out


def energy(w: Weights, z: Array, x: Array, y: Array, s: Scalings, activation: Activation) -> Array:
    """The energy F above (a mean over the batch)."""
    e, e_out = errors(w, z, input_drive(w, x, s), y, s, activation)
    return 0.5 * (jnp.sum(e**2) + jnp.sum(e_out**2)) / y.shape[-1]


class Transposes(NamedTuple):
    """The transposed weights the back-projections multiply by: W_2ᵀ..W_Hᵀ and W_Lᵀ."""

    w_hidden: Array  # (H-1, N, N)
    w_out: Array  # (N, C)


def transposes(w: Weights) -> Transposes:
    """`Transposes` of `w`. Formed once and reused by every inference step, they give every
    product its weight matrix on the left untransposed, the fast form on a CPU, where a dot with
    a transposed left operand runs several times slower."""
    return Transposes(jnp.swapaxes(w.w_hidden, 1, 2), w.w_out.T)


def activity_grad(
    w_t: Transposes, z: Array, e: Array, e_out: Array, s: Scalings, activation: Activation
) -> Array:
    """∇_z F from the errors at z: (H, N, B), with `w_t` = `transposes(w)`.

    ∂F/∂z_l = (1/B)[e_l − e_{l+1} − a_h φ'(z_l) ⊙ W_{l+1}ᵀ e_{l+1}]  for l < H,
    ∂F/∂z_H = (1/B)[e_H − a_L φ'(z_H) ⊙ W_Lᵀ e_out].
    """
    _, dphi = activation_fns(activation)
    back_hidden = e[1:] + s.a_hidden * dphi(z[:-1]) * jnp.einsum("lio,lob->lib", w_t.w_hidden, e[1:])
    back_out = s.a_out * dphi(z[-1]) * (w_t.w_out @ e_out)
    return (e - jnp.concatenate([back_hidden, back_out[None]], axis=0)) / e.shape[-1]


def output_activity_grad(w: Weights, z: Array, e_out: Array, s: Scalings, activation: Activation) -> Array:
    """∇_z F at the feedforward activities, where every hidden error is zero: only z_H moves."""
    _, dphi = activation_fns(activation)
    g_h = -s.a_out * dphi(z[-1]) * (w.w_out.T @ e_out) / e_out.shape[-1]
    return jnp.zeros_like(z).at[-1].set(g_h)


def weight_grads(
    z: Array, x: Array, e: Array, e_out: Array, s: Scalings, activation: Activation
) -> Weights:
    """∇_W F from the errors at z: −(a/B) e φ(z_prev)ᵀ per layer (with x in place of φ(z_0))."""
    phi, _ = activation_fns(activation)
    batch = x.shape[-1]
    return Weights(
        w_in=-s.a_in / batch * (e[0] @ x.T),
        w_hidden=-s.a_hidden / batch * jnp.einsum("lob,lib->loi", e[1:], phi(z[:-1])),
        w_out=-s.a_out / batch * (e_out @ phi(z[-1]).T),
    )
