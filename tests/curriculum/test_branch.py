"""branch.update_if: a real branch under vmap, taken when any member is due, kept only by due members."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_icl.curriculum.branch import update_if

RUNS = []


def _add(state, amount):
    jax.debug.callback(lambda: RUNS.append(1))
    return {"x": state["x"] + amount, "n": state["n"] + 1}


def _step(pred, state, amount):
    return update_if(pred, _add, state, amount)


def test_update_if_runs_once_per_call_where_some_member_is_due():
    state = {"x": jnp.arange(4.0), "n": jnp.zeros(4, jnp.int32)}
    step = jax.jit(jax.vmap(_step, in_axes=(0, 0, None)))
    RUNS.clear()
    out = step(jnp.zeros(4, bool), state, 10.0)
    jax.block_until_ready(out)
    assert RUNS == []  # nobody due: the branch does not run (a select would run it)
    np.testing.assert_array_equal(out["x"], [0, 1, 2, 3])
    out = step(jnp.array([False, True, False, True]), state, 10.0)
    jax.block_until_ready(out)
    assert len(RUNS) == 1  # one batched run for the whole call
    np.testing.assert_array_equal(out["x"], [0, 11, 2, 13])
    np.testing.assert_array_equal(out["n"], [0, 1, 0, 1])
    # unbatched: a plain conditional
    RUNS.clear()
    single = jax.jit(_step)(jnp.bool_(True), {"x": jnp.float32(1), "n": jnp.int32(0)}, 2.0)
    assert float(single["x"]) == 3.0 and len(RUNS) == 1
