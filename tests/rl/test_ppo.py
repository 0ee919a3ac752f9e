"""Tests for PPO (``jaxrl_icl.rl.ppo``) and its networks (``jaxrl_icl.rl.networks``)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from gymnax.environments import spaces

import envs
from envs.running_moments import RunningMoments
from jaxrl_icl.config import ConfigError
from jaxrl_icl.rl.networks import Categorical, DiagGaussian
from jaxrl_icl.rl.ppo import (
    PPOBatch,
    PPOConfig,
    RewardNormState,
    _update_reward_norm,
    gae_advantages,
    make_train,
    ppo_loss,
)

# A tiny config: 2 updates of 2 envs x 8 steps.
TINY = PPOConfig(num_envs=2, num_steps=8, total_timesteps=2 * 8 * 2, num_minibatches=2)


def _tree_equal(a, b) -> bool:
    """Bitwise equality of two pytrees of arrays (NaNs in the same places count as equal)."""
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True) for x, y in zip(leaves_a, leaves_b)
    )


# ----------------------------------------------------------------------------- GAE


def _gae_by_definition(r, v, nv, term, trunc, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l} over the rest of t's episode within the rollout."""
    T = r.shape[0]
    delta = r + gamma * (1.0 - term) * nv - v
    adv = np.zeros_like(r)
    for t in range(T):
        for env in range(r.shape[1]):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                total += weight * delta[k, env]
                if term[k, env] or trunc[k, env]:
                    break
                weight *= gamma * lam
            adv[t, env] = total
    return adv


@pytest.mark.parametrize("gamma, lam", [(0.99, 0.95), (0.9, 0.0), (0.8, 1.0)])
def test_gae_matches_definition(gamma, lam):
    rng = np.random.default_rng(0)
    T, N = 40, 3
    r = rng.normal(size=(T, N)).astype(np.float32)
    v = rng.normal(size=(T, N)).astype(np.float32)
    nv = rng.normal(size=(T, N)).astype(np.float32)
    term = rng.random((T, N)) < 0.1
    trunc = ~term & (rng.random((T, N)) < 0.1)
    adv, targets = gae_advantages(jnp.asarray(r), jnp.asarray(v), jnp.asarray(nv), term, trunc, gamma, lam)
    expected = _gae_by_definition(r.astype(np.float64), v, nv, term, trunc, gamma, lam)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, expected + v, rtol=1e-5, atol=1e-5)


