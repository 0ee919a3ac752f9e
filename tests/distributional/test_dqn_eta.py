"""DηN: targets against rlax's projection, utility scores by hand, learning the true Q on a
tiny deterministic MDP, vmap over seeds, and config errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.tabular import TabularMDP, TabularParams
from jaxrl_icl.config import ConfigError
from jaxrl_icl.distributional import cvar_utility, threshold_utility
from jaxrl_icl.distributional.dqn import (
    DQNEtaConfig,
    categorical_targets,
    make_agent,
    make_train,
    utility_scores,
)
from jaxrl_icl.rl.dqn import DQNConfig

# A 3-state, 2-action deterministic MDP: next state NEXT[s, a], reward R[s, a].
NEXT = np.array([[1, 2], [2, 0], [0, 1]])
R = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.0]], np.float32)


def _tiny_mdp(horizon=10):
    env = TabularMDP(3, 2, horizon=horizon)
    params = TabularParams(P=jnp.asarray(np.eye(3, dtype=np.float32)[NEXT]), R=jnp.asarray(R),
                           init_dist=jnp.full((3,), 1.0 / 3), max_steps_in_episode=horizon)
    return env, params


def _tiny_config(total=3000, objective="expectation", gamma=0.8):
    dqn = DQNConfig(num_envs=4, total_timesteps=total, steps_per_update=total // 6, buffer_size=1000,
                    batch_size=32, lr=3e-3, gamma=gamma, target_update_interval=40,
                    epsilon_start=1.0, epsilon_finish=1.0, epsilon_anneal_steps=100,
                    learning_starts=200, train_frequency=4, hidden_size=32, num_layers=1)
    return DQNEtaConfig(dqn=dqn, num_atoms=26, v_min=0.0, v_max=5.0, objective=objective,
                        c0_min=-2.0, c0_max=0.0, num_c0=5, stock_scale=10.0)


def test_targets_equal_rlax_projection_of_the_chosen_action():
    rlax = pytest.importorskip("rlax")
    rng = np.random.default_rng(0)
    B, A, m = 6, 3, 11
    reward = rng.uniform(-3, 3, B).astype(np.float32)
    terminated = np.array([False, True, False, False, True, False])
    next_probs = rng.dirichlet(np.ones(m), size=(B, A)).astype(np.float32)
    scores = rng.normal(size=(B, A)).astype(np.float32)
    gamma = 0.9

    @jax.jit  # one compiled program for ours and the rlax reference of every row (inputs: the numpy arrays)
    def ours_and_refs():
        z = jnp.linspace(-5.0, 5.0, m)
        ours = categorical_targets(reward, terminated, next_probs, scores, z, gamma)
        refs = []
        for b in range(B):  # the chosen action and the discount read from the numpy inputs
            a = int(np.argmax(scores[b]))
            discount = 0.0 if terminated[b] else gamma
            refs.append(rlax.categorical_l2_project(reward[b] + discount * z, next_probs[b, a], z))
        return ours, jnp.stack(refs)

    ours, refs = ours_and_refs()
    for b in range(B):
        np.testing.assert_allclose(ours[b], refs[b], atol=1e-6)


def test_utility_scores_by_hand():
    z = jnp.array([-3.0, -1.0, 2.0])
    probs = jnp.array([[[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]])  # [1, A=2, m=3]
    stock = jnp.array([1.0])
    # CVaR_0.5 utility min(x, 0) / 0.5 at c + z = (-2, 0, 3): action 0 -> 0.5 * -4 = -2, action 1 -> 0
    np.testing.assert_allclose(utility_scores(probs, stock, z, cvar_utility(0.5)), [[-2.0, 0.0]])
    # threshold 1{c + z >= 0}: action 0 -> 0.5, action 1 -> 1
    np.testing.assert_allclose(utility_scores(probs, stock, z, threshold_utility), [[0.5, 1.0]])


@pytest.mark.slow
def test_learned_mean_approaches_true_q_on_a_deterministic_mdp():
    env, params = _tiny_mdp()
    config = _tiny_config()
    gamma = config.dqn.gamma
    V = np.zeros(3)
    for _ in range(300):
        V = (R + gamma * V[NEXT]).max(axis=1)
    Q = R + gamma * V[NEXT]
    state, metrics = jax.jit(make_train(config, env, params))(jax.random.key(0), params)
    agent = make_agent(config, env, params)
    # expectation objective, c_0 = 0: the stock along an episode stays in [0, R_max / gamma^H]

    @jax.jit  # one compiled program for the read-out
    def mean_and_greedy(params):
        probs = jax.nn.softmax(agent.logits(params, agent.augment(jnp.arange(3), jnp.zeros(3))))
        return probs @ config.support, agent.act(params, jnp.arange(3), 0.0)

    mean, greedy = map(np.asarray, mean_and_greedy(state.params))
    np.testing.assert_allclose(mean, Q, atol=0.1)
    np.testing.assert_array_equal(greedy, Q.argmax(1))
    assert np.all(np.isfinite(np.asarray(metrics["loss"])[1:]))


@pytest.mark.slow
def test_vmap_over_seeds_equals_per_seed_runs():
    env, params = _tiny_mdp()
    config = _tiny_config(total=600, objective="cvar")
    trainer = make_train(config, env, params)
    keys = jax.random.split(jax.random.key(3), 2)
    _, batched = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, params)
    for i in range(2):
        _, single = jax.jit(trainer)(keys[i], params)
        for name in single:
            np.testing.assert_allclose(batched[name][i], single[name], rtol=1e-5, atol=1e-5, err_msg=name)
    # cvar picks each episode's c_0 on the candidate grid [-2, 0] (the metric is a mean over envs)
    c0 = np.asarray(batched["c0"])
    assert np.all((c0 >= -2.0) & (c0 <= 0.0)) and np.all(np.isin(c0 * 4 * 2, np.arange(-16, 1)))


@pytest.mark.parametrize(
    "change, field_name",
    [
        ({"num_atoms": 1}, "num_atoms"),
        ({"v_min": 1.0, "v_max": 0.0}, "v_max"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"c0_min": 2.0, "c0_max": 1.0}, "c0_max"),
        ({"objective": "median"}, "objective"),
        ({"num_c0": 0}, "num_c0"),
    ],
)
def test_bad_config_rejected_naming_the_field(change, field_name):
    with pytest.raises(ConfigError, match=field_name):
        dataclasses.replace(DQNEtaConfig(), **change)


def test_bad_dqn_fields_and_env_rejected():
    with pytest.raises(ConfigError, match="dqn.loss"):
        DQNEtaConfig(dqn=DQNConfig(loss="huber"))
    with pytest.raises(ConfigError, match="dqn.gamma"):
        DQNEtaConfig(dqn=DQNConfig(gamma=0.0))
    import envs

    env, params = envs.make("gymnax:Pendulum-v1")
    with pytest.raises(ConfigError, match="action_space"):
        make_train(DQNEtaConfig(), env, params)
    with pytest.raises(TypeError, match="DQNEtaConfig"):
        make_train(DQNConfig(), *_tiny_mdp())
