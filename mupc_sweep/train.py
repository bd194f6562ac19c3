"""The cell program: one jitted program trains every (seed, η, β) point of a cell (README, "What is
trained").

A *cell* is one network shape with its training settings (`CellConfig`); its *points* are paired
(seed, η, β) values. Inside the program the points are vmapped in chunks (on a GPU as many as fit
in memory, on a CPU one at a time) and each chunk runs one on-device loop over steps (`step.grid_step`),
with batches gathered by index from the device-resident dataset. η and β are traced, so a new grid
of the same size never recompiles. Stopping rules act per point by masking: a stopped point's state
is frozen and its later losses are NaN.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from .cell import CellConfig
from .checks import check_int
from .device import default_chunk, describe_device
from .errors import InputError
from .pcn import Weights, init_weights, predict, scalings
from .step import ADAM, MATMUL_PRECISION, NO_LEARNING, Net, grid_step, init_state

NO_LEARNING_ACC = 15.0  # percent test accuracy at the first evaluation
EVAL_CHUNK = 1000  # test examples per feedforward chunk during evaluation
PROGRESS_EVERY = 50  # steps between progress reports from inside the cell program


def network(cfg: CellConfig, d_in: int, optimizer: optax.GradientTransformation = ADAM) -> Net:
    """What the step needs to know statically about a cell's network, stepping along `optimizer`."""
    return Net(cfg.activation, cfg.algorithm, cfg.inference_steps, scalings(cfg.param, d_in, cfg.width, cfg.depth),
               optimizer)


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


# A compiled program keeps the host function it was traced with, so progress reaches each call's
# own callback through one fixed function and a token the program carries as an argument: every
# call of `train_cell` registers its callback under a token of its own for as long as it runs, so
# cells trained at once in one process (threads of a notebook, tests) each hear only their own.
_PROGRESS: dict[int, Callable[[int, int], None]] = {}
_TOKENS = itertools.count(1)


def _report_progress(token: Array, chunk_id: Array, step: Array) -> None:
    callback = _PROGRESS.get(int(token))
    if callback is not None:
        callback(int(chunk_id), int(step))


