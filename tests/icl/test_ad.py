"""Algorithm Distillation: context windows, loss, learning, cached rollouts, dataset checks.

Oracles: numpy slicing of the histories; the full-sequence tokenisers of
:mod:`jaxrl_icl.icl.tokens` and ``transformer.apply`` (for windows and for cached rollouts);
a numpy cross-entropy; Monte Carlo frequencies of sampled actions against the softmax.
"""

from __future__ import annotations

import math

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.darkroom import move, optimal_action
from jaxrl_icl.config import ConfigError
from jaxrl_icl.icl import ad
from jaxrl_icl.icl import tokens as tk
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.icl.evaluate import ContextTransition
from jaxrl_icl.icl.train import OptimConfig
from jaxrl_icl.rl.histories import save_histories

A = 5


def random_histories(rng: np.random.Generator, n: int, t: int, obs_dim: int = 2) -> dict[str, np.ndarray]:
    return {
        "obs": rng.integers(0, 9, (n, t, obs_dim)).astype(np.int8),
        "action": rng.integers(0, A, (n, t)).astype(np.int8),
        "reward": rng.integers(0, 2, (n, t)).astype(np.float16),
        "terminated": np.zeros((n, t), bool),
        "truncated": np.zeros((n, t), bool),
    }


# ----------------------------------------------------------------------------- windows


def test_sampled_windows_equal_slices_of_the_histories():
    rng = np.random.default_rng(0)
    hist = random_histories(rng, n=5, t=40)
    data = ad.ad_data(hist, A)
    length, batch = 12, 512
    w = jax.jit(ad.sample_windows, static_argnums=(2, 3))(data, jax.random.PRNGKey(1), batch, length)
    h, s = np.asarray(w.history), np.asarray(w.start)
    assert h.min() >= 0 and h.max() < 5 and s.min() >= 0 and s.max() <= 40 - length
    # 512 uniform draws over 29 starts: the two ends both show up (miss probability ~1e-7 each)
    assert s.min() == 0 and s.max() == 40 - length
    prev_action = np.concatenate([np.full((5, 1), -1), hist["action"][:, :-1]], axis=1)
    prev_reward = np.concatenate([np.zeros((5, 1)), hist["reward"][:, :-1]], axis=1)
    for b in range(batch):
        cut = slice(s[b], s[b] + length)
        np.testing.assert_array_equal(w.obs[b], hist["obs"][h[b], cut])
        np.testing.assert_array_equal(w.action[b], hist["action"][h[b], cut])
        np.testing.assert_array_equal(w.reward[b], hist["reward"][h[b], cut])
        np.testing.assert_array_equal(w.prev_action[b], prev_action[h[b], cut])
        np.testing.assert_array_equal(w.prev_reward[b], prev_reward[h[b], cut])


@pytest.mark.parametrize("layout", ["step", "triplet"])
def test_window_tokens_equal_slices_of_the_whole_history_tokens(layout):
    rng = np.random.default_rng(1)
    hist = random_histories(rng, n=3, t=30)
    config = ad.ADConfig(layout=layout, obs_scale=0.125)
    tokenise = tk.step_tokens if layout == "step" else tk.triplet_tokens

    @jax.jit  # one compiled program for the windows and both tokenisations
    def windows_and_tokens(data, key, obs, action, reward):
        w = ad.sample_windows(data, key, 16, 7)
        return w, ad.window_tokens(config, w, A), tokenise(obs, action, reward, A)

    w, (tokens, positions), (full, full_positions) = windows_and_tokens(
        ad.ad_data(hist, A), jax.random.PRNGKey(2), hist["obs"].astype(np.float32) * 0.125,
        hist["action"].astype(np.int32), hist["reward"])
    tokens, full = np.asarray(tokens), np.asarray(full)  # numpy slicing below: no compiles
    k = config.tokens_per_step
    for b, (h, s) in enumerate(zip(np.asarray(w.history), np.asarray(w.start))):
        np.testing.assert_array_equal(tokens[b], full[h, k * s : k * (s + 7)])
    np.testing.assert_array_equal(positions, full_positions[:7])


# ----------------------------------------------------------------------------- loss and learning


def small_config(layout: str = "step", **kw) -> ad.ADConfig:
    backbone = tr.BackboneConfig(width=32, num_layers=2, num_heads=2)
    return ad.ADConfig(layout=layout, context_episodes=2, backbone=backbone, **kw)