def test_gae_lambda_one_gives_monte_carlo_return():
    """lam = 1: targets are discounted returns to the episode end, bootstrapped unless terminated."""
    rng = np.random.default_rng(1)
    T, gamma = 30, 0.9
    r = rng.normal(size=(T, 1))
    v = rng.normal(size=(T, 1))
    nv = np.concatenate([v[1:], rng.normal(size=(1, 1))])  # V(s'_t) = V(s_{t+1}) inside episodes
    nv[[9, 19]] = rng.normal(size=(2, 1))  # ... but not across episode ends
    term = np.zeros((T, 1), bool)
    trunc = np.zeros((T, 1), bool)
    term[9], trunc[19] = True, True  # episodes [0, 9], [10, 19], [20, 29] (cut by the rollout end)
    _, targets = gae_advantages(
        jnp.asarray(r, jnp.float32), jnp.asarray(v, jnp.float32), jnp.asarray(nv, jnp.float32),
        term, trunc, gamma, 1.0,
    )
    for t in range(T):
        end = 9 if t <= 9 else 19 if t <= 19 else 29
        ret = sum(gamma ** (k - t) * r[k, 0] for k in range(t, end + 1))
        if end != 9:  # truncated or cut by the rollout: bootstrap from V(s'_end)
            ret += gamma ** (end - t + 1) * nv[end, 0]
        np.testing.assert_allclose(targets[t, 0], ret, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- distributions


def test_distributions_match_scipy():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    actions = rng.integers(0, 4, size=5)
    cat = Categorical(jnp.asarray(logits))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(cat.log_prob(jnp.asarray(actions)), np.log(p[np.arange(5), actions]), rtol=1e-5)
    np.testing.assert_allclose(cat.entropy(), scipy.stats.entropy(p, axis=-1), rtol=1e-5)

    mean = rng.normal(size=(5, 3)).astype(np.float32)
    log_std = rng.normal(size=(5, 3)).astype(np.float32) * 0.5
    x = rng.normal(size=(5, 3)).astype(np.float32)
    gauss = DiagGaussian(jnp.asarray(mean), jnp.asarray(log_std))
    expected = scipy.stats.norm.logpdf(x, mean, np.exp(log_std)).sum(-1)
    np.testing.assert_allclose(gauss.log_prob(jnp.asarray(x)), expected, rtol=1e-5)
    np.testing.assert_allclose(gauss.entropy(), scipy.stats.norm.entropy(mean, np.exp(log_std)).sum(-1), rtol=1e-5)


def test_gaussian_samples_have_the_stated_moments():
    gauss = DiagGaussian(jnp.array([[1.0, -2.0]]), jnp.log(jnp.array([[0.5, 2.0]])))
    samples = jax.vmap(gauss.sample)(jax.random.split(jax.random.PRNGKey(0), 20_000))[:, 0]
    # standard errors: 0.5 / sqrt(20000) = 0.0035 and 2 / sqrt(20000) = 0.014; allow 5 sigma
    assert np.all(np.abs(samples.mean(0) - np.array([1.0, -2.0])) < 5 * np.array([0.0035, 0.014]))
    np.testing.assert_allclose(samples.std(0), [0.5, 2.0], rtol=0.03)


# ----------------------------------------------------------------------------- the loss

# A batch of 4 with a 3-action policy. Ratios come out 1.64 and 0.63 (clipped at 1.2 and
# 0.8 with clip_eps = 0.2) and 1.06 and 1.10 (not clipped); the value changes 0.4 and -0.5
# (clipped to 0.2 and -0.2) and -0.1 and -0.05 (not clipped).
_LOGITS = np.array([[0.0, 1.0, -1.0], [0.5, 0.5, 0.0], [2.0, 0.0, 0.0], [-1.0, 0.0, 1.0]])
_ACTION = np.array([1, 2, 0, 2])
_OLD_LOG_PROB = np.array([-0.9, -1.0, -0.3, -0.5])
_ADVANTAGE = np.array([1.0, -2.0, 0.5, 3.0])
_VALUE, _OLD_VALUE = np.array([0.5, -0.2, 1.0, 2.0]), np.array([0.1, -0.1, 1.5, 2.05])
_TARGET = np.array([1.0, 0.0, 0.2, 2.5])


def _hand_ppo_loss(clip_value_loss):
    """The clipped PPO objective in float64 numpy, from the paper's formulas."""
    log_p = _LOGITS - np.log(np.exp(_LOGITS).sum(axis=1, keepdims=True))
    ratio = np.exp(log_p[np.arange(4), _ACTION] - _OLD_LOG_PROB)
    adv = (_ADVANTAGE - _ADVANTAGE.mean()) / (_ADVANTAGE.std() + 1e-8)
    policy = -np.mean(np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv))
    # (V - target)^2 = 0.25, 0.04, 0.64, 0.25; clipped V = 0.3, -0.2, 1.3, 2.0 gives
    # 0.49, 0.04, 1.21, 0.25; the elementwise max averages 0.4975.
    value = 0.5 * (0.4975 if clip_value_loss else 0.295)
    entropy = -np.mean(np.sum(np.exp(log_p) * log_p, axis=1))
    return policy + 0.5 * value - 0.01 * entropy, policy, value, entropy, ratio