@partial(jax.jit, static_argnames=("cfg", "n_classes", "chunk", "residual_every", "optimizer"))
def _train_cell(
    x_train, y_train, x_test, y_test, seeds, seed_index, etas, betas, token, *, cfg: CellConfig, n_classes: int,
    chunk: int, residual_every: int = 10, optimizer: optax.GradientTransformation = ADAM,
):
    """The cell program: distinct seeds (K,); per point (G,) an index into them, η and β; the
    progress token -> per-point losses (G, S), evaluations, final accuracy, status, steps run, and
    the inference residual at steps 0, k, 2k, … (G, ⌈S / k⌉), k = `residual_every`."""
    (n_train, d_in) = x_train.shape
    net, n_steps = network(cfg, d_in, optimizer), cfg.training_steps(n_train)
    n_evals, n_kept = n_steps // cfg.eval_every, -(-n_steps // residual_every)
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
        residuals = jnp.full((chunk, n_kept), jnp.nan, dtype)

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
            step, state, losses, accs, residuals = carry
            state = chunked(state)
            batch = seed_batches[seed_index, step]  # (chunk, B)
            x, y = x_train[batch], jax.nn.one_hot(y_train[batch], n_classes, dtype=dtype)
            x, y = jnp.swapaxes(x, 1, 2), jnp.swapaxes(y, 1, 2)  # examples as columns
            kept = step % residual_every == 0  # the steps whose curves are kept
            state, loss, residual = grid_step(state, x, y, eta, beta, net, kept)
            losses = losses.at[:, step].set(loss)
            column = step // residual_every  # written in place; between kept steps with what it holds
            residuals = residuals.at[:, column].set(jnp.where(kept, residual, residuals[:, column]))
            step = step + 1
            jax.lax.cond(
                step % PROGRESS_EVERY == 0, lambda: jax.debug.callback(_report_progress, token, chunk_id, step), lambda: None
            )
            if n_evals > 0:
                state, accs = jax.lax.cond(
                    step % cfg.eval_every == 0, periodic_eval, lambda _, st, a: (st, a), step, state, accs
                )
            return step, carried(state), losses, accs, residuals

        def running(carry):
            step, state, *_ = carry
            return (step < n_steps) & jnp.any(state.alive)

        carry = (jnp.array(0), carried(jax.vmap(lambda w: init_state(w, net))(weights)), losses, accs, residuals)
        _, state, losses, accs, residuals = jax.lax.while_loop(running, body, carry)
        state = chunked(state)
        final = evaluate(state.weights).astype(dtype)
        if n_evals == 0:  # a run shorter than eval_every: the final evaluation is the first one
            fail = state.alive & (final < NO_LEARNING_ACC)
            state = state._replace(status=jnp.where(fail, NO_LEARNING, state.status))
        return losses, accs, final, state.status, state.steps_run, residuals

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
    residual_steps: np.ndarray  # (K,) the steps whose inference residual was measured: 0, k, 2k, …
    residuals: np.ndarray  # (G, K) inference residual there (NaN for bp and once a point stopped)
    wall_s: float
    chunk: int
    device: str = ""

    def take(self, n: int) -> CellResult:
        """The result of the first `n` points only."""
        per_point = ("seeds", "etas", "betas", "losses", "eval_acc", "test_acc_final", "status", "steps_run",
                     "residuals")
        return replace(self, **{name: getattr(self, name)[:n] for name in per_point})


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
    seed_pool: Sequence[int] | None = None,
    progress: Callable[[float], None] | None = None,
    residual_every: int = 10,
    optimizer: optax.GradientTransformation = ADAM,
) -> CellResult:
    """Train every point of a cell; `seeds`, `etas`, `betas` are paired (G,) arrays (β NaN for bp).

    Points with the same seed start from the same weights and see the same batches, whatever other
    points train beside them. The program draws the weights of every seed in `seed_pool` (default:
    the points' own seeds): a fixed pool keeps its shapes, and so its compilation, the same for any
    subset of a cell's points. Points run in
    chunks of at most `chunk` (default: by device), balanced; if the device runs out of memory the
    chunk of vmapped points is halved and the cell restarts. `progress`, if
    given, is called now and then with the fraction of point-steps done. The inference residual is
    measured inside the program every `residual_every` steps (a sweep's `curves_every`), from step 0,
    at the cost of one more activity gradient on those steps. `optimizer`: the direction
    the weights step along (Adam; a benchmark passes another to take it apart).
    """
    seeds, etas, betas = np.asarray(seeds), np.asarray(etas, np.float64), np.asarray(betas, np.float64)
    cfg.check_points(seeds, etas, betas)
    if chunk is not None:
        check_int("chunk", chunk, minimum=1)
    check_int("residual_every", residual_every, minimum=1)
    n_train, d_in = x_train.shape
    cfg.check_steps(n_train)
    chunk = balanced_chunk(chunk or default_chunk(cfg, d_in, n_classes, n_train, len(seeds)), len(seeds))
    dtype = x_train.dtype
    distinct = np.unique(seeds if seed_pool is None else np.asarray(seed_pool))
    if not np.isin(seeds, distinct).all():
        raise InputError(f"seed_pool: must hold every point's seed; got {list(distinct)} for seeds "
                         f"{sorted(set(seeds.tolist()))}.")
    seed_index = np.searchsorted(distinct, seeds)
    args = (
        jnp.asarray(x_train), jnp.asarray(y_train, jnp.int32), jnp.asarray(x_test), jnp.asarray(y_test, jnp.int32),
        jnp.asarray(distinct, jnp.uint32), jnp.asarray(seed_index, jnp.int32),
        jnp.asarray(etas, dtype), jnp.asarray(np.nan_to_num(betas), dtype),
    )
    n_steps = cfg.training_steps(n_train)
    token = next(_TOKENS)
    start = time.perf_counter()
    while True:
        n_chunks = -(-len(seeds) // chunk)
        if progress is not None:
            _PROGRESS[token] = lambda chunk_id, step: progress((chunk_id * n_steps + step) / (n_chunks * n_steps))
        try:
            out = jax.device_get(_train_cell(*args, jnp.asarray(token, jnp.int32), cfg=cfg, n_classes=n_classes,
                                             chunk=chunk, residual_every=residual_every, optimizer=optimizer))
            break
        except jax.errors.JaxRuntimeError as error:
            if "RESOURCE_EXHAUSTED" not in str(error) or chunk == 1:
                raise
            chunk = balanced_chunk(max(1, chunk // 2), len(seeds))
        finally:
            _PROGRESS.pop(token, None)
    losses, eval_acc, acc_final, status, steps_run, residuals = out
    # the device's float32 percentages, back to exact multiples of 100 / n_test (77.099998 -> 77.1)
    n_test = len(x_test)
    eval_acc, acc_final = (np.round(np.float64(a) * n_test / 100) * 100 / n_test for a in (eval_acc, acc_final))
    return CellResult(
        cfg=cfg, seeds=seeds, etas=etas, betas=betas, losses=losses,
        eval_steps=np.arange(1, n_steps // cfg.eval_every + 1) * cfg.eval_every,
        residual_steps=np.arange(0, n_steps, residual_every), residuals=residuals,
        eval_acc=eval_acc, test_acc_final=acc_final, status=status, steps_run=steps_run,
        wall_s=time.perf_counter() - start, chunk=chunk, device=describe_device(),
    )




def train_cell_compiles() -> int:
    """How many cell programs this process has compiled so far (one per cell shape, chunk and number
    of points)."""
    return _train_cell._cache_size()
