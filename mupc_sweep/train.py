"""The grid trainer (SPEC §3–4): one jitted program trains every (seed, η, β) point of a cell.

A *cell* is one network shape with its training settings (`CellConfig`); its *points* are paired
(seed, η, β) values. Inside the program the points are vmapped in chunks (on a GPU as many as fit
in memory, on a CPU one at a time) and each chunk runs one on-device loop over steps, with batches
gathered by index from the device-resident dataset. η and β are traced, so a new grid of the same size never
recompiles. Stopping rules act per point by masking: a stopped point's state is frozen and its
later losses are NaN.

One PC step (SPEC §3): record `train_loss` of the feedforward pass; T steps of z ← z − β∇_z F;
one Adam(η) step on ∇_W F at the final activities.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from .cost import point_bytes
from .pcn import (
    ACTIVATIONS,
    ALGORITHMS,
    PARAMS,
    Activation,
    Algorithm,
    Param,
    Scalings,
    Weights,
    activity_grad,
    check_choice,
    errors,
    forward,
    half_mse,
    inference_windows,
    init_weights,
    output_activity_grad,
    predict,
    scalings,
    transposes,
    weight_grads,
)

STATUSES = ("ok", "diverged", "no_learning")
OK, DIVERGED, NO_LEARNING = range(3)
NO_LEARNING_ACC = 15.0  # percent test accuracy at the first evaluation
EVAL_CHUNK = 1000  # test examples per feedforward chunk during evaluation

PROGRESS_EVERY = 50  # steps between progress reports from inside the cell program

# Every product of the trainer runs in full float32 (or float64) on every device. JAX's default
# would let Ampere and later GPUs round float32 operands to TF32 (10-bit mantissa); that changes the
# results between a laptop and a cluster and buys little here, since a step's B = 64-column products
# are bound by reading the weights (benchmarks/RESULTS.md).
MATMUL_PRECISION = "float32"

# XLA's Triton GEMM fusions off: on an H100 their autotuning took about 47 of the 52 s a 128-layer
# cell compiled in, and the cuBLAS kernels chosen without them ran the step as fast. CPU XLA
# accepts the option and ignores it.
GPU_XLA_FLAG = "--xla_gpu_enable_triton_gemm=false"

# Adam with optax's defaults (b1 = 0.9, b2 = 0.999, eps = 1e-8); the step is −η times its output,
# so η stays a traced per-point value.
ADAM = optax.scale_by_adam()


@dataclass(frozen=True)
class Net:
    """What the step function needs to know statically about a network."""

    activation: Activation
    algorithm: Algorithm
    inference_steps: int
    scalings: Scalings


class PointState(NamedTuple):
    """Everything one grid point carries from step to step."""

    weights: Weights
    adam: optax.ScaleByAdamState
    alive: Array  # () bool: still training
    status: Array  # () int32: OK, DIVERGED or NO_LEARNING
    steps_run: Array  # () int32: steps whose train_loss was recorded


def init_state(weights: Weights) -> PointState:
    return PointState(weights, ADAM.init(weights), jnp.array(True), jnp.array(OK), jnp.array(0))


def pc_loss_and_grads(w: Weights, x: Array, y: Array, beta: Array, net: Net) -> tuple[Array, Weights]:
    """train_loss of the feedforward pass and ∇_W F after T inference steps of size β; x (D, B), y (C, B).

    Step 1 moves only z_H; steps 2..T run on the windows of `inference_windows`.
    """
    s, act = net.scalings, net.activation
    z_ff, y_hat = forward(w, x, s, act)  # (H, N, B); z_ff[0] = a_1 W_1 x, constant while x is clamped
    z = z_ff
    if net.inference_steps >= 1:
        z = z - beta * output_activity_grad(w, z, y - y_hat, s, act)
    depth = z.shape[0]
    for k, n in inference_windows(depth, net.inference_steps):
        low = depth - k
        top = Weights(w.w_in, w.w_hidden[low:], w.w_out)
        z_top = _infer(top, z[low:], z_ff[low], y, beta, n, net)
        z = jnp.concatenate([z[:low], z_top], axis=0)
    e, e_out = errors(w, z, z_ff[0], y, s, act)
    return half_mse(y_hat, y), weight_grads(z, x, e, e_out, s, act)


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
    state: PointState, x: Array, y: Array, eta: Array, beta: Array, net: Net
) -> tuple[PointState, Array]:
    """One training step of one point on a batch x (D, B), y (C, B); a non-finite train_loss
    freezes the point as diverged."""
    if net.algorithm == "pc":
        loss, grads = pc_loss_and_grads(state.weights, x, y, beta, net)
    else:
        loss, grads = bp_loss_and_grads(state.weights, x, y, net)
    direction, adam = ADAM.update(grads, state.adam)
    weights = jax.tree.map(lambda w, d: w - eta * d, state.weights, direction)
    finite = jnp.isfinite(loss)
    update = state.alive & finite

    def keep(new, old):
        return jax.tree.map(lambda n, o: jnp.where(update, n, o), new, old)

    new_state = PointState(
        weights=keep(weights, state.weights),
        adam=keep(adam, state.adam),
        alive=update,
        status=jnp.where(state.alive & ~finite, DIVERGED, state.status),
        steps_run=state.steps_run + state.alive,
    )
    return new_state, jnp.where(state.alive, loss, jnp.nan)


def grid_step(
    states: PointState, x: Array, y: Array, etas: Array, betas: Array, net: Net
) -> tuple[PointState, Array]:
    """`point_step` for every point of a chunk: leading axis G on all but `net`. Sweeps and
    `train_points` both run this, every product in `MATMUL_PRECISION`. One point runs unbatched:
    XLA's CPU backend compiles a size-1 vmap of the step about 40 % slower."""
    with jax.default_matmul_precision(MATMUL_PRECISION):
        if etas.shape[0] == 1:
            state, loss = point_step(*jax.tree.map(lambda a: a[0], (states, x, y, etas, betas)), net)
            return jax.tree.map(lambda a: a[None], (state, loss))
        return jax.vmap(point_step, in_axes=(0, 0, 0, 0, 0, None))(states, x, y, etas, betas, net)


