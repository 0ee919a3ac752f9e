"""The task-pool CartPole (envs.task_pool_cartpole) against gymnax's CartPole with the task's physics."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.task_pool_cartpole import TaskPoolCartPole, TaskPoolParams


def test_task_pool_env_plays_cartpole_with_the_drawn_task():
    env = TaskPoolCartPole()
    cartpole = gymnax.environments.CartPole()
    tasks = jnp.array([[0.2, 3.0], [0.9, 12.0]], jnp.float32)
    params = TaskPoolParams(tasks, 50)
    key = jax.random.key(1)
    obs, state = env.reset_env(key, params)
    assert any(np.array_equal(state.task, t) for t in np.asarray(tasks))
    inner_params = cartpole.default_params.replace(length=state.task[0], force_mag=state.task[1],
                                                   polemass_length=0.1 * state.task[0])
    # the same step as gymnax CartPole with the task's physics
    ref = cartpole.step_env(key, state.inner, 1, inner_params)
    got = env.step_env(key, state, 1, params)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    np.testing.assert_array_equal(got[1].task, state.task)  # the episode keeps its task
    state = state.replace(inner=state.inner.replace(time=50))
    assert bool(env.is_truncated(state, params)) and int(state.time) == 50


def test_fixed_length_env_keeps_cartpole_return_but_runs_to_the_time_limit():
    # always pushing right topples the pole within a few dozen steps: the oracle is gymnax CartPole
    cartpole = gymnax.environments.CartPole()
    task = jnp.array([0.3, 5.0], jnp.float32)
    inner_params = cartpole.default_params.replace(length=task[0], force_mag=task[1],
                                                   polemass_length=0.1 * task[0], max_steps_in_episode=60)
    env = TaskPoolCartPole(fixed_length=True)
    params = TaskPoolParams(task[None], 60)
    key = jax.random.key(3)
    _, state = env.reset_env(key, params)
    ref_state, ref_return, ref_steps, ref_done = state.inner, 0.0, 0, False
    while not ref_done:
        _, ref_state, reward, ref_done, _ = cartpole.step_env(key, ref_state, 1, inner_params)
        ref_return, ref_steps = ref_return + float(reward), ref_steps + 1
    assert ref_steps < 60

    total, steps = 0.0, 0
    while True:
        obs, state, reward, terminated, truncated, _ = env.step(key, state, 1, params)
        total, steps = total + float(reward), steps + 1
        assert not bool(terminated)
        if bool(truncated):
            break
        if steps > ref_steps:  # after the failure: frozen, paying nothing
            assert bool(state.fallen) and float(reward) == 0.0
            np.testing.assert_allclose(obs, cartpole.get_obs(ref_state), rtol=1e-5, atol=1e-6)
    assert steps == 60 and total == ref_return


def test_make_builds_both_variants_and_sample_params_is_log_uniform_in_the_box():
    env, params = envs.make("cartpole-task-pool", max_steps_in_episode=30)
    assert not env.fixed_length and params.max_steps_in_episode == 30
    np.testing.assert_allclose(params.tasks, [[0.5, 10.0]])
    assert envs.make("cartpole-task-pool-fixed-length")[0].fixed_length
    pool = env.sample_params(jax.random.key(0), params.replace(tasks=jnp.ones((4000, 2))))
    assert pool.tasks.shape == (4000, 2) and pool.max_steps_in_episode == 30
    logs = np.log10(np.asarray(pool.tasks))
    for column, (low, high) in enumerate((env.length_range, env.force_range)):
        u = (logs[:, column] - np.log10(low)) / (np.log10(high) - np.log10(low))
        assert u.min() >= 0 and u.max() <= 1
        # uniform in log scale: every decile of the log range holds about a tenth of the draws
        np.testing.assert_allclose(np.histogram(u, bins=10, range=(0, 1))[0] / 4000, 0.1, atol=0.025)


@pytest.mark.parametrize("tasks, match", [
    (jnp.zeros((0, 2)), r"tasks must be \[M, 2\]"),
    (jnp.ones((3,)), r"tasks must be \[M, 2\]"),
    (jnp.array([[0.5, -1.0]]), "tasks must be positive and finite"),
    (jnp.array([[jnp.nan, 10.0]]), "tasks must be positive and finite"),
])
def test_bad_tasks_name_the_field(tasks, match):
    with pytest.raises(ValueError, match=rf"make\('cartpole-task-pool'\): {match}"):
        envs.make("cartpole-task-pool", tasks=tasks)
    with pytest.raises(ValueError, match="length_range"):
        TaskPoolCartPole(length_range=(1.0, 0.5))
