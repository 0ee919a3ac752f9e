"""The dataset type: validation, qlearning-style successors, episodes, splits, sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.offline import (
    DatasetError,
    make_dataset,
    normalize_observations,
    observation_stats,
    qlearning_transitions,
    sample_segments,
    sample_transitions,
    scale_rewards_by_return_range,
    split_episodes,
)
from tests.offline.conftest import make_episodes


def full_arrays(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The six keys with the generator's true successors as next_observations."""
    keys = ("observations", "actions", "rewards", "terminals", "timeouts")
    return {**{k: raw[k] for k in keys}, "next_observations": raw["true_next"]}


def test_qlearning_transitions_follow_d4rl_and_never_cross_episodes(episodes):
    out = qlearning_transitions(episodes)
    # d4rl.qlearning_dataset, written as its loop: skip the last step of the file and any
    # step whose timeout is set; next = observations[i + 1]
    n = len(episodes["rewards"])
    expected_rows = [i for i in range(n - 1) if not episodes["timeouts"][i]]
    if episodes["terminals"][-1]:
        expected_rows.append(n - 1)  # a terminal last step needs no successor
    np.testing.assert_array_equal(out["observations"], episodes["observations"][expected_rows])
    np.testing.assert_array_equal(out["rewards"], episodes["rewards"][expected_rows])
    # every non-terminal successor is the true one of the same episode
    for row, i in enumerate(expected_rows):
        if not episodes["terminals"][i]:
            np.testing.assert_array_equal(out["next_observations"][row], episodes["true_next"][i])
    # episodes keep their boundaries: each episode's kept rows form one episode of the result
    ds = make_dataset(out)
    episode_of_row = episodes["episode"][expected_rows]
    ends = np.asarray(ds.episode_end)
    for row in range(len(expected_rows)):
        same = episode_of_row == episode_of_row[row]
        assert ends[row] == np.flatnonzero(same)[-1] + 1


def test_episode_bookkeeping_matches_a_loop(episodes):
    ds = make_dataset(full_arrays(episodes))
    rewards, ep = episodes["rewards"], episodes["episode"]
    for i in range(len(rewards)):
        same = np.flatnonzero(ep == ep[i])
        assert int(ds.timesteps[i]) == i - same[0]
        assert int(ds.episode_end[i]) == same[-1] + 1
        assert float(ds.returns_to_go[i]) == pytest.approx(float(rewards[i:same[-1] + 1].sum()), abs=1e-5)


@pytest.mark.parametrize(
    "change, key, message",
    [
        (lambda a: a.pop("actions"), "actions", "missing"),
        (lambda a: a.update(rewards=a["rewards"][:-1]), "observations", "rows"),
        (lambda a: a["observations"].__setitem__((2, 1), np.nan), "observations", "non-finite"),
        (lambda a: a.update(rewards=a["rewards"].astype("S8")), "rewards", "numeric"),
        (lambda a: a.update(observations=a["observations"][:, :, None]), "observations", "rank 2"),
        (lambda a: a.update(terminals=a["terminals"] * 2), "terminals", "booleans"),
        (lambda a: a.update(actions=a["actions"][:, 0]), "actions", "integers"),
        (lambda a: a.update(next_observations=a["next_observations"][:, :2]), "next_observations", "differs"),
        (lambda a: [a.__setitem__(k, v[:0]) for k, v in list(a.items())], "rewards", "empty"),
    ],
)
def test_bad_arrays_are_rejected_naming_the_source_and_key(episodes, change, key, message):
    arrays = {k: v.copy() for k, v in full_arrays(episodes).items()}
    change(arrays)
    with pytest.raises(DatasetError, match=message) as err:
        make_dataset(arrays, source="data.hdf5")
    assert str(err.value).startswith("data.hdf5: ")
    assert key in str(err.value)


def test_actions_outside_the_bounds_are_rejected(episodes):
    arrays = full_arrays(episodes)
    make_dataset(arrays, action_bounds=(-1.0, 1.0))
    arrays["actions"] = arrays["actions"].copy()
    arrays["actions"][4, 1] = 1.5
    with pytest.raises(DatasetError, match="actions: row 4"):
        make_dataset(arrays, source="x", action_bounds=(-1.0, 1.0))


def test_split_keeps_whole_episodes_and_covers_everything():
    raw = make_episodes(seed=3, num_episodes=20)
    ds = make_dataset(full_arrays(raw))
    train, val = split_episodes(ds, 0.25, seed=1)
    assert train.size + val.size == ds.size
    rows = {tuple(r) for r in np.asarray(ds.observations)}
    assert {tuple(r) for r in np.asarray(train.observations)} | {tuple(r) for r in np.asarray(val.observations)} == rows
    assert 1 <= int(np.sum(np.asarray(val.timesteps) == 0)) < 20
    # returns-to-go are unchanged by the split: episodes were not cut
    lookup = {tuple(o): g for o, g in zip(np.asarray(ds.observations), np.asarray(ds.returns_to_go))}
    for part in (train, val):
        for o, g in zip(np.asarray(part.observations), np.asarray(part.returns_to_go)):
            assert g == lookup[tuple(o)]