def test_loss_at_init_is_log_num_actions_and_equals_numpy_cross_entropy():
    rng = np.random.default_rng(3)
    hist = random_histories(rng, n=4, t=30)
    config, horizon = small_config(obs_scale=0.125), 5
    optim = OptimConfig(num_updates=1, batch_size=8)
    data = ad.ad_data(hist, A)
    trainer = ad.make_train(config, optim, 2, A, horizon)
    # jitted set-up: each eager op would be one more XLA compile
    state, update = jax.jit(trainer.init)(jax.random.PRNGKey(0), data), jax.jit(trainer.update)
    _, metrics = update(state, data)
    assert float(metrics["loss"]) == pytest.approx(math.log(A), abs=1e-5)

    # With random (non-zero head) parameters: recompute the same batch and its loss by hand.
    model = ad.make_model(config, 2, A, horizon)
    params = tr.init(model, jax.random.PRNGKey(7))  # jitted in the library
    _, metrics = update(state.replace(params=params), data)
    batch_key = jax.random.split(state.key)[1]
    w = jax.jit(ad.sample_windows, static_argnums=(2, 3))(ad.ad_data(hist, A), jax.random.split(batch_key)[0], 8, 10)
    full, _ = jax.jit(tk.step_tokens, static_argnums=3)(hist["obs"].astype(np.float32) * 0.125,
                                                        hist["action"].astype(np.int32), hist["reward"], A)
    full = np.asarray(full)
    tokens = np.stack([full[h, s : s + 10] for h, s in zip(np.asarray(w.history), np.asarray(w.start))])
    logits = np.asarray(jax.jit(lambda p, x: tr.apply(model, p, x))(params, jnp.asarray(tokens)), np.float64)
    labels = np.asarray(w.action, int)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_probs, labels[..., None], -1).mean()
    assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-4)
    assert float(metrics["accuracy"]) == pytest.approx(np.mean(logits.argmax(-1) == labels))


def test_histories_are_an_argument_of_the_update_not_a_compiled_constant():
    """The lowered update does not grow with the histories (a closed-over array would be
    embedded in the program as a constant: the control below shows that this measure sees it)."""
    config, optim = small_config(), OptimConfig(num_updates=1, batch_size=4)
    trainer = ad.make_train(config, optim, 2, A, 5)
    rng = np.random.default_rng(5)
    sizes, closed_sizes = [], []
    for n in (2, 64):
        data = ad.ad_data(random_histories(rng, n=n, t=200), A)
        state = trainer.init(jax.random.PRNGKey(0), data)
        sizes.append(len(jax.jit(trainer.update).lower(state, data).as_text()))
        closed_sizes.append(len(jax.jit(lambda s, d=data: trainer.update(s, d)).lower(state).as_text()))
    data_bytes = 62 * 200 * (2 + 1 + 2 + 4 + 2)  # 62 more histories of int8 obs[2], int8 action, ... (136 kB)
    assert closed_sizes[1] - closed_sizes[0] > data_bytes  # control: constants show up (as hex text)
    assert abs(sizes[1] - sizes[0]) < 100  # only the shapes in the signature change


def test_data_that_does_not_fit_the_model_names_the_field():
    trainer = ad.make_train(small_config(), OptimConfig(num_updates=1, batch_size=4), 2, A, 5)
    rng = np.random.default_rng(6)
    cases = [(ad.ad_data(random_histories(rng, n=2, t=30, obs_dim=3), A), ValueError, "data.obs: 3 observation"),
             (ad.ad_data(random_histories(rng, n=2, t=9), A), ValueError, "data.action: 9 steps, shorter than one "
              "context of 10"),
             (random_histories(rng, n=2, t=30), TypeError, "data: AD trains on ADData")]
    for data, error, message in cases:
        state = trainer.init(jax.random.PRNGKey(0), data)
        with pytest.raises(error, match=message):
            jax.jit(trainer.update)(state, data)


def expert_histories(num: int, steps: int, goal=(4, 4), size: int = 9) -> dict[str, np.ndarray]:
    """Random cells with the expert's (optimal) action toward a fixed goal: imitable from the obs alone."""
    rng = np.random.default_rng(4)
    pos = rng.integers(0, size, (num, steps, 2)).astype(np.int32)
    goal = jnp.asarray(goal, jnp.int32)
    action = np.asarray(jax.vmap(jax.vmap(lambda p: optimal_action(p, goal)))(jnp.asarray(pos)))
    nxt = np.asarray(jax.vmap(jax.vmap(lambda p, a: move(p, a, size)))(jnp.asarray(pos), jnp.asarray(action)))
    reward = np.all(nxt == np.asarray(goal), axis=-1).astype(np.float32)
    return {"obs": pos, "action": action.astype(np.int32), "reward": reward,
            "terminated": np.zeros((num, steps), bool), "truncated": np.zeros((num, steps), bool)}


