r"""The coord check (microsoft/mup's `get_coord_data`; the paper's Fig. A.29) and the activity-Hessian
spectrum (Figs. 2–4) of a grid of networks, at initialisation and after t training steps.

Each (param, width, depth, seed) network draws its weights and batch order from the keys a sweep's
point of that seed draws them from (in float64 when x64 is on), and trains by the sweeps' own
`grid_step` (README, "What is trained"; T = H, Adam(η), batches of B). At each requested step it
is measured on a fixed probe batch, the first B test examples:

- `z`: RMS over units and examples of the feedforward activities z_l, l = 1..H;
- `error`: RMS of the errors e_1..e_H and e_L = y − ŷ after T = H inference steps
  z ← z − β∇_z F from the feedforward activities (F the batch mean, as the trainer's);
- `energy`: ½‖e_l‖² per example (mean over the batch), l = 1..L;
- the extreme eigenvalues and κ of the activity Hessian of each of the first few probe examples at
  its feedforward activities (`hessian.batch_spectrum`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import pandas as pd
from jax import Array

from .cell import ACTIVATIONS, PARAMS, Activation, Param
from .checks import check_choice, check_distinct, check_int, check_positive, check_seed
from .data import Dataset
from .errors import InputError
from .hessian import Spectrum, batch_spectrum
from .pcn import Scalings, Weights, activity_grad, errors, forward, init_weights, scalings, transposes
from .step import MATMUL_PRECISION, STATUSES, Net, PointState, grid_step, init_state
from .train import batch_indices

QUANTITIES = ("z", "error", "energy")


class Checkpoint(NamedTuple):
    """One network of the grid after `step` training steps."""

    param: Param
    width: int
    depth: int
    seed: int
    step: int
    weights: Weights
    status: str  # one of step.STATUSES: a diverged network keeps its last finite weights


class LayerStats(NamedTuple):
    z: Array  # (H,) RMS of the feedforward z_l
    error: Array  # (L,) RMS of e_1..e_H, e_L after inference
    energy: Array  # (L,) ½‖e_l‖², mean over the batch


def layer_stats(
    w: Weights, x: Array, y: Array, s: Scalings, activation: Activation, beta: Array, inference_steps: int
) -> LayerStats:
    """Per-layer statistics of a batch x (D, B), y (C, B): the feedforward z_l, and the errors and energy
    after `inference_steps` steps of z ← z − β∇_z F on every layer (the trainer's inference, unwindowed)."""
    with jax.default_matmul_precision(MATMUL_PRECISION):
        z_ff, _ = forward(w, x, s, activation)
        drive, w_t = z_ff[0], transposes(w)

        def step(z, _):
            e, e_out = errors(w, z, drive, y, s, activation)
            return z - beta * activity_grad(w_t, z, e, e_out, s, activation), None

        z = jax.lax.scan(step, z_ff, length=inference_steps)[0]
        e, e_out = errors(w, z, drive, y, s, activation)
    squares = jnp.concatenate([jnp.sum(e**2, axis=1), jnp.sum(e_out**2, axis=0)[None]])  # (L, B), summed over units
    units = jnp.array([e.shape[1]] * e.shape[0] + [e_out.shape[0]], squares.dtype)
    return LayerStats(
        z=jnp.sqrt(jnp.mean(z_ff**2, axis=(1, 2))),
        error=jnp.sqrt(jnp.mean(squares, axis=1) / units),
        energy=0.5 * jnp.mean(squares, axis=1),
    )


@partial(jax.jit, static_argnames=("activation", "lanczos_steps", "spectrum_examples"))
def measure(
    w: Weights, x: Array, y: Array, s: Scalings, activation: Activation, beta: Array, lanczos_steps: int,
    spectrum_examples: int, key: Array,
) -> tuple[LayerStats, Spectrum]:
    """`layer_stats` of the batch with T = H, and the activity-Hessian spectrum of each of its first
    `spectrum_examples` examples at their feedforward activities."""
    z_ff, _ = forward(w, x, s, activation)
    m = spectrum_examples
    return (layer_stats(w, x, y, s, activation, beta, z_ff.shape[0]),
            batch_spectrum(w, z_ff[..., :m], x[:, :m], y[:, :m], s, activation, lanczos_steps, key))


@partial(jax.jit, static_argnames=("net", "n_classes"))
def _advance(
    state: PointState, x_train: Array, labels: Array, order: Array, start: Array, stop: Array, eta: Array,
    beta: Array, *, net: Net, n_classes: int,
) -> PointState:
    """Training steps start..stop − 1 of one point, on the batches `order` (S, B) indexes."""
    dtype = state.weights.w_in.dtype

    def body(t, state):
        x = x_train[order[t]].astype(dtype).T
        y = jax.nn.one_hot(labels[order[t]], n_classes, dtype=dtype).T
        one = jax.tree.map(lambda a: a[None], (state, x, y, eta, beta))
        return jax.tree.map(lambda a: a[0], grid_step(*one, net)[0])

    return jax.lax.fori_loop(start, stop, body, state)


def checkpoints(
    data: Dataset, *, widths: Sequence[int], depths: Sequence[int], params: Sequence[Param], seeds: Sequence[int],
    steps: Sequence[int], activation: Activation, eta: float, beta: float, batch_size: int,
) -> Iterator[Checkpoint]:
    """Every (param, width, depth, seed) network at each of `steps` (sorted), trained in between.
    Computes in float64 when x64 is on."""
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    x_train, labels = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    (n_train, d_in), stops = data.x_train.shape, sorted(steps)
    rates = jnp.asarray(eta, dtype), jnp.asarray(beta, dtype)
    for param, width, depth, seed in itertools.product(params, widths, depths, seeds):
        key = jax.random.PRNGKey(seed)  # as `train._train_cell` draws a seed's weights and batches
        w = init_weights(jax.random.fold_in(key, 0), param, d_in, width, depth, data.n_classes, dtype)
        order = batch_indices(jax.random.fold_in(key, 1), n_train, batch_size, max(stops[-1], 1))
        net = Net(activation, "pc", depth, scalings(param, d_in, width, depth))
        state, done = init_state(w, net), 0
        for stop in stops:
            state = _advance(state, x_train, labels, order, done, stop, *rates, net=net, n_classes=data.n_classes)
            done = stop
            yield Checkpoint(param, width, depth, seed, stop, state.weights, STATUSES[int(state.status)])


class CoordCheck(NamedTuple):
    """The tidy tables of `coord_check`."""

    coord: pd.DataFrame  # one row per network, step, layer and quantity (z, error, energy): value
    spectrum: pd.DataFrame  # one row per network, step and probe example: λ_min, λ_max, condition, residuals


def check_grid(
    *, widths: Sequence[int], depths: Sequence[int], params: Sequence[str], seeds: Sequence[int],
    steps: Sequence[int], activation: str, batch_size: int, spectrum_examples: int, eta: float, beta: float,
    lanczos_steps: int,
) -> None:
    """InputError naming the first bad value of a coord check's grid or settings."""
    check_choice("activation", activation, ACTIVATIONS)
    lists = (
        ("widths", widths, partial(check_int, minimum=1)),
        ("depths", depths, partial(check_int, minimum=1)),
        ("params", params, partial(check_choice, allowed=PARAMS)),
        ("seeds", seeds, check_seed),
        ("steps", steps, partial(check_int, minimum=0)),
    )
    for where, values, check in lists:
        if len(values) == 0:
            raise InputError(f"{where}: must not be an empty list.")
        for i, value in enumerate(values):
            check(f"{where}[{i}]", value)
        check_distinct(where, list(values))
    check_int("batch_size", batch_size, minimum=1)
    check_int("spectrum_examples", spectrum_examples, minimum=1)
    check_int("lanczos_steps", lanczos_steps, minimum=1)
    check_positive("eta", eta)
    check_positive("beta", beta)


def coord_check(
    data: Dataset, *, widths: Sequence[int], depths: Sequence[int], params: Sequence[Param] = PARAMS,
    seeds: Sequence[int] = (0,), steps: Sequence[int] = (0,), activation: Activation = "tanh", batch_size: int = 64,
    spectrum_examples: int = 4, eta: float = 0.01, beta: float = 10.0, lanczos_steps: int = 256,
    progress: Callable[[float], None] | None = None,
) -> CoordCheck:
    """The coord check and activity-Hessian spectra of every (param, width, depth, seed) network at
    each of `steps` (0: at initialisation), trained on `data` in batches of `batch_size` and measured on
    the first `batch_size` test examples, the Hessian spectrum on the first `spectrum_examples` of them
    (all when fewer; module docstring). `lanczos_steps` is capped at H·N, where the spectrum is exact.
    Computes in float64 when x64 is on. `progress` gets the fraction done."""
    check_grid(widths=widths, depths=depths, params=params, seeds=seeds, steps=steps, activation=activation,
               batch_size=batch_size, spectrum_examples=spectrum_examples, eta=eta, beta=beta,
               lanczos_steps=lanczos_steps)
    if batch_size > min(len(data.x_train), len(data.x_test)):
        raise InputError(f"batch_size: must be at most {min(len(data.x_train), len(data.x_test))}, the size of the "
                         f"smaller of {data.name}'s training and test sets; got {batch_size}.")
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    x = jnp.asarray(data.x_test[:batch_size].T, dtype)
    y = jax.nn.one_hot(jnp.asarray(data.y_test[:batch_size]), data.n_classes, dtype=dtype).T
    spectrum_examples = min(spectrum_examples, batch_size)
    total = len(params) * len(widths) * len(depths) * len(seeds) * len(steps)
    coord, spectra = [], []
    nets = checkpoints(data, widths=widths, depths=depths, params=params, seeds=seeds, steps=steps,
                       activation=activation, eta=eta, beta=beta, batch_size=batch_size)
    for done, cp in enumerate(nets, start=1):
        s = scalings(cp.param, x.shape[0], cp.width, cp.depth)
        key = dict(param=cp.param, activation=activation, width=cp.width, depth=cp.depth, seed=cp.seed, step=cp.step,
                   status=cp.status)
        steps_here = min(lanczos_steps, cp.depth * cp.width)
        stats, spec = jax.device_get(measure(cp.weights, x, y, s, activation, jnp.asarray(beta, dtype), steps_here,
                                             spectrum_examples, jax.random.PRNGKey(cp.seed)))
        for quantity, values in zip(QUANTITIES, stats):
            coord += [dict(key, layer=layer, quantity=quantity, value=float(v)) for layer, v in enumerate(values, 1)]
        fields = dict(zip(Spectrum._fields, spec))
        spectra += [dict(key, example=i, lanczos_steps=steps_here, **{f: float(v[i]) for f, v in fields.items()})
                    for i in range(spectrum_examples)]
        if progress is not None:
            progress(done / total)
    return CoordCheck(pd.DataFrame(coord), pd.DataFrame(spectra))


def summary(check: CoordCheck) -> pd.DataFrame:
    """One row per network shape and step: the seed means of z's RMS averaged over layers and at layer H,
    and of the total energy after inference; the median κ over seeds and examples, and the largest
    residual_min / |λ_min| (near 0: κ converged; near 1 or above: κ only a lower bound); the seeds
    whose training diverged."""
    keys = ["param", "width", "depth", "step"]
    coord = check.coord
    z = coord[coord["quantity"] == "z"]
    per_seed = pd.DataFrame({
        "z_mean": z.groupby([*keys, "seed"])["value"].mean(),
        "z_last": z[z["layer"] == z["depth"]].groupby([*keys, "seed"])["value"].first(),
        "energy": coord[coord["quantity"] == "energy"].groupby([*keys, "seed"])["value"].sum(),
    })
    table = per_seed.groupby(keys).mean()
    spectrum = check.spectrum.assign(residual=check.spectrum["residual_min"] / check.spectrum["lambda_min"].abs())
    table["condition"] = spectrum.groupby(keys)["condition"].median()
    table["residual"] = spectrum.groupby(keys)["residual"].max()
    status = spectrum.groupby([*keys, "seed"])["status"].first()
    table["diverged"] = (status == "diverged").groupby(keys).sum()
    return table.reset_index()