def accuracy(w: Weights, x_chunks: Array, label_chunks: Array, n: int, net: Net) -> Array:
    """Percent of `n` test examples whose argmax ŷ is the label; inputs pre-chunked, x (K, D, EVAL_CHUNK)."""

    def correct(chunk):
        x, labels = chunk
        with jax.default_matmul_precision(MATMUL_PRECISION):
            y_hat = predict(w, x, net.scalings, net.activation)
        return jnp.sum(jnp.argmax(y_hat, axis=0) == labels)

    return 100.0 * jnp.sum(jax.lax.map(correct, (x_chunks, label_chunks))) / n


def batch_indices(key: Array, n_train: int, batch_size: int, n_steps: int) -> Array:
    """(n_steps, B) example indices: a fresh permutation per epoch, last partial batch dropped."""
    per_epoch = n_train // batch_size
    n_epochs = -(-n_steps // per_epoch)
    perms = jax.vmap(
        lambda e: jax.random.permutation(jax.random.fold_in(key, e), n_train)[: per_epoch * batch_size]
    )(jnp.arange(n_epochs))
    return perms.reshape(n_epochs * per_epoch, batch_size)[:n_steps]


# Where the cell program's progress reports go. A compiled program keeps the callable it was traced
# with, so it calls this fixed function, which forwards to whatever `train_cell` installed.
_progress_sink: Callable[[int, int], None] | None = None


def _report_progress(chunk_id: Array, step: Array) -> None:
    if _progress_sink is not None:
        _progress_sink(int(chunk_id), int(step))


@dataclass(frozen=True)
class CellConfig:
    """One network shape and its training settings (SPEC §2–4). `inference_steps=None` means T = H."""

    width: int
    depth: int
    activation: Activation = "tanh"
    param: Param = "mupc"
    algorithm: Algorithm = "pc"
    inference_steps: int | None = None
    batch_size: int = 64
    epochs: float = 1.0
    eval_every: int = 300

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("param", self.param, PARAMS)
        check_choice("algorithm", self.algorithm, ALGORITHMS)
        for name in ("width", "batch_size", "eval_every"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("depth", self.depth, minimum=1)
        if self.inference_steps is not None:
            _check_int("inference_steps", self.inference_steps, minimum=0)
        if not (isinstance(self.epochs, (int, float)) and math.isfinite(self.epochs) and self.epochs > 0):
            raise ValueError(f"epochs must be a positive number; got {self.epochs!r}.")

    @property
    def steps(self) -> int:
        """T, the number of inference steps."""
        return self.depth if self.inference_steps is None else self.inference_steps

    def net(self, d_in: int) -> Net:
        return Net(self.activation, self.algorithm, self.steps, scalings(self.param, d_in, self.width, self.depth))

    def n_steps(self, n_train: int) -> int:
        """Training steps: epochs × ⌊n_train / B⌋, rounded down."""
        return int(self.epochs * (n_train // self.batch_size))


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}; got {value!r}.")


def _check_rates(name: str, rates: np.ndarray, *, allow_nan: bool = False) -> None:
    values = rates[~np.isnan(rates)] if allow_nan else rates
    if rates.ndim != 1 or rates.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array; got shape {rates.shape}.")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"{name} must hold positive finite learning rates; got {rates.tolist()}.")


def check_grid(cfg: CellConfig, etas, betas) -> None:
    """η must be positive and finite; so must β, which bp cells ignore (NaN allowed)."""
    _check_rates("etas", np.asarray(etas, np.float64))
    _check_rates("betas", np.asarray(betas, np.float64), allow_nan=cfg.algorithm == "bp")


def check_seeds(seeds: np.ndarray) -> None:
    """Seeds are integers in [0, 2³²), the range of a PRNG key: larger ones would wrap onto others."""
    if seeds.dtype.kind not in "iu" or (seeds.size and (seeds.min() < 0 or seeds.max() >= 2**32)):
        raise ValueError(f"seeds must be integers from 0 to 2**32 - 1; got {seeds.tolist()}.")


def check_chunk(chunk: int | None) -> None:
    """A chunk of vmapped points, if given, holds at least one point."""
    if chunk is not None:
        _check_int("chunk", chunk, minimum=1)


def check_steps(cfg: CellConfig, n_train: int) -> None:
    """The cell must train for at least one step on `n_train` examples."""
    if cfg.n_steps(n_train) < 1:
        raise ValueError(
            f"epochs={cfg.epochs} gives no training step with {n_train} examples and batch_size={cfg.batch_size}."
        )


@partial(jax.jit, static_argnames=("cfg", "n_classes", "chunk"))
def _train_cell(
    x_train, y_train, x_test, y_test, seeds, seed_index, etas, betas, *, cfg: CellConfig, n_classes: int, chunk: int
):
    """The cell program: distinct seeds (K,); per point (G,) an index into them, η and β ->
    per-point losses (G, S), evaluations, final accuracy, status and steps run."""
    (n_train, d_in) = x_train.shape
    net, n_steps, n_evals = cfg.net(d_in), cfg.n_steps(n_train), cfg.n_steps(n_train) // cfg.eval_every
    dtype = x_train.dtype

    n_test = x_test.shape[0]
    size = min(n_test, EVAL_CHUNK)
    pad = -n_test % size
    x_chunks = jnp.swapaxes(jnp.pad(x_test, ((0, pad), (0, 0))).reshape(-1, size, d_in), 1, 2)
    label_chunks = jnp.pad(y_test, (0, pad), constant_values=-1).reshape(-1, size)
    evaluate = jax.vmap(lambda w: accuracy(w, x_chunks, label_chunks, n_test, net))

    # Initial weights and batch order depend on the seed only: drawn once per distinct seed.
    keys = jax.vmap(jax.random.PRNGKey)(seeds)
    seed_weights = jax.vmap(
        lambda k: init_weights(jax.random.fold_in(k, 0), cfg.param, d_in, cfg.width, cfg.depth, n_classes, dtype)
    )(keys)
    seed_batches = jax.vmap(lambda k: batch_indices(jax.random.fold_in(k, 1), n_train, cfg.batch_size, n_steps))(keys)

    def train_chunk(points):
        chunk_id, (seed_index, eta, beta) = points  # chunk_id (), the others (chunk,)
        weights = jax.tree.map(lambda a: a[seed_index], seed_weights)
        losses = jnp.full((chunk, n_steps), jnp.nan, dtype)
        accs = jnp.full((chunk, n_evals), jnp.nan, dtype)

        def periodic_eval(step, state, accs):
            acc = evaluate(state.weights).astype(dtype)
            first = step == cfg.eval_every
            fail = first & state.alive & (acc < NO_LEARNING_ACC)
            state = state._replace(alive=state.alive & ~fail, status=jnp.where(fail, NO_LEARNING, state.status))
            return state, accs.at[:, step // cfg.eval_every - 1].set(acc)

        # A one-point chunk carries its state without the size-1 axis: with that axis, XLA's CPU
        # backend copies the whole weight stack once more per step where it forms Wᵀ.
        def carried(state):
            return jax.tree.map(lambda a: a[0], state) if chunk == 1 else state

        def chunked(state):
            return jax.tree.map(lambda a: a[None], state) if chunk == 1 else state

        def body(carry):
            step, state, losses, accs = carry
            state = chunked(state)
            batch = seed_batches[seed_index, step]  # (chunk, B)
            x, y = x_train[batch], jax.nn.one_hot(y_train[batch], n_classes, dtype=dtype)
            x, y = jnp.swapaxes(x, 1, 2), jnp.swapaxes(y, 1, 2)  # examples as columns
            state, loss = grid_step(state, x, y, eta, beta, net)
            losses = losses.at[:, step].set(loss)
            step = step + 1
            jax.lax.cond(
                step % PROGRESS_EVERY == 0, lambda: jax.debug.callback(_report_progress, chunk_id, step), lambda: None
            )
            if n_evals > 0:
                state, accs = jax.lax.cond(
                    step % cfg.eval_every == 0, periodic_eval, lambda _, st, a: (st, a), step, state, accs
                )
            return step, carried(state), losses, accs

        def running(carry):
            step, state, _, _ = carry
            return (step < n_steps) & jnp.any(state.alive)

        carry = (jnp.array(0), carried(jax.vmap(init_state)(weights)), losses, accs)
        _, state, losses, accs = jax.lax.while_loop(running, body, carry)
        state = chunked(state)
        return losses, accs, evaluate(state.weights), state.status, state.steps_run

    n_points = seed_index.shape[0]
    pad_points = -n_points % chunk
    points = tuple(jnp.pad(a, (0, pad_points), mode="edge").reshape(-1, chunk) for a in (seed_index, etas, betas))
    out = jax.lax.map(train_chunk, (jnp.arange(points[0].shape[0]), points))
    return tuple(a.reshape(n_points + pad_points, *a.shape[2:])[:n_points] for a in out)


@dataclass(frozen=True)
class CellResult:
    """What one cell's training produced, per point (host arrays)."""

    cfg: CellConfig
    seeds: np.ndarray  # (G,)
    etas: np.ndarray  # (G,)
    betas: np.ndarray  # (G,) NaN for bp
    losses: np.ndarray  # (G, S) train_loss per step, NaN after a point stopped
    eval_steps: np.ndarray  # (E,) steps after which test accuracy was measured
    eval_acc: np.ndarray  # (G, E) percent, NaN where not evaluated
    test_acc_final: np.ndarray  # (G,)
    status: np.ndarray  # (G,) int: index into STATUSES
    steps_run: np.ndarray  # (G,)
    wall_s: float
    chunk: int
    device: str = ""


def default_chunk(cfg: CellConfig, d_in: int, n_classes: int, n_train: int, n_points: int) -> int:
    """Points vmapped together: on a GPU as many as fit in 80 % of its memory; on a CPU one at a
    time, which keeps a point's weights in cache across its inference steps."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return 1
    stats = device.memory_stats() or {}
    limit = stats.get("bytes_limit", 16 * 2**30) - stats.get("bytes_in_use", 0)
    per_point = point_bytes(
        d_in=d_in, width=cfg.width, depth=cfg.depth, d_out=n_classes, batch_size=cfg.batch_size,
        n_steps=cfg.n_steps(n_train),
    )
    return max(1, min(n_points, int(0.8 * limit) // per_point))


def balanced_chunk(largest: int, n_points: int) -> int:
    """The smallest chunk that needs no more chunks than `largest` does. The last chunk is padded
    with copies of a point, trained for nothing: 132 points at most 56 a chunk run as 3 × 44, not
    3 × 56."""
    n_chunks = -(-n_points // largest)
    return -(-n_points // n_chunks)


def train_cell(
    cfg: CellConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    seeds: np.ndarray,
    etas: np.ndarray,
    betas: np.ndarray,
    *,
    n_classes: int = 10,
    chunk: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> CellResult:
    """Train every point of a cell; `seeds`, `etas`, `betas` are paired (G,) arrays (β NaN for bp).

    Points with the same seed start from the same weights and see the same batches. Points run in
    chunks of at most `chunk` (default: by device), balanced; if the device runs out of memory the
    chunk of vmapped points is halved and the cell restarts. `progress`, if
    given, is called now and then with the fraction of point-steps done.
    """
    global _progress_sink
    seeds, etas, betas = (np.asarray(a) for a in (seeds, etas, betas))
    etas, betas = etas.astype(np.float64), betas.astype(np.float64)
    if not (seeds.shape == etas.shape == betas.shape) or seeds.ndim != 1:
        raise ValueError(f"seeds, etas and betas must be 1-D and of one length; got {seeds.shape}, {etas.shape}, {betas.shape}.")
    check_grid(cfg, etas, betas)
    check_seeds(seeds)
    check_chunk(chunk)
    n_train, d_in = x_train.shape
    check_steps(cfg, n_train)
    chunk = balanced_chunk(chunk or default_chunk(cfg, d_in, n_classes, n_train, len(seeds)), len(seeds))
    dtype = x_train.dtype
    distinct, seed_index = np.unique(seeds, return_inverse=True)
    args = (
        jnp.asarray(x_train), jnp.asarray(y_train, jnp.int32), jnp.asarray(x_test), jnp.asarray(y_test, jnp.int32),
        jnp.asarray(distinct, jnp.uint32), jnp.asarray(seed_index, jnp.int32),
        jnp.asarray(etas, dtype), jnp.asarray(np.nan_to_num(betas), dtype),
    )
    n_steps = cfg.n_steps(n_train)
    start = time.perf_counter()
    while True:
        n_chunks = -(-len(seeds) // chunk)
        if progress is not None:
            _progress_sink = lambda chunk_id, step: progress((chunk_id * n_steps + step) / (n_chunks * n_steps))
        try:
            out = jax.device_get(_train_cell(*args, cfg=cfg, n_classes=n_classes, chunk=chunk))
            break
        except jax.errors.JaxRuntimeError as error:
            if "RESOURCE_EXHAUSTED" not in str(error) or chunk == 1:
                raise
            chunk = balanced_chunk(max(1, chunk // 2), len(seeds))
        finally:
            _progress_sink = None
    losses, eval_acc, acc_final, status, steps_run = out
    # the device's float32 percentages, back to exact multiples of 100 / n_test (77.099998 -> 77.1)
    n_test = len(x_test)
    eval_acc, acc_final = (np.round(np.float64(a) * n_test / 100) * 100 / n_test for a in (eval_acc, acc_final))
    return CellResult(
        cfg=cfg, seeds=seeds, etas=etas, betas=betas, losses=losses,
        eval_steps=np.arange(1, n_steps // cfg.eval_every + 1) * cfg.eval_every,
        eval_acc=eval_acc, test_acc_final=acc_final, status=status, steps_run=steps_run,
        wall_s=time.perf_counter() - start, chunk=chunk, device=describe_device(),
    )


def xla_flags(environ: Mapping[str, str]) -> str:
    """XLA_FLAGS with `GPU_XLA_FLAG` added, unless `environ`'s XLA_FLAGS already sets that option.
    It takes effect only in a process that has not yet opened a JAX device."""
    flags = environ.get("XLA_FLAGS", "")
    option = GPU_XLA_FLAG.split("=")[0]
    if any(flag.split("=")[0] == option for flag in flags.split()):
        return flags
    return f"{flags} {GPU_XLA_FLAG}".strip()


def describe_device() -> str:
    """The device kind JAX trains on, e.g. 'cpu' or 'NVIDIA H100 80GB HBM3'."""
    device = jax.devices()[0]
    return device.platform if device.platform == "cpu" else device.device_kind


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
    """Run S PC training steps (SPEC §3) for G paired (η, β) points from the same initial weights.

    weights: L arrays (out, in); xs: (S, B, D); ys: (S, B, C) one-hot; etas, betas: (G,).
    Returns losses (G, S), each step's train_loss, and the final weights, each (G, out, in).
    Runs `grid_step`, the step sweeps run; computes in float64 when x64 is on and inputs are float64.
    """
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("param", param, PARAMS)
    _check_int("inference_steps", inference_steps, minimum=0)
    w = [jnp.asarray(a) for a in weights]
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    etas, betas = np.asarray(etas, np.float64), np.asarray(betas, np.float64)
    _check_shapes(w, xs.shape, ys.shape)
    if etas.shape != betas.shape:
        raise ValueError(f"etas and betas must have one length; got shapes {etas.shape} and {betas.shape}.")
    _check_rates("etas", etas)
    _check_rates("betas", betas)
    width, d_in, depth = w[0].shape[0], w[0].shape[1], len(w) - 1
    hidden = jnp.stack(w[1:-1]) if depth > 1 else jnp.zeros((0, width, width), w[0].dtype)
    net = Net(activation, "pc", inference_steps, scalings(param, d_in, width, depth))
    dtype = w[0].dtype
    losses, final = _train_points(
        Weights(w[0], hidden, w[-1]), xs.astype(dtype), ys.astype(dtype),
        jnp.asarray(etas, dtype), jnp.asarray(betas, dtype), net=net,
    )
    final = jax.device_get(final)
    layers = [final.w_in, *(final.w_hidden[:, i] for i in range(depth - 1)), final.w_out]
    return np.asarray(losses), [np.asarray(a) for a in layers]


def _check_shapes(w: list[Array], xs_shape: tuple, ys_shape: tuple) -> None:
    if len(w) < 2:
        raise ValueError(f"weights must hold at least 2 matrices (input and output); got {len(w)}.")
    for i, (a, b) in enumerate(zip(w[:-1], w[1:])):
        if a.ndim != 2 or b.ndim != 2 or b.shape[1] != a.shape[0]:
            raise ValueError(f"weights[{i + 1}] must have shape (out, {a.shape[0]}) to follow weights[{i}] of shape {a.shape}; got {b.shape}.")
    for i, a in enumerate(w[1:-1], start=1):
        if a.shape[0] != a.shape[1]:
            raise ValueError(f"hidden weights[{i}] must be square (N, N); got {a.shape}.")
    d_in, d_out = w[0].shape[1], w[-1].shape[0]
    if len(xs_shape) != 3 or xs_shape[2] != d_in:
        raise ValueError(f"xs must have shape (S, B, {d_in}); got {xs_shape}.")
    if ys_shape != (*xs_shape[:2], d_out):
        raise ValueError(f"ys must have shape {(*xs_shape[:2], d_out)}; got {ys_shape}.")


@partial(jax.jit, static_argnames="net")
def _train_points(w: Weights, xs, ys, etas, betas, *, net: Net):
    n_points = etas.shape[0]
    state = jax.vmap(init_state)(jax.tree.map(lambda a: jnp.broadcast_to(a, (n_points, *a.shape)), w))

    def step(state, batch):
        x, y = (jnp.broadcast_to(a.T, (n_points, *a.T.shape)) for a in batch)
        return grid_step(state, x, y, etas, betas, net)

    state, losses = jax.lax.scan(step, state, (xs, ys))
    return losses.T, state.weights