@pytest.mark.slow
def test_training_on_an_expert_history_drives_accuracy_up():
    config = small_config(obs_scale=0.125)
    optim = OptimConfig(num_updates=300, batch_size=16, lr=3e-3, warmup_updates=20)
    trainer = ad.make_train(config, optim, 2, A, 5)
    _, metrics = jax.jit(trainer)(jax.random.PRNGKey(0), ad.ad_data(expert_histories(8, 200), A))
    acc = np.asarray(metrics["accuracy"])
    labels = expert_histories(8, 200)["action"]
    # equal logits at init: argmax is action 0, right only where the expert stays (on the goal)
    assert acc[0] < 0.1
    majority = np.bincount(labels.ravel(), minlength=A).max() / labels.size
    assert majority < 0.5  # right/left split the grid: no constant guess reaches 0.9
    assert acc[-20:].mean() > 0.9, acc[-20:]
    assert np.asarray(metrics["loss"])[-20:].mean() < 0.4


# ----------------------------------------------------------------------------- acting


@pytest.mark.parametrize("layout", ["step", pytest.param("triplet", marks=pytest.mark.slow)])
def test_cached_rollout_logits_equal_full_sequence_logits(layout):
    """A stream 2.5 contexts long: the agent's ring-buffer cache against apply's window mask."""
    config, horizon = small_config(layout, obs_scale=0.125), 5
    model = ad.make_model(config, 2, A, horizon)
    params = tr.init(model, jax.random.PRNGKey(5))
    hist = random_histories(np.random.default_rng(6), n=1, t=25)
    obs, action, reward = hist["obs"][0], hist["action"][0].astype(np.int32), hist["reward"][0].astype(np.float32)
    agent = ad.make_agent(config, model)

    tokenise = tk.step_tokens if layout == "step" else tk.triplet_tokens

    def body(carry, step):
        o, a, r = step
        logits, carry = ad.policy_logits(config, model, params, carry, o)
        carry = agent.observe(params, carry, ContextTransition(o, a, r, o, jnp.bool_(False)))
        return carry, logits

    @jax.jit  # one compiled program for the cached rollout and the full-sequence logits
    def rollout_and_full(params, obs, action, reward):
        _, logits = jax.lax.scan(body, agent.init(), (obs, action, reward))
        tokens, positions = tokenise(obs[None].astype(jnp.float32) * 0.125, action[None], reward[None], A)
        return logits, tokens.shape[1], tr.apply(model, params, tokens)[0, positions]

    logits, num_tokens, expected = rollout_and_full(params, obs, action, reward)
    assert int(num_tokens) > 2 * model.window
    np.testing.assert_allclose(logits, expected, atol=2e-5, rtol=1e-5)


def test_act_samples_actions_with_the_softmax_probabilities():
    config = small_config(obs_scale=0.125)
    model = ad.make_model(config, 2, A, 5)
    params = tr.init(model, jax.random.PRNGKey(8))
    agent = ad.make_agent(config, model)
    obs = jnp.asarray([3, 7], jnp.int32)
    probs = jax.jit(lambda p: jax.nn.softmax(ad.policy_logits(config, model, p, agent.init(), obs)[0]))(params)
    n = 20_000
    actions = jax.jit(jax.vmap(lambda k: agent.act(params, agent.init(), obs, k)[0]))(
        jax.random.split(jax.random.PRNGKey(9), n))
    freq = np.bincount(np.asarray(actions), minlength=A) / n
    probs = np.asarray(probs, np.float64)
    assert np.all(np.abs(freq - probs) < 4 * np.sqrt(probs * (1 - probs) / n) + 1e-9), (freq, probs)


def test_evaluate_runs_the_agent_online_in_darkroom():
    from jaxrl_icl.icl.evaluate import episode_returns, evaluate

    env, base = envs.make("darkroom-9x9")
    config = small_config(obs_scale=0.125)
    model = ad.make_model(config, 2, A, env.horizon)
    params = ad.init_params(model, jax.random.PRNGKey(0))  # uniform policy
    goals = jnp.asarray([[4, 5], [0, 0]], jnp.int32)
    tasks = jax.vmap(lambda g: base.replace(goal=g))(goals)
    out = jax.jit(lambda k: evaluate(env, tasks, ad.make_agent(config, model), params, k,
                                     num_steps=3 * env.horizon, num_seeds=2))(jax.random.PRNGKey(1))
    returns = episode_returns(out["reward"], out["done"], env.horizon)
    assert returns.shape == (2, 2, 3)
    assert np.all((returns >= 0) & (returns <= env.horizon))