@pytest.mark.parametrize("clip_value_loss", [True, False])
def test_ppo_loss_matches_a_hand_computation(clip_value_loss):
    params = {"logits": jnp.asarray(_LOGITS, jnp.float32), "value": jnp.asarray(_VALUE, jnp.float32)}
    batch = PPOBatch(
        features=jnp.zeros((4, 2)), action=jnp.asarray(_ACTION), log_prob=jnp.asarray(_OLD_LOG_PROB, jnp.float32),
        value=jnp.asarray(_OLD_VALUE, jnp.float32), advantage=jnp.asarray(_ADVANTAGE, jnp.float32),
        target=jnp.asarray(_TARGET, jnp.float32),
    )
    loss, aux = ppo_loss(
        params, lambda p, x: (Categorical(p["logits"]), p["value"]), batch,
        clip_eps=0.2, vf_coef=0.5, ent_coef=0.01, clip_value_loss=clip_value_loss,
    )
    total, policy, value, entropy, ratio = _hand_ppo_loss(clip_value_loss)
    assert np.sum((ratio > 1.2) | (ratio < 0.8)) == 2  # both clip branches are exercised
    np.testing.assert_allclose(float(aux["policy_loss"]), policy, rtol=1e-5)
    np.testing.assert_allclose(float(aux["value_loss"]), value, rtol=1e-6)
    np.testing.assert_allclose(float(aux["entropy"]), entropy, rtol=1e-6)
    np.testing.assert_allclose(float(loss), total, atol=1e-6)  # terms of size ~0.1 nearly cancel
    np.testing.assert_allclose(float(aux["clip_frac"]), 0.5)
    np.testing.assert_allclose(float(aux["approx_kl"]), np.mean(ratio - 1 - np.log(ratio)), rtol=1e-5)


# ----------------------------------------------------------------------------- reward normalisation


def test_reward_norm_tracks_pooled_return_statistics():
    rng = np.random.default_rng(3)
    T, N, gamma = 200, 4, 0.9
    rewards = rng.normal(1.0, 2.0, size=(T, N)).astype(np.float32)
    dones = rng.random((T, N)) < 0.05
    norm = RewardNormState(jnp.zeros(N), RunningMoments.create(count=1e-4))
    seen, acc = [], np.zeros(N)
    for t in range(T):
        acc = acc * gamma + rewards[t]
        seen.append(acc.copy())
        norm, scaled = _update_reward_norm(norm, jnp.asarray(rewards[t]), jnp.asarray(dones[t]), gamma)
        acc[dones[t]] = 0.0
        np.testing.assert_allclose(scaled, rewards[t] / np.sqrt(float(norm.moments.var) + 1e-8), rtol=1e-6)
    seen = np.concatenate(seen)
    np.testing.assert_allclose(float(norm.moments.mean), seen.mean(), rtol=1e-3)
    np.testing.assert_allclose(float(norm.moments.var), seen.var(), rtol=1e-3)


# ----------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "field, overrides",
    [
        ("lr", {"lr": 0.0}),
        ("lr", {"lr": -1e-3}),
        ("num_envs", {"num_envs": 0}),
        ("num_minibatches", {"num_minibatches": 3}),  # 4 * 128 = 512 is not divisible by 3
        ("total_timesteps", {"total_timesteps": 100}),  # less than one 512-step rollout
        ("total_timesteps", {"total_timesteps": 5e5}),  # a float where an int is required
        ("gamma", {"gamma": 1.5}),
        ("gae_lambda", {"gae_lambda": -0.1}),
        ("clip_eps", {"clip_eps": 0.0}),
        ("ent_coef", {"ent_coef": -0.01}),
        ("activation", {"activation": "sigmoid"}),
        ("continuous_action", {"continuous_action": "squash"}),
    ],
)
def test_bad_config_names_the_field(field, overrides):
    with pytest.raises(ConfigError) as err:
        PPOConfig(**overrides)
    assert str(err.value).startswith(f"{field}:")
    assert err.value.field_name == field


class _SpacesOnlyEnv:
    """An env stub with only spaces: make_train must reject it before touching anything else."""

    def __init__(self, obs_space, action_space):
        self._obs_space, self._action_space = obs_space, action_space
        self.default_params = None

    def observation_space(self, params):
        return self._obs_space

    def action_space(self, params):
        return self._action_space


@pytest.mark.parametrize(
    "field, config, obs_space, action_space",
    [
        ("action_space", PPOConfig(), spaces.Box(-1.0, 1.0, (3,)),
         spaces.Dict({"a": spaces.Discrete(2)})),
        ("action_space", PPOConfig(), spaces.Box(-1.0, 1.0, (3,)), spaces.Box(-1.0, 1.0, (2, 2))),
        ("observation_space", PPOConfig(), spaces.Dict({"a": spaces.Discrete(2)}), spaces.Discrete(2)),
        ("normalize_obs", PPOConfig(normalize_obs=True), spaces.Discrete(5), spaces.Discrete(2)),
        ("continuous_action", PPOConfig(continuous_action="tanh"), spaces.Box(-1.0, 1.0, (3,)),
         spaces.Box(-jnp.inf, jnp.inf, (2,))),
    ],
)
def test_env_mismatch_names_the_field(field, config, obs_space, action_space):
    with pytest.raises(ConfigError) as err:
        make_train(config, _SpacesOnlyEnv(obs_space, action_space))
    assert err.value.field_name == field