def test_reward_scaling_makes_the_episode_returns_span_the_target(episodes):
    """The factor is the target over the spread of the episode returns summed here from the
    generator's own episode ids; scaled returns span exactly the target; a cut-off last episode
    does not count; a dataset whose episodes all return the same is rejected naming ``rewards``."""
    ds = make_dataset(full_arrays(episodes))
    returns = np.array([episodes["rewards"][episodes["episode"] == e].sum(dtype=np.float64)
                        for e in np.unique(episodes["episode"])])
    scaled, factor = scale_rewards_by_return_range(ds, target=1000.0)
    assert factor == pytest.approx(1000.0 / (returns.max() - returns.min()), rel=1e-6)
    np.testing.assert_allclose(np.asarray(scaled.rewards), episodes["rewards"] * factor, rtol=1e-6)
    scaled_returns = np.asarray(scaled.returns_to_go)[np.asarray(scaled.timesteps) == 0]
    np.testing.assert_allclose(scaled_returns, returns * factor, rtol=1e-5, atol=1e-3)
    assert scaled_returns.max() - scaled_returns.min() == pytest.approx(1000.0, rel=1e-5)
    for key in ("observations", "actions", "terminals", "timeouts", "next_observations"):
        np.testing.assert_array_equal(getattr(scaled, key), getattr(ds, key))

    # an unflagged last episode (a file cut mid-episode) is left out of the range
    cut = {k: np.concatenate([v, v[:2]]) for k, v in full_arrays(episodes).items()}
    cut["rewards"][-2:] = 1e4
    cut["terminals"][-2:] = cut["timeouts"][-2:] = False
    _, cut_factor = scale_rewards_by_return_range(make_dataset(cut), target=1000.0)
    assert cut_factor == pytest.approx(factor, rel=1e-9)

    flat = dict(full_arrays(episodes), rewards=np.zeros_like(episodes["rewards"]))
    with pytest.raises(DatasetError, match="rewards: all 7 episodes return 0"):
        scale_rewards_by_return_range(make_dataset(flat))


def test_observation_stats_normalise_to_zero_mean_unit_std(episodes):
    ds = make_dataset(full_arrays(episodes))
    norm = observation_stats(ds, eps=0.0)
    obs = np.asarray(normalize_observations(ds, norm).observations, np.float64)
    np.testing.assert_allclose(obs.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(obs.std(0), 1, atol=1e-5)


def test_sampled_transitions_are_rows_of_the_dataset_inside_jit(episodes):
    ds = make_dataset(full_arrays(episodes))
    batch = jax.jit(sample_transitions, static_argnums=2)(jax.random.PRNGKey(0), ds, 512)
    rows = {tuple(np.concatenate([o, a, [r], n])) for o, a, r, n in
            zip(*(np.asarray(getattr(ds, k)) for k in ("observations", "actions", "rewards", "next_observations")))}
    for o, a, r, n in zip(*(np.asarray(batch[k]) for k in ("observations", "actions", "rewards", "next_observations"))):
        assert tuple(np.concatenate([o, a, [r], n])) in rows
    assert len({tuple(o) for o in np.asarray(batch["observations"])}) == ds.size  # every row shows up at 512 draws


def test_segments_stay_in_one_episode_and_are_padded_after_its_end(episodes):
    ds = make_dataset(full_arrays(episodes))
    seg = jax.jit(sample_segments, static_argnums=(2, 3))(jax.random.PRNGKey(1), ds, 64, 5)
    obs_rows = {tuple(o): i for i, o in enumerate(np.asarray(ds.observations))}
    for b in range(64):
        start = obs_rows[tuple(np.asarray(seg["observations"][b, 0]))]
        valid = min(5, int(ds.episode_end[start]) - start)
        np.testing.assert_array_equal(np.asarray(seg["mask"][b]), np.arange(5) < valid)
        for key in ("observations", "returns_to_go"):
            expected = np.asarray(getattr(ds, key)[start:start + valid])
            np.testing.assert_array_equal(np.asarray(seg[key][b, :valid]), expected)
        assert not np.asarray(seg["observations"][b, valid:]).any()


def test_discrete_actions_are_int32_vectors():
    raw = make_episodes(seed=2)
    arrays = full_arrays(raw)
    arrays["actions"] = (np.arange(len(raw["rewards"])) % 4).astype(np.int64)
    ds = make_dataset(arrays, action_bounds=(0, 3))
    assert ds.actions.dtype == jnp.int32 and ds.discrete_actions
    arrays["actions"][0] = 4
    with pytest.raises(DatasetError, match="actions: row 0"):
        make_dataset(arrays, action_bounds=(0, 3))
