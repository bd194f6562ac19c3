r"""The activity Hessian (the paper's Eq. 5, with the skips of Eq. 24) and its extreme eigenvalues:
dense for small networks, from Hessian-vector products by Lanczos at any size.

One example's energy is F(z) = ½‖e(z)‖², the README's energy without the 1/B, a function of the
activities z = (z_1, …, z_H) stacked layer-major into one vector of H·N. Its Hessian is

$$ \mathbf{H}_z = \nabla_z^2 F = J^\top J + \sum_i e_i \nabla_z^2 e_i, \qquad J = \partial e / \partial z . $$

For a linear network e = Az − b with A block-bidiagonal (row block 1: [I, 0, …]; row block l: −(I + a_h W_l)
at column l − 1 and I at column l; the output row a_L W_L at column H), so H_z = AᵀA, the same for
every x, y and z (§A.2.4). Its condition number is κ = |λ_max| / |λ_min| (§3.1; Figs. 2–4).

Lanczos with full reorthogonalisation needs only v ↦ H_z v (forward-over-reverse autodiff, the cost
of about three forward passes) and keeps k basis vectors of H·N: no H·N × H·N matrix. Its Ritz
values lie inside the spectrum, so for a positive-definite H_z the κ it reports is a lower bound that
tightens with k, exact at k = H·N; each extreme comes with its residual ‖H_z u − θu‖, which bounds
|λ − θ|.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from .cell import ACTIVATIONS, PARAMS, Activation, Param
from .checks import check_choice, check_int, check_seed
from .errors import InputError
from .pcn import Scalings, Weights, energy, forward, from_layers, scalings

# A Lanczos direction whose norm falls below this fraction of ‖H_z v‖ after orthogonalisation has left
# the Krylov space: an invariant subspace is found, and the next direction starts afresh.
BREAKDOWN = 1e-10


class Spectrum(NamedTuple):
    """Extreme eigenvalues of activity Hessians (one per example) and the residuals bounding their error."""

    lambda_min: Array
    lambda_max: Array
    condition: Array  # |λ_max| / |λ_min|
    residual_min: Array  # ‖H_z u − θ u‖ of the smallest Ritz pair: |λ_min − θ_min| ≤ residual_min
    residual_max: Array


def example_energy(w: Weights, z: Array, x: Array, y: Array, s: Scalings, activation: Activation) -> Array:
    """F of one example, without the 1/B: z (H, N), x (D,), y (C,) -> ()."""
    return energy(w, z[..., None], x[:, None], y[:, None], s, activation)


def _flat_energy(w: Weights, shape: tuple[int, ...], x: Array, y: Array, s: Scalings, activation: Activation):
    return lambda flat: example_energy(w, flat.reshape(shape), x, y, s, activation)


@partial(jax.jit, static_argnames="activation")
def dense_hessian(w: Weights, z: Array, x: Array, y: Array, s: Scalings, activation: Activation) -> Array:
    """H_z of one example at z (H, N), as an (H·N, H·N) matrix in the layer-major order of z."""
    return jax.hessian(_flat_energy(w, z.shape, x, y, s, activation))(z.reshape(-1))


def hessian_matvec(
    w: Weights, z: Array, x: Array, y: Array, s: Scalings, activation: Activation
) -> Callable[[Array], Array]:
    """v ↦ H_z v for flat v (H·N,): the linearised gradient, its primal computed once."""
    _, matvec = jax.linearize(jax.grad(_flat_energy(w, z.shape, x, y, s, activation)), z.reshape(-1))
    return matvec


def lanczos(matvec: Callable[[Array], Array], key: Array, n: int, lanczos_steps: int, dtype) -> tuple[Array, Array]:
    """`lanczos_steps` = k Lanczos steps with full reorthogonalisation (Gram–Schmidt twice) from a random
    start: the tridiagonal T's diagonal α (k,) and off-diagonal β (k,), β_k last (the residuals'
    factor). After a breakdown at step i the next direction is the start rolled by i, orthogonalised,
    with β = 0 (the cyclic shifts of a random vector are independent with probability 1): T stays
    block-diagonal and its eigenvalues eigenvalues of H_z."""
    start = jax.random.normal(key, (n,), dtype)
    basis = jnp.zeros((lanczos_steps + 1, n), dtype).at[0].set(start / jnp.linalg.norm(start))

    def orthogonalise(u: Array, basis: Array) -> Array:
        return u - (basis @ u) @ basis  # rows not yet filled are zero

    def step(i, carry):
        basis, alpha, beta = carry
        v = basis[i]
        hv = matvec(v)
        u = orthogonalise(hv, basis)
        broke = jnp.linalg.norm(u) <= BREAKDOWN * jnp.linalg.norm(hv)
        u = orthogonalise(jnp.where(broke, jnp.roll(start, i + 1), u), basis)
        norm = jnp.linalg.norm(u)
        basis = basis.at[i + 1].set(u / norm)
        return basis, alpha.at[i].set(v @ hv), beta.at[i].set(jnp.where(broke, 0.0, norm))

    zeros = jnp.zeros(lanczos_steps, dtype)
    _, alpha, beta = jax.lax.fori_loop(0, lanczos_steps, step, (basis, zeros, zeros))
    return alpha, beta


def ritz_extremes(alpha: Array, beta: Array) -> Spectrum:
    """The extreme eigenvalues θ of T and their residuals |β_k s_k| (s_k: the last entry of θ's eigenvector)."""
    off = beta[:-1]
    theta, vectors = jnp.linalg.eigh(jnp.diag(alpha) + jnp.diag(off, 1) + jnp.diag(off, -1))
    residual = jnp.abs(beta[-1] * vectors[-1])
    return Spectrum(theta[0], theta[-1], jnp.abs(theta[-1]) / jnp.abs(theta[0]), residual[0], residual[-1])


def spectrum(
    w: Weights, z: Array, x: Array, y: Array, s: Scalings, activation: Activation, lanczos_steps: int, key: Array
) -> Spectrum:
    """The extreme eigenvalues of one example's H_z at z (H, N) by `lanczos_steps` Lanczos steps."""
    matvec = hessian_matvec(w, z, x, y, s, activation)
    return ritz_extremes(*lanczos(matvec, key, z.size, lanczos_steps, z.dtype))


@partial(jax.jit, static_argnames=("activation", "lanczos_steps"))
def batch_spectrum(
    w: Weights, z: Array, x: Array, y: Array, s: Scalings, activation: Activation, lanczos_steps: int, key: Array
) -> Spectrum:
    """`spectrum` of every example at once (vmapped): z (H, N, B), x (D, B), y (C, B) -> each field (B,)."""
    keys = jax.random.split(key, x.shape[-1])
    return jax.vmap(spectrum, in_axes=(None, 2, 1, 1, None, None, None, 0))(w, z, x, y, s, activation, lanczos_steps, keys)


def network(weights: list, activation: object, param: object) -> tuple[Weights, Scalings]:
    """`Weights` and `Scalings` of L matrices (out, in), with the activation and param checked."""
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("param", param, PARAMS)
    w = from_layers(weights)
    (width, d_in), depth = w.w_in.shape, len(weights) - 1
    return w, scalings(param, d_in, width, depth)


def _check_shape(where: str, value: Array, shape: tuple[int, ...]) -> None:
    if value.shape != shape:
        raise InputError(f"{where}: must have shape {shape}; got {value.shape}.")


def activity_hessian(
    weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, *, activation: Activation, param: Param,
    z: np.ndarray | None = None,
) -> np.ndarray:
    """H_z (H·N, H·N) of one example's energy (no 1/B) at the activities `z` (H, N), or at the
    feedforward activities when `z` is None; `weights` L arrays (out, in) as for `train_points`,
    x (D,), y (C,). Exact (autodiff); float64 when x64 is on and the inputs are float64."""
    w, s = network(weights, activation, param)
    x, y = jnp.asarray(x), jnp.asarray(y)
    (width, d_in), d_out, depth = w.w_in.shape, w.w_out.shape[0], len(weights) - 1
    _check_shape("x", x, (d_in,))
    _check_shape("y", y, (d_out,))
    if z is None:
        z = forward(w, x[:, None], s, activation)[0][..., 0]
    z = jnp.asarray(z)
    _check_shape("z", z, (depth, width))
    return np.asarray(dense_hessian(w, z, x, y, s, activation))


def activity_spectrum(
    weights: list[np.ndarray], xs: np.ndarray, ys: np.ndarray, *, activation: Activation, param: Param,
    zs: np.ndarray | None = None, lanczos_steps: int = 256, seed: int = 0,
) -> Spectrum:
    """Extreme eigenvalues and condition number of each example's H_z by Lanczos (no dense matrix):
    xs (B, D), ys (B, C), activities zs (B, H, N) or the feedforward ones when None. `lanczos_steps`
    is capped at H·N, where the result is exact; `seed` draws the start vectors. Fields are NumPy (B,)."""
    w, s = network(weights, activation, param)
    check_int("lanczos_steps", lanczos_steps, minimum=1)
    check_seed("seed", seed)
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    (width, d_in), d_out, depth = w.w_in.shape, w.w_out.shape[0], len(weights) - 1
    if xs.ndim != 2 or xs.shape[1] != d_in:
        raise InputError(f"xs: must have shape (B, {d_in}); got {xs.shape}.")
    _check_shape("ys", ys, (xs.shape[0], d_out))
    if zs is None:
        z = forward(w, xs.T, s, activation)[0]
    else:
        zs = jnp.asarray(zs)
        _check_shape("zs", zs, (xs.shape[0], depth, width))
        z = jnp.moveaxis(zs, 0, -1)
    result = batch_spectrum(w, z, xs.T, ys.T, s, activation, min(lanczos_steps, depth * width), jax.random.PRNGKey(seed))
    return Spectrum(*(np.asarray(a) for a in result))