# ----------------------------------------------------------------------------- configuration and data checks


def test_config_and_model_validation():
    with pytest.raises(ConfigError, match="layout"):
        ad.ADConfig(layout="quad")
    with pytest.raises(ConfigError, match="^backbone.positions"):
        ad.ADConfig(backbone=tr.BackboneConfig(positions="learned"))
    with pytest.raises(ConfigError, match="context_episodes"):
        ad.ADConfig(context_episodes=0)
    model = ad.make_model(ad.ADConfig(layout="triplet", context_episodes=3), 2, A, 20)
    assert model.window == model.max_len == 3 * 20 * 3 and model.context_limit is None
    assert model.d_in == tk.triplet_token_dim(2, A)
    with pytest.raises(ValueError, match="horizon"):
        ad.make_model(ad.ADConfig(), 2, A, 0)


def _meta(env: str, n: int) -> dict:
    return {"env": env, "algorithm": "q_learning", "config": {}, "seed": 0,
            "params": {"goal": np.zeros((n, 2), np.int32)}}


@pytest.fixture
def darkroom():
    env, params = envs.make("darkroom-9x9")
    return env, params


def test_good_dataset_loads(tmp_path, darkroom):
    path = save_histories(tmp_path / "ok.h5", random_histories(np.random.default_rng(0), 2, 80),
                          _meta("darkroom-9x9", 2))
    hist, meta = ad.load_ad_histories(path, "darkroom-9x9", *darkroom, ad.ADConfig())
    assert hist["action"].shape == (2, 80) and meta["env"] == "darkroom-9x9"


@pytest.mark.parametrize(
    "name, env_name, obs_dim, steps, action_high, match",
    [
        ("wrong_env.h5", "darkroom-10x10", 2, 80, A, "from env 'darkroom-10x10', expected 'darkroom-9x9'"),
        ("wrong_obs.h5", "darkroom-9x9", 3, 80, A, r"observation shape \[3\] does not match darkroom-9x9's \[2\]"),
        ("short.h5", "darkroom-9x9", 2, 79, A, "79 steps, shorter than one context of 4 episodes x 20 steps = 80"),
        ("bad_actions.h5", "darkroom-9x9", 2, 80, 7, r"action values must be in \[0, 5\)"),
    ],
)
def test_mismatched_dataset_fails_on_load_naming_the_file(tmp_path, darkroom, name, env_name, obs_dim, steps,
                                                          action_high, match):
    hist = random_histories(np.random.default_rng(0), 2, steps, obs_dim)
    hist["action"][0, 0] = action_high - 1
    path = save_histories(tmp_path / name, hist, _meta(env_name, 2))
    with pytest.raises(ValueError, match=match) as err:
        ad.load_ad_histories(path, "darkroom-9x9", *darkroom, ad.ADConfig())
    assert str(path) in str(err.value)


def test_observations_off_the_grid_fail_on_load_naming_the_file_and_key(tmp_path, darkroom):
    hist = random_histories(np.random.default_rng(0), 2, 80)
    hist["obs"][1, 5, 1] = 9  # the 9x9 grid's positions are 0..8
    path = save_histories(tmp_path / "off_grid.h5", hist, _meta("darkroom-9x9", 2))
    with pytest.raises(ValueError, match=r"off_grid\.h5: histories/obs: the value at \[1, 5, 1\], 9, is outside"):
        ad.load_ad_histories(path, "darkroom-9x9", *darkroom, ad.ADConfig())


def test_empty_files_fail_on_load_naming_the_file(tmp_path, darkroom):
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable HDF5 file") as err:
        ad.load_ad_histories(empty, "darkroom-9x9", *darkroom, ad.ADConfig())
    assert str(empty) in str(err.value)
    # A histories file whose arrays hold no steps.
    hollow = save_histories(tmp_path / "hollow.h5", random_histories(np.random.default_rng(0), 2, 80),
                            _meta("darkroom-9x9", 2))
    with h5py.File(hollow, "r+") as f:
        for key in list(f["histories"]):
            shape = f["histories"][key].shape
            dtype = f["histories"][key].dtype
            del f["histories"][key]
            f["histories"].create_dataset(key, shape=(2, 0, *shape[2:]), dtype=dtype)
        f.attrs["num_steps"] = 0
    with pytest.raises(ValueError, match="non-empty") as err:
        ad.load_ad_histories(hollow, "darkroom-9x9", *darkroom, ad.ADConfig())
    assert str(hollow) in str(err.value)
