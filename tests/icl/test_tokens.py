"""Token layouts: hand-made examples, per-token builders, and no action leakage through the model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.icl import tokens as tk
from jaxrl_icl.icl import transformer as tr

# One history: B = 1, T = 3, 2-d observations, 3 actions.
OBS = jnp.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
ACTIONS = jnp.array([[2, 0, 1]])
REWARDS = jnp.array([[0.5, -1.0, 2.0]])


def test_step_layout_hand_made():
    tokens, positions = tk.step_tokens(OBS, ACTIONS, REWARDS, num_actions=3)
    # [onehot(a_{t-1}) | r_{t-1} | o_t]
    expected = np.array([[
        [0, 0, 0, 0.0, 1, 2],
        [0, 0, 1, 0.5, 3, 4],
        [1, 0, 0, -1.0, 5, 6],
    ]], dtype=np.float32)
    np.testing.assert_array_equal(tokens, expected)
    np.testing.assert_array_equal(positions, [0, 1, 2])
    assert tk.step_token_dim(2, 3) == 6


def test_triplet_layout_hand_made():
    tokens, positions = tk.triplet_tokens(OBS, ACTIONS, REWARDS, num_actions=3)
    # [type (o, a, r) | obs (2) | action one-hot (3) | reward]
    expected = np.array([[
        [1, 0, 0, 1, 2, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 1, 0],
        [0, 0, 1, 0, 0, 0, 0, 0, 0.5],
        [1, 0, 0, 3, 4, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 1, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0, -1.0],
        [1, 0, 0, 5, 6, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 1, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0, 2.0],
    ]], dtype=np.float32)
    np.testing.assert_array_equal(tokens, expected)
    np.testing.assert_array_equal(positions, [0, 3, 6])
    assert tk.triplet_token_dim(2, 3) == 9


def test_single_token_builders_rebuild_the_sequences():
    obs, actions, rewards = jax.jit(lambda: (  # one compiled program for the draws
        jax.random.normal(jax.random.PRNGKey(0), (4, 6, 2, 3)),  # image-like observations are flattened
        jax.random.randint(jax.random.PRNGKey(1), (4, 6), 0, 5),
        jax.random.normal(jax.random.PRNGKey(2), (4, 6))))()

    @jax.jit  # and one for the sequences and their token-by-token rebuilds
    def sequences_and_rebuilds(obs, actions, rewards):
        steps, _ = tk.step_tokens(obs, actions, rewards, 5)
        triplets, _ = tk.triplet_tokens(obs, actions, rewards, 5)
        rebuilt = []
        for t in range(6):
            prev_a = actions[:, t - 1] if t else jnp.full((4,), -1)
            prev_r = rewards[:, t - 1] if t else jnp.zeros(4)
            rebuilt.append((tk.step_token(obs[:, t], prev_a, prev_r, 5), tk.triplet_obs_token(obs[:, t], 5),
                            tk.triplet_action_token(actions[:, t], 6, 5), tk.triplet_reward_token(rewards[:, t], 6, 5)))
        return steps, triplets, rebuilt

    steps, triplets, rebuilt = jax.tree.map(np.asarray, sequences_and_rebuilds(obs, actions, rewards))
    for t, (step, obs_token, action_token, reward_token) in enumerate(rebuilt):
        np.testing.assert_array_equal(steps[:, t], step)
        np.testing.assert_array_equal(triplets[:, 3 * t], obs_token)
        np.testing.assert_array_equal(triplets[:, 3 * t + 1], action_token)
        np.testing.assert_array_equal(triplets[:, 3 * t + 2], reward_token)


@pytest.mark.parametrize("layout", ["step", "triplet"])
def test_action_never_visible_to_the_position_that_predicts_it(layout):
    build = jax.jit({"step": tk.step_tokens, "triplet": tk.triplet_tokens}[layout], static_argnums=3)
    num_actions, length = 4, 6
    obs, actions, rewards = jax.tree.map(np.asarray, jax.jit(lambda: (  # one compiled program for the draws
        jax.random.normal(jax.random.PRNGKey(0), (2, length, 3)),
        jax.random.randint(jax.random.PRNGKey(1), (2, length), 0, num_actions),
        jax.random.normal(jax.random.PRNGKey(2), (2, length))))())
    tokens, positions = build(obs, actions, rewards, num_actions)
    cfg = tr.TransformerConfig(d_in=tokens.shape[-1], d_out=num_actions, max_len=tokens.shape[1],
                               backbone=tr.BackboneConfig(width=16, num_layers=2, num_heads=2, positions="alibi"))
    params = tr.init(cfg, jax.random.PRNGKey(3))
    model = jax.jit(lambda x: tk.action_logits(tr.apply(cfg, params, x), positions))
    base = np.asarray(model(tokens))
    assert base.shape == (2, length, num_actions)
    for t in range(length):
        # Change the action and reward at step t (and everything after it); numpy, so no compiles.
        changed_actions, changed_rewards = actions.copy(), rewards.copy()
        changed_actions[:, t:] = (actions[:, t:] + 1) % num_actions
        changed_rewards[:, t:] += 1.0
        out = np.asarray(model(build(obs, changed_actions, changed_rewards, num_actions)[0]))
        np.testing.assert_array_equal(out[:, : t + 1], base[:, : t + 1])  # a_t's own prediction included
        if t + 1 < length:
            assert np.abs(out[:, t + 1] - base[:, t + 1]).max() > 1e-4  # ...but the next one sees it


def test_bad_histories_are_rejected():
    with pytest.raises(ValueError, match="actions: must be integers"):
        tk.step_tokens(OBS, ACTIONS.astype(jnp.float32), REWARDS, 3)
    with pytest.raises(ValueError, match=r"actions: values must be in \[0, 3\)"):
        tk.triplet_tokens(OBS, ACTIONS.at[0, 1].set(3), REWARDS, 3)
    with pytest.raises(ValueError, match="rewards"):
        tk.step_tokens(OBS, ACTIONS, REWARDS[:, :2], 3)
    with pytest.raises(ValueError, match="observations"):
        tk.triplet_tokens(OBS[:, :2], ACTIONS, REWARDS, 3)
    with pytest.raises(ValueError, match="num_actions"):
        tk.step_tokens(OBS, ACTIONS, REWARDS, 0)
    with pytest.raises(ValueError, match=r"actions: values must be in \[-1, 3\)"):
        tk.step_token(OBS[:, 0], jnp.array([-2]), jnp.array([0.0]), 3)
