"""Decision Transformer and MO-DT: masked losses, the cached rollout against recomputation,
cloning one deterministic expert trajectory, and MO-DT with its extras switched off."""

from __future__ import annotations

import dataclasses
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.offline import decision_transformer as dt
from jaxrl_icl.offline.dataset import make_dataset, sample_segments
from tests.offline.conftest import make_episodes

TINY = tr.BackboneConfig(width=32, num_layers=2, num_heads=2)
HORIZON = 10
EXPERT = 0.8 * np.sin(np.arange(HORIZON) * 0.9).astype(np.float32)  # the expert's action at each step


class Drift:
    """Deterministic 1-D env: ``x_0 = 0``, ``x_{t+1} = x_t + a_t``, reward ``-(x_{t+1} - 1)^2``,
    observation ``[x, t / HORIZON]``; truncated after HORIZON steps."""

    def reset(self, key, params):
        del key, params
        state = (jnp.float32(0.0), jnp.int32(0))
        return self._obs(state), state

    def _obs(self, state):
        return jnp.stack([state[0], state[1] / HORIZON])

    def step(self, key, state, action, params):
        del key, params
        x, t = state[0] + action[0], state[1] + 1
        new = (x, t)
        return self._obs(new), new, -((x - 1.0) ** 2), jnp.bool_(False), t >= HORIZON, {}


def expert_dataset(copies: int = 4):
    xs = np.concatenate([[0.0], np.cumsum(EXPERT)]).astype(np.float32)
    obs = np.stack([xs[:-1], np.arange(HORIZON) / HORIZON], axis=1).astype(np.float32)
    nxt = np.stack([xs[1:], np.arange(1, HORIZON + 1) / HORIZON], axis=1).astype(np.float32)
    timeouts = np.zeros(HORIZON, bool)
    timeouts[-1] = True
    one = {"observations": obs, "actions": EXPERT[:, None], "rewards": -((xs[1:] - 1.0) ** 2),
           "terminals": np.zeros(HORIZON, bool), "timeouts": timeouts, "next_observations": nxt}
    return make_dataset({k: np.concatenate([v] * copies) for k, v in one.items()})


def random_dataset():
    raw = make_episodes(seed=3, num_episodes=9)
    raw["next_observations"] = raw.pop("true_next")
    raw["next_observations"] = np.nan_to_num(raw["next_observations"])
    del raw["episode"]
    return make_dataset(raw)


def test_loss_ignores_padding_and_matches_hand_computation():
    config = dt.DTConfig(context_len=6, segment_len=6, backbone=TINY, multi_objective=True)
    lay = dt.layout(config, 3, 2)
    params = tr.init(lay.model, jax.random.PRNGKey(0))
    segment = jax.jit(sample_segments, static_argnums=(2, 3))(jax.random.PRNGKey(1), random_dataset(), 8, 6)
    mask = np.asarray(segment["mask"])
    assert 0 < mask.sum() < mask.size  # some padding

    @jax.jit  # one compiled program: the outputs and losses on the segment and on its junk-padded copy
    def outputs_and_losses(segment):
        junk = {k: (jnp.where(segment["mask"].reshape(segment["mask"].shape + (1,) * (v.ndim - 2)), v, 7)
                    if k != "mask" else v) for k, v in segment.items()}
        forward = lambda seg: tr.apply(lay.model, params, lay.segment_tokens(seg))  # noqa: E731
        out = forward(segment)
        return out, dt.losses(lay, out, segment), dt.losses(lay, forward(junk), junk)

    out, got, junk_got = outputs_and_losses(segment)
    for name in ("action_loss", "state_loss", "return_loss"):
        np.testing.assert_allclose(junk_got[name], got[name], rtol=1e-5)
    o = np.asarray(out).reshape(8, 6, 3, -1)
    acts = np.asarray(segment["actions"])
    expected = np.mean([(np.tanh(o[b, k, 1, :2]) - acts[b, k]) ** 2 for b, k in zip(*np.nonzero(mask))])
    np.testing.assert_allclose(got["action_loss"], expected, rtol=1e-5)
    nxt = mask[:, 1:]
    obs, rtg = np.asarray(segment["observations"]), np.asarray(segment["returns_to_go"])
    state = np.mean([(o[b, k, 2, 2:5] - obs[b, k + 1]) ** 2 for b, k in zip(*np.nonzero(nxt))])
    ret = np.mean([(o[b, k, 2, 5] - rtg[b, k + 1] / config.return_scale) ** 2 for b, k in zip(*np.nonzero(nxt))])
    np.testing.assert_allclose(got["state_loss"], state, rtol=1e-5)
    np.testing.assert_allclose(got["return_loss"], ret, rtol=1e-5)
    np.testing.assert_allclose(got["loss"], expected + state + ret, rtol=1e-5)


