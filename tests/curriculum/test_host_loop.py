"""Teachers driven from a host loop: ``vmap(init)`` once, then jitted ``vmap(sample)`` / ``vmap(update)``
per episode. The batched state must give each seed's unbatched result, and the rare costly update
(GMM refit, RIAC split) must run only on the calls where some seed needs it, not on every call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.curriculum import ALPGMMConfig, RIACConfig, gmm_teacher, riac, teacher_for

CONFIGS = {
    "alp-gmm": (ALPGMMConfig(fit_rate=10, max_k=3, history_capacity=64), gmm_teacher, "refit"),
    "riac": (RIACConfig(max_region_size=10, min_child_pairs=2), riac, "_split"),
}
SEEDS, EPISODES = 3, 30


def _competence(task: jax.Array) -> jax.Array:
    return jnp.clip(1.2 * task[..., 0] - 0.5 * task[..., 1], 0.0, 1.0)


def _host_loop(teacher, config, keys, batched: bool):
    """Tasks float32[EPISODES, ...] and the final state, one jitted sample and update per episode."""
    if batched:
        state = jax.vmap(teacher.init, in_axes=(0, None))(keys, config)
        sample, update = jax.jit(jax.vmap(teacher.sample)), jax.jit(jax.vmap(teacher.update))
    else:
        state = teacher.init(keys, config)
        sample, update = jax.jit(teacher.sample), jax.jit(teacher.update)
    tasks = []
    for episode in range(EPISODES):
        k = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, episode) if batched else jax.random.fold_in(
            keys, episode)
        task, state = sample(k, state)
        state = update(state, task, _competence(task))
        tasks.append(np.asarray(task))
    return np.stack(tasks), state


@pytest.mark.slow  # ~40 s: four compiles per teacher
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_vmapped_host_loop_equals_each_seed_and_runs_the_rare_branch_only_when_due(name, monkeypatch):
    config, module, branch = CONFIGS[name]
    teacher = teacher_for(config)
    runs = []
    original = getattr(module, branch)

    def counted(state, *args):
        jax.debug.callback(lambda: runs.append(1))
        return original(state, *args)

    monkeypatch.setattr(module, branch, counted)
    keys = jax.random.split(jax.random.key(5), SEEDS)
    tasks, state = _host_loop(teacher, config, keys, batched=True)
    batched_runs = len(runs)
    for s in range(SEEDS):
        want_tasks, want_state = _host_loop(teacher, config, keys[s], batched=False)
        np.testing.assert_allclose(tasks[:, s], want_tasks, atol=1e-5)
        for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(want_state)):
            if jnp.issubdtype(got.dtype, jax.dtypes.prng_key):
                got, want = jax.random.key_data(got), jax.random.key_data(want)
            np.testing.assert_allclose(np.asarray(got)[s], np.asarray(want), atol=1e-5)
    single_runs = len(runs) - batched_runs
    assert single_runs > 0
    # the batched loop runs the branch (one vmapped call) only on the calls where some seed is due:
    # at most as often as the seeds alone together, and far from every call
    assert 0 < batched_runs <= single_runs and batched_runs < EPISODES / 3
    if name == "alp-gmm":  # seeds in step: a refit at 10, 20 and 30 reports
        assert single_runs == SEEDS * 3 and batched_runs == 3