# ----------------------------------------------------------------------------- determinism, vmap, histories


@pytest.fixture(scope="module")
def darkroom_runs():
    """Darkroom PPO with learning histories: two (seed, task) pairs in one vmap, and alone."""
    env, params = envs.make("darkroom-9x9")
    config = PPOConfig(num_envs=2, num_steps=16, total_timesteps=2 * 16 * 3, num_minibatches=2,
                       record_history=True)
    trainer = make_train(config, env)
    goals = jnp.array([[0, 0], [7, 3]], jnp.int32)
    task_params = jax.vmap(lambda g: params.replace(goal=g))(goals)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    batched = jax.device_get(jax.jit(jax.vmap(trainer))(keys, task_params))
    single = jax.jit(trainer)
    task = [jax.tree.map(lambda x, i=i: x[i], task_params) for i in range(2)]
    alone = [jax.device_get(single(keys[i], task[i])) for i in range(2)]
    return SimpleNamespace(
        env=env, config=config, keys=keys, task_params=task_params, batched=batched, alone=alone,
        again=jax.device_get(single(keys[0], task[0])),
        other_key=jax.device_get(single(keys[1], task[0])),
    )


def test_same_key_is_bitwise_reproducible_and_keys_matter(darkroom_runs):
    run = darkroom_runs
    assert _tree_equal(run.alone[0], run.again)
    assert not _tree_equal(run.alone[0][0].params, run.other_key[0].params)
    assert not np.array_equal(run.alone[0][1]["history/action"], run.other_key[1]["history/action"])


def test_metrics_shapes_and_learning_rate_schedule(darkroom_runs):
    config, metrics = darkroom_runs.config, darkroom_runs.alone[0][1]
    scalars = {"episode_return", "episode_length", "value_loss", "policy_loss", "entropy", "approx_kl",
               "clip_frac", "learning_rate"}
    assert set(metrics) == scalars | {f"history/{k}" for k in ("obs", "action", "reward", "terminated",
                                                                "truncated")}
    for name in scalars:
        assert metrics[name].shape == (config.num_updates,) and metrics[name].dtype == np.float32, name
    # linear annealing over the 3 updates: lr * (1 - u / 3)
    np.testing.assert_allclose(metrics["learning_rate"], config.lr * np.array([1.0, 2 / 3, 1 / 3]), rtol=1e-6)
    # 16-step rollouts of 20-step episodes: update 0 finishes none, updates 1 and 2 one per env
    assert np.isnan(metrics["episode_return"][0]) and np.all(np.isfinite(metrics["episode_return"][1:]))
    np.testing.assert_array_equal(metrics["episode_length"][1:], [20.0, 20.0])


def test_vmap_over_seeds_and_tasks_matches_each_run_alone(darkroom_runs):
    """Discrete outputs (histories, env state) are bitwise equal. Floats agree to rounding only:
    XLA on CPU compiles some batched reductions (e.g. the value head's weight gradient, a
    matrix-vector product, and optax's global-norm clipping) with a different summation order
    under vmap, which changes the last bit of a few parameters."""
    run = darkroom_runs
    for i in range(2):
        batched_i = jax.tree.map(lambda x, i=i: x[i], run.batched)
        for x, y in zip(jax.tree.leaves(batched_i), jax.tree.leaves(run.alone[i])):
            if np.issubdtype(x.dtype, np.floating):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
            else:
                np.testing.assert_array_equal(x, y)


