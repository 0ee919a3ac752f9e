"""Inverse-dynamics labelling: inputs, losses, the split, and recovery of known dynamics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.offline import concat_datasets, make_dataset, select_episodes
from jaxrl_icl.offline import inverse_dynamics as idm
from jaxrl_icl.offline.dataset import episode_returns


def _linear_episodes(num_episodes: int, length: int, seed: int = 0, discrete: bool = False):
    """s_{t+1} = s_t + 0.5 a_t in 2-D (continuous a in [-0.9, 0.9]^2), or a step of +-0.5 along
    x chosen by a in {0, 1} (discrete); rewards differ per episode so returns can be ranked."""
    rng = np.random.default_rng(seed)
    obs, acts, nxt, rew, term, tout = [], [], [], [], [], []
    for e in range(num_episodes):
        s = rng.normal(size=2).astype(np.float32)
        for t in range(length):
            if discrete:
                a = rng.integers(2)
                s_next = s + np.array([0.5 if a else -0.5, 0.0], np.float32)
            else:
                a = rng.uniform(-0.9, 0.9, size=2).astype(np.float32)
                s_next = s + 0.5 * a
            obs.append(s), acts.append(a), nxt.append(s_next), rew.append(float(e))
            term.append(False), tout.append(t == length - 1)
            s = s_next
    return make_dataset({"observations": np.array(obs), "actions": np.array(acts),
                         "next_observations": np.array(nxt), "rewards": np.array(rew, np.float32),
                         "terminals": np.array(term), "timeouts": np.array(tout)})


def test_inputs_repeat_the_state_at_an_episode_start():
    data = _linear_episodes(3, 4)
    x = np.asarray(idm.idm_inputs(data))
    obs, nxt = np.asarray(data.observations), np.asarray(data.next_observations)
    for i in range(len(obs)):
        prev = obs[i] if i % 4 == 0 else obs[i - 1]
        np.testing.assert_array_equal(x[i], np.concatenate([prev, obs[i], nxt[i]]))


def test_gaussian_nll_is_the_tanh_change_of_variables_by_hand():
    mean, log_std = np.array([[0.3, -0.2]]), np.array([[-0.5, 0.1]])
    action = np.array([[0.5, -0.7]])
    pre = np.arctanh(action)
    log_pdf = -0.5 * ((pre - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    expected = -(log_pdf - np.log(1 - action**2)).sum()
    assert float(idm.gaussian_nll(jnp.asarray(mean), jnp.asarray(log_std), jnp.asarray(action))) == pytest.approx(
        expected, rel=1e-5)


def test_categorical_nll_is_cross_entropy_by_hand():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.5, 0.5]])
    actions = np.array([0, 2])
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -(logp[0, 0] + logp[1, 2]) / 2
    assert float(idm.categorical_nll(jnp.asarray(logits), jnp.asarray(actions))) == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("discrete", [False, True])
def test_idm_recovers_the_actions_of_known_dynamics(discrete):
    """Trained on 10 labelled episodes, the IDM labels 10 others closely (MSE under a tenth of the
    actions' variance, under 2% wrong); the untrained IDM does not (the action is a function of
    (s_t, s_{t+1}) here)."""
    train, held_out = _linear_episodes(10, 20, 0, discrete), _linear_episodes(10, 20, 1, discrete)
    # lr 1e-3: at 3e-3 the continuous error ranged 0.011-0.05 over training seeds (and CPUs); here
    # 0.010-0.017 over seeds 0-5, and the discrete labels are all right
    config = idm.IDMConfig(num_updates=600, batch_size=64, lr=1e-3, hidden=(64, 64), dropout=0.0)
    action_dim = 2
    trainer = idm.make_train(config, 2, action_dim, discrete=discrete)
    state, metrics = jax.jit(trainer)(jax.random.PRNGKey(0), train)
    labels = idm.label_actions(config, state.params, held_out, action_dim, discrete=discrete, chunk=64)
    assert labels.shape == held_out.actions.shape and labels.dtype == held_out.actions.dtype
    error = float(idm.action_error(labels, held_out.actions))
    untrained = float(idm.action_error(idm.label_actions(config, trainer.init(jax.random.PRNGKey(0), train).params,
                                                         held_out, action_dim, discrete=discrete, chunk=64),
                                       held_out.actions))
    assert error < (0.02 if discrete else 0.03) and untrained > 5 * max(error, 1e-3)  # action variance 0.27
    assert float(metrics["idm_loss"][-50:].mean()) < float(metrics["idm_loss"][:50].mean())


def test_low_return_split_labels_only_the_worst_half():
    data = _linear_episodes(10, 3)  # episode e has return 3 e
    labelled, unlabelled = idm.labelled_split(data, 0.3, "low_return", seed=1)
    assert sorted(episode_returns(labelled)) == sorted(set(episode_returns(labelled)))
    assert len(episode_returns(labelled)) == 3 and max(episode_returns(labelled)) < 15
    assert sorted(np.concatenate([episode_returns(labelled), episode_returns(unlabelled)])) == [3.0 * e for e in
                                                                                               range(10)]
    everything, none = idm.labelled_split(data, 1.0, "random")
    assert none is None and len(episode_returns(everything)) == 10


def test_select_and_concat_episodes_round_trip():
    data = _linear_episodes(4, 5)
    back = concat_datasets(select_episodes(data, np.array([0, 1])), select_episodes(data, np.array([2, 3])))
    for key, value in data.arrays().items():
        np.testing.assert_array_equal(back.arrays()[key], value)
