"""The FLOP model against the matrix products the step's program actually contains."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from mupc_sweep.cost import step_flops
from mupc_sweep.pcn import init_weights
from mupc_sweep.cell import CellConfig
from mupc_sweep.step import bp_loss_and_grads, pc_loss_and_grads
from mupc_sweep.train import network

D, N, C, B = 6, 5, 3, 4


def dot_flops(jaxpr) -> int:
    """2·(output size)·(contracted size) over every dot_general, scan bodies times their length."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            contracted = np.prod([eqn.invars[0].aval.shape[d] for d in lhs_contract])
            total += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * int(contracted)
        elif eqn.primitive.name == "scan":
            total += eqn.params["length"] * dot_flops(eqn.params["jaxpr"].jaxpr)
        else:
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                total += dot_flops(sub)
    return total


@pytest.mark.parametrize("depth,steps", [(8, None), (6, 9), (8, 3), (3, 1), (5, 0)])
def test_pc_step_flops_count_the_programs_products(depth, steps):
    cfg = CellConfig(width=N, depth=depth, inference_steps=steps, batch_size=B)
    w = init_weights(jax.random.PRNGKey(0), "mupc", D, N, depth, C)
    jaxpr = jax.make_jaxpr(lambda w: pc_loss_and_grads(w, jnp.ones((D, B)), jnp.ones((C, B)), 0.1, network(cfg, D))[:2])(w)
    model = step_flops(algorithm="pc", d_in=D, width=N, depth=depth, d_out=C, inference_steps=cfg.inference_steps, batch_size=B)
    assert dot_flops(jaxpr.jaxpr) == model


def test_bp_step_flops_count_the_programs_products():
    cfg = CellConfig(width=N, depth=4, algorithm="bp", batch_size=B)
    w = init_weights(jax.random.PRNGKey(0), "mupc", D, N, 4, C)
    jaxpr = jax.make_jaxpr(lambda w: bp_loss_and_grads(w, jnp.ones((D, B)), jnp.ones((C, B)), network(cfg, D)))(w)
    model = step_flops(algorithm="bp", d_in=D, width=N, depth=4, d_out=C, inference_steps=cfg.inference_steps, batch_size=B)
    assert dot_flops(jaxpr.jaxpr) == model