def test_history_is_the_env_stream(darkroom_runs):
    """Replaying the recorded actions through the (deterministic) env reproduces the history."""
    run = darkroom_runs
    env, config, metrics = run.env, run.config, run.batched[1]
    T = config.num_updates * config.num_steps
    assert metrics["history/obs"].shape == (2, config.num_updates, config.num_steps, config.num_envs, 2)
    assert metrics["history/obs"].dtype == np.int8  # positions 0..8
    assert metrics["history/action"].dtype == np.int8  # 5 actions
    assert metrics["history/reward"].dtype == np.float32
    assert metrics["history/terminated"].dtype == metrics["history/truncated"].dtype == np.bool_
    # per task: the updates' rollouts back to back, [T, num_envs, ...]
    history = {k: v.reshape((2, T) + v.shape[3:]) for k, v in metrics.items() if k.startswith("history/")}

    def replay(params, actions):  # actions int[T] of one env
        key = jax.random.PRNGKey(0)  # darkroom's reset and step ignore the key
        obs, state = env.reset(key, params)

        def step(carry, action):
            obs, state = carry
            next_obs, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
            return (next_obs, state), (obs, reward, terminated, truncated)

        return jax.lax.scan(step, (obs, state), actions)[1]

    per_task = jax.vmap(replay, in_axes=(None, 1), out_axes=1)
    obs, reward, terminated, truncated = jax.jit(jax.vmap(per_task))(
        run.task_params, jnp.asarray(history["history/action"], jnp.int32)
    )
    np.testing.assert_array_equal(history["history/obs"], obs)
    np.testing.assert_array_equal(history["history/reward"], reward)
    np.testing.assert_array_equal(history["history/terminated"], terminated)
    np.testing.assert_array_equal(history["history/truncated"], truncated)
    assert history["history/truncated"].sum() == 2 * config.num_envs * (T // 20)  # H = 20


# ----------------------------------------------------------------------------- other spaces


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("gymnax:Pendulum-v1", {"continuous_action": "tanh", "record_history": True}),
        pytest.param("gymnax:Pendulum-v1", {"normalize_obs": True, "normalize_reward": True, "clip_value_loss": False},
                     marks=pytest.mark.slow),
        pytest.param("tabular-random", {"record_history": True}, marks=pytest.mark.slow),  # one-hot observations
    ],
)
def test_runs_on_other_spaces(name, overrides):
    env, params = envs.make(name)
    config = dataclasses.replace(TINY, **overrides)
    _, metrics = jax.jit(make_train(config, env))(jax.random.PRNGKey(0), params)
    for key in ("value_loss", "policy_loss", "entropy", "approx_kl", "clip_frac"):
        assert np.all(np.isfinite(metrics[key])), key
    if "history/action" in metrics:
        action_space = env.action_space(params)
        if isinstance(action_space, spaces.Box):  # tanh-squashed into the open interval (-2, 2)
            assert metrics["history/action"].shape == (2, TINY.num_steps, TINY.num_envs, 1)
            assert np.all(np.abs(metrics["history/action"]) < 2.0)
        else:  # 10 states and 3 actions fit int8
            assert metrics["history/obs"].dtype == metrics["history/action"].dtype == jnp.int8
            assert np.all((metrics["history/action"] >= 0) & (metrics["history/action"] < action_space.n))


@pytest.mark.slow
def test_obs_normalisation_pools_every_env_and_step():
    """The statistics after training equal numpy's over every observation of every rollout,
    and the first rollout ran with the identity normalisation (all of it recorded raw)."""
    env, params = envs.make("gymnax:Pendulum-v1")
    config = dataclasses.replace(TINY, normalize_obs=True, record_history=True,
                                 total_timesteps=3 * TINY.batch_size)
    state, metrics = jax.jit(make_train(config, env))(jax.random.PRNGKey(3), params)
    obs = np.asarray(metrics["history/obs"], np.float64).reshape(-1, 3)  # [3 * 2 * 8, 3]
    assert float(state.obs_norm.count) == obs.shape[0]
    np.testing.assert_allclose(state.obs_norm.mean, obs.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.obs_norm.var, obs.var(axis=0), rtol=1e-4, atol=1e-6)
    x = np.array([[0.5, -0.5, 3.0]], np.float32)
    expected = np.clip((x - obs.mean(0)) / np.sqrt(obs.var(0) + 1e-8), -10, 10)
    np.testing.assert_allclose(state.obs_norm.normalize(x), expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- learning


def _random_policy_mean_return(env, params, episodes=200):
    """Monte Carlo mean return of uniformly random actions (independent of PPO)."""

    def episode(key):
        key, reset_key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)

        def cond(carry):
            return ~carry[2]

        def body(carry):
            key, state, _, total = carry
            key, a_key, s_key = jax.random.split(key, 3)
            action = env.action_space(params).sample(a_key)
            _, state, reward, term, trunc, _ = env.step(s_key, state, action, params)
            return key, state, term | trunc, total + reward

        return jax.lax.while_loop(cond, body, (key, state, jnp.bool_(False), 0.0))[3]

    return float(jnp.mean(jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(0), episodes))))