def test_cached_rollout_equals_recomputation():
    config = dt.mo_dt_config(context_len=3, segment_len=3, backbone=TINY)  # DT's tokens plus region features
    lay = dt.layout(config, 2, 1)
    params = tr.init(lay.model, jax.random.PRNGKey(2))
    run = lambda cached: jax.jit(lambda p: dt.rollout(lay, p, jax.random.PRNGKey(0), Drift(), None, -3.0,  # noqa: E731
                                                      num_steps=HORIZON, cached=cached))(params)
    cached, recomputed = run(True), run(False)
    np.testing.assert_allclose(cached["actions"], recomputed["actions"], atol=1e-5)
    np.testing.assert_allclose(cached["return"], recomputed["return"], rtol=1e-5)
    # and the cache equals one causal apply over the whole stream, read at the state tokens
    full = jax.jit(lambda p, x: tr.apply(lay.model, p, x))(params, cached["tokens"][None])[0, 1::3]
    np.testing.assert_allclose(cached["actions"], lay.action_from_output(full), atol=1e-5)
    assert 3 * HORIZON > lay.model.window  # the ring buffer wrapped


@pytest.mark.slow
def test_mo_dt_with_extras_off_is_dt():
    """Zero auxiliary weights and zero region-embedding rows: MO-DT's loss and gradients on
    the shared parameters equal DT's on the same segments."""
    base = dict(context_len=4, segment_len=4, backbone=TINY)
    plain = dt.layout(dt.DTConfig(**base), 3, 2)
    multi = dt.layout(dt.mo_dt_config(**base, state_loss_weight=0.0, return_loss_weight=0.0), 3, 2)
    assert multi.region_dim == 6 and multi.model.d_out == 2 + 3 + 1
    params = tr.init(plain.model, jax.random.PRNGKey(0))
    mo_params = tr.init(multi.model, jax.random.PRNGKey(5))
    start = 4 + 3 + 2  # type, R, s, a blocks come first; regions next, then timestep features

    @jax.jit  # one compiled program: MO-DT's params from DT's, the segments, both losses and gradients
    def both(p, m, key, dataset):
        embed = jnp.concatenate([p["embed"]["kernel"][:start], jnp.zeros((6, TINY.width)),
                                 p["embed"]["kernel"][start:]])
        head = jnp.concatenate([p["head"]["kernel"], m["head"]["kernel"][:, 2:]], axis=1)
        mo = {**p, "embed": {**p["embed"], "kernel": embed},
              "head": {"kernel": head, "bias": jnp.concatenate([p["head"]["bias"], m["head"]["bias"][2:]])}}
        segment = sample_segments(key, dataset, 8, 4)

        def loss(lay, prm):
            return dt.losses(lay, tr.apply(lay.model, {"params": prm}, lay.segment_tokens(segment)), segment)["loss"]

        return jax.value_and_grad(lambda q: loss(plain, q))(p), jax.value_and_grad(lambda q: loss(multi, q))(mo)

    (l_plain, g_plain), (l_multi, g_multi) = both(params["params"], mo_params["params"], jax.random.PRNGKey(1),
                                                  random_dataset())
    np.testing.assert_allclose(l_multi, l_plain, rtol=1e-6)
    np.testing.assert_allclose(g_multi["block_0"]["attn"]["qkv"]["kernel"], g_plain["block_0"]["attn"]["qkv"]["kernel"],
                               rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.asarray(g_multi["head"]["kernel"])[:, :2], g_plain["head"]["kernel"],
                               rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_dt_clones_one_deterministic_expert_trajectory():
    """Segments of twice the window, so training sees tokens whose keys carry earlier context, as
    in the sliding rollout (with segments of one window the late actions missed by ~0.1)."""
    config = dt.DTConfig(num_updates=600, batch_size=16, lr=1e-3, warmup_steps=0, context_len=4, segment_len=8,
                         backbone=dataclasses.replace(TINY, dropout=0.0))
    data = expert_dataset()
    trainer = dt.make_train(config, 2, 1)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    state, metrics = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, data)  # two seeds at once
    assert metrics["loss"].shape == (2, 600)
    lay = dt.layout(config, 2, 1)
    target = float(data.returns_to_go[0])
    rollout_returns = []
    for seed in range(2):
        params = jax.tree.map(operator.itemgetter(seed), state.params)
        out = jax.jit(lambda p: dt.rollout(lay, p, jax.random.PRNGKey(1), Drift(), None, target,
                                           num_steps=HORIZON))(params)
        actions = np.asarray(out["actions"][:, 0], np.float64)
        np.testing.assert_allclose(actions, EXPERT, atol=0.05)
        # the return is the env's for the actions taken (not the target's: a bias of 0.015 per
        # step, well inside the tolerance above, adds up along x to 10% of the return here)
        np.testing.assert_allclose(out["return"], -np.sum((np.cumsum(actions) - 1.0) ** 2), rtol=1e-5)
        rollout_returns.append(float(out["return"]))
    evaluate = dt.make_evaluator(lay, Drift(), None, target, num_episodes=2, max_episode_steps=HORIZON)
    returns = jax.jit(jax.vmap(evaluate))(keys, state.params)  # the offline experiment's interface, vmapped
    # deterministic env and policy: each episode of the evaluator is the rollout above
    np.testing.assert_allclose(np.asarray(returns).reshape(2, -1),
                               np.broadcast_to(np.array(rollout_returns)[:, None], (2, np.size(returns) // 2)),
                               rtol=1e-5)