@pytest.mark.slow
def test_short_cartpole_run_learns():
    env, params = envs.make("gymnax:CartPole-v1")
    random_return = _random_policy_mean_return(env, params)
    assert 15 < random_return < 30  # CartPole's random policy lasts ~22 steps
    config = PPOConfig(total_timesteps=50_000)
    _, metrics = jax.jit(make_train(config, env))(jax.random.PRNGKey(0), params)
    late = np.nanmean(np.asarray(metrics["episode_return"])[-10:])
    early = np.nanmean(np.asarray(metrics["episode_return"])[:3])
    assert early < 2 * random_return
    assert late > 4 * random_return, (late, random_return)


@pytest.mark.slow
def test_purejaxrl_defaults_solve_cartpole():
    """PureJaxRL's CartPole config, 16 seeds, 5e5 steps: mean final return >= 475.

    "Final" is each seed's mean over the episodes finished in its last 20 updates (~10k steps).
    """
    env, params = envs.make("gymnax:CartPole-v1")
    trainer = make_train(PPOConfig(), env)
    keys = jax.random.split(jax.random.PRNGKey(2024), 16)
    _, metrics = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, params)
    final = np.nanmean(np.asarray(metrics["episode_return"])[:, -20:], axis=1)
    assert final.mean() >= 475, final


@pytest.mark.slow
def test_make_policy_acts_like_the_trained_network():
    """Deterministic actions are the network's mean (continuous, clipped to the bounds) or its
    most likely action (discrete); samples follow the policy's probabilities."""
    from jaxrl_icl.rl.networks import ActorCritic
    from jaxrl_icl.rl.ppo import make_policy

    env, params = envs.make("gymnax:CartPole-v1")
    config = PPOConfig(num_envs=4, num_steps=8, total_timesteps=64, num_minibatches=2)
    state = jax.jit(make_train(config, env).init)(jax.random.PRNGKey(0), params)
    act = jax.jit(make_policy(config, env), static_argnums=3)
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    net = ActorCritic(action_dim=2, continuous=False, hidden=config.hidden_size, num_layers=config.num_layers,
                      activation=config.activation)
    logits = net.apply(state.params, obs)[0].logits
    np.testing.assert_array_equal(act(state, jax.random.PRNGKey(2), obs, True), np.argmax(logits, -1))
    draws = jax.vmap(lambda k: act(state, k, obs[:1], False))(jax.random.split(jax.random.PRNGKey(3), 4000))
    np.testing.assert_allclose(np.mean(draws == 1), jax.nn.softmax(logits[0])[1], atol=0.03)

    env, params = envs.make("gymnax:Pendulum-v1")
    config = PPOConfig(num_envs=4, num_steps=8, total_timesteps=64, num_minibatches=2, normalize_obs=True)
    state = jax.jit(make_train(config, env).init)(jax.random.PRNGKey(0), params)
    state = state.replace(params=jax.tree.map(lambda x: x * 400.0, state.params))  # push means past the bounds
    act = jax.jit(make_policy(config, env), static_argnums=3)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 3))
    mean = ActorCritic(action_dim=1, continuous=True, hidden=config.hidden_size, num_layers=config.num_layers,
                       activation=config.activation).apply(state.params, state.obs_norm.normalize(obs))[0].mean
    np.testing.assert_allclose(act(state, jax.random.PRNGKey(2), obs, True), np.clip(mean, -2.0, 2.0), rtol=1e-6)
    assert np.abs(np.asarray(mean)).max() > 2.0
