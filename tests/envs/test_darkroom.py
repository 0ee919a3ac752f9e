"""Dark Room and Dark Key-to-Door: optimal returns, dynamics, truncation, task sampling."""

import itertools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.darkroom import (
    DarkRoom,
    DarkRoomState,
    KeyToDoor,
    KeyToDoorState,
    all_goals,
    dpt_goal_split,
    make_darkroom,
    optimal_action,
    optimal_actions,
    optimal_return,
)

# Documented convention: 0 stay, 1 up (y+1), 2 down (y-1), 3 left (x-1), 4 right (x+1).
MOVES = {0: (0, 0), 1: (0, 1), 2: (0, -1), 3: (-1, 0), 4: (1, 0)}


def clip(c, size):
    return min(max(c, 0), size - 1)


def closed_form_mean(goals, start, horizon) -> Fraction:
    """Mean optimal return by enumeration: H for the start cell, else H - d + 1."""
    total = 0
    for gx, gy in goals:
        d = abs(gx - start[0]) + abs(gy - start[1])
        total += horizon if d == 0 else max(horizon - d + 1, 0)
    return Fraction(total, len(goals))


def brute_force_optimal_returns(size, start, horizon, goals) -> np.ndarray:
    """Finite-horizon value iteration over cells with a hand-written clipped-move model."""
    cells = [(x, y) for x in range(size) for y in range(size)]
    index = {c: i for i, c in enumerate(cells)}
    nxt = np.array(
        [
            [index[(clip(x + dx, size), clip(y + dy, size))] for x, y in cells]
            for dx, dy in MOVES.values()
        ]
    )  # [A, C]
    reward = np.array([[float(c == tuple(g)) for c in cells] for g in goals])  # [G, C]
    value = np.zeros_like(reward)
    for _ in range(horizon):
        value = (reward[:, nxt] + value[:, nxt]).max(axis=1)
    return value[:, index[tuple(start)]]


def rollout_optimal(env, params, goals, num_steps):
    """Return per goal of ``optimal_action`` stepped through ``env.step`` for ``num_steps``."""

    def one(goal):
        p = params.replace(goal=goal)
        obs, state = env.reset(jax.random.key(0), p)

        def body(carry, key):
            obs, state = carry
            obs, state, reward, *_ = env.step(key, state, optimal_action(obs, goal), p)
            return (obs, state), reward

        keys = jax.random.split(jax.random.key(1), num_steps)
        return jax.lax.scan(body, (obs, state), keys)[1].sum()

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(goals, jnp.int32)))


def test_optimal_policy_9x9_matches_closed_form():
    env, params = make_darkroom("9x9")
    goals = list(itertools.product(range(9), range(9)))
    returns = rollout_optimal(env, params, goals, 20)
    expected = closed_form_mean(goals, (4, 4), 20)
    assert expected == Fraction(1340, 81)  # REFERENCES.md
    assert Fraction(int(returns.sum()), len(goals)) == expected
    np.testing.assert_array_equal(returns, brute_force_optimal_returns(9, (4, 4), 20, goals))
    closed = jax.vmap(optimal_return, (0, None, None))(jnp.array(goals), jnp.array([4, 4]), 20)
    np.testing.assert_array_equal(returns, np.asarray(closed))


def test_optimal_policy_10x10_and_dpt_held_out_goals():
    env, params = make_darkroom("10x10")
    goals = list(itertools.product(range(10), range(10)))
    returns = rollout_optimal(env, params, goals, 100)
    assert closed_form_mean(goals, (0, 0), 100) == Fraction(9199, 100)  # 91.99
    assert Fraction(int(returns.sum()), 100) == Fraction(9199, 100)
    np.testing.assert_array_equal(returns, brute_force_optimal_returns(10, (0, 0), 100, goals))
    _, held_out = dpt_goal_split()
    held = [tuple(int(c) for c in g) for g in np.asarray(held_out)]
    held_returns = rollout_optimal(env, params, held, 100)
    assert closed_form_mean(held, (0, 0), 100) == Fraction(909, 10)  # 90.9
    assert Fraction(int(held_returns.sum()), 20) == Fraction(909, 10)


def test_optimal_return_short_horizon_matches_brute_force():
    goals = list(itertools.product(range(10), range(10)))
    got = jax.vmap(optimal_return, (0, None, None))(jnp.array(goals), jnp.array([0, 0]), 5)
    expected = brute_force_optimal_returns(10, (0, 0), 5, goals)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_moves_follow_axis_convention_and_clip_at_walls():
    size = 9
    env = DarkRoom(size=size, start=(4, 4), horizon=20)
    params = env.default_params
    cases = [(x, y, a) for x in range(size) for y in range(size) for a in range(5)]
    xs, ys, acts = (jnp.array(c, jnp.int32) for c in zip(*cases))
    states = DarkRoomState(pos=jnp.stack([xs, ys], 1), time=jnp.zeros_like(xs))
    keys = jax.random.split(jax.random.key(0), len(cases))
    obs, *_ = jax.vmap(env.step, (0, 0, 0, None))(keys, states, acts, params)
    expected = [(clip(x + MOVES[a][0], size), clip(y + MOVES[a][1], size)) for x, y, a in cases]
    np.testing.assert_array_equal(np.asarray(obs), np.array(expected))


def test_reward_only_on_goal_and_truncation_at_horizon():
    env, params = make_darkroom("9x9")
    horizon, num_steps, num_tasks = 20, 70, 16
    tasks = jax.vmap(env.sample_params)(jax.random.split(jax.random.key(0), num_tasks))

    def run(key, p):
        obs, state = env.reset(key, p)

        def body(carry, key):
            state = carry
            akey, skey = jax.random.split(key)
            action = env.action_space(p).sample(akey)
            obs, state, reward, term, trunc, info = env.step(skey, state, action, p)
            return state, (obs, reward, term, trunc, info["final_observation"])

        return jax.lax.scan(body, state, jax.random.split(key, num_steps))[1]

    obs, reward, term, trunc, final_obs = jax.jit(jax.vmap(run))(
        jax.random.split(jax.random.key(1), num_tasks), tasks
    )
    assert reward.dtype == jnp.float32 and obs.dtype == jnp.int32
    on_goal = np.all(np.asarray(final_obs) == np.asarray(tasks.goal)[:, None, :], axis=-1)
    np.testing.assert_array_equal(np.asarray(reward), on_goal.astype(np.float32))
    assert not np.any(np.asarray(term))
    t = np.arange(1, num_steps + 1)
    np.testing.assert_array_equal(np.asarray(trunc), np.broadcast_to(t % horizon == 0, trunc.shape))
    # After truncation the episode restarts at the start cell.
    np.testing.assert_array_equal(np.asarray(obs)[:, t % horizon == 0], 4)
    assert reward.sum() > 0  # the random walk does find some goals, so the check is not vacuous


def test_observations_match_spaces():
    for name in ("darkroom-9x9", "darkroom-10x10", "key-to-door-9x9"):
        env, params = envs.make(name)
        space = env.observation_space(params)
        obs, state = env.reset(jax.random.key(0), params)
        obs2, *_ = env.step(jax.random.key(1), state, 4, params)
        for o in (obs, obs2):
            assert o.shape == space.shape and o.dtype == space.dtype
            assert bool(space.contains(o))
        assert env.action_space(params).n == env.num_actions == 5


@pytest.mark.parametrize("name", ["darkroom-9x9", "key-to-door-9x9"])
def test_vmap_over_tasks_equals_stepping_each_task(name):
    env, _ = envs.make(name)
    n = 6
    keys = jax.random.split(jax.random.key(3), n)
    tasks = jax.vmap(env.sample_params)(keys)
    obs, states = jax.vmap(env.reset)(keys, tasks)
    actions = jnp.arange(n, dtype=jnp.int32) % 5
    batched = jax.vmap(env.step, in_axes=(0, 0, 0, 0))(keys, states, actions, tasks)
    for i in range(n):
        take = lambda tree, i=i: jax.tree.map(lambda x: x[i], tree)
        single = env.step(keys[i], take(states), actions[i], take(tasks))
        jax.tree.map(np.testing.assert_array_equal, take(batched), single)


def test_sample_params_goal_uniform_over_cells():
    env, _ = make_darkroom("9x9")
    n = 81 * 400
    goals = np.asarray(jax.vmap(env.sample_params)(jax.random.split(jax.random.key(0), n)).goal)
    counts = np.bincount(goals[:, 0] * 9 + goals[:, 1], minlength=81)
    assert counts.shape == (81,) and goals.min() >= 0 and goals.max() <= 8
    p = 1 / 81
    assert np.max(np.abs(counts / n - p)) < 5 * np.sqrt(p * (1 - p) / n)


def test_all_goals_and_dpt_split():
    np.testing.assert_array_equal(
        np.asarray(all_goals(3)), np.array(list(itertools.product(range(3), range(3))))
    )
    train, held_out = dpt_goal_split()
    assert train.shape == (80, 2) and held_out.shape == (20, 2) and train.dtype == jnp.int32
    union = {tuple(g) for g in np.concatenate([np.asarray(train), np.asarray(held_out)])}
    assert union == set(itertools.product(range(10), range(10)))  # a partition of all 100
    # Independent derivation: goals (j, i), j outer; the in-place shuffle of rows is the
    # permutation RandomState(0).permutation(100).
    listed = np.array(list(itertools.product(range(10), range(10))))
    perm = np.random.RandomState(0).permutation(100)
    np.testing.assert_array_equal(np.asarray(train), listed[perm[:80]])
    np.testing.assert_array_equal(np.asarray(held_out), listed[perm[80:]])


def test_optimal_action_stays_on_goal_and_reduces_distance():
    goals = all_goals(5)
    pos, goal = jnp.repeat(goals, 25, axis=0), jnp.tile(goals, (25, 1))
    acts = np.asarray(jax.vmap(optimal_action)(pos, goal))
    assert acts.dtype == np.int32
    pos, goal = np.asarray(pos), np.asarray(goal)
    moved = pos + np.array([MOVES[int(a)] for a in acts])
    d_before = np.abs(goal - pos).sum(1)
    d_after = np.abs(goal - moved).sum(1)
    np.testing.assert_array_equal(acts[d_before == 0], 0)
    np.testing.assert_array_equal(d_after[d_before > 0], d_before[d_before > 0] - 1)


def test_make_errors_and_overrides():
    with pytest.raises(ValueError, match="9x9.*10x10"):
        make_darkroom("8x8")
    with pytest.raises(ValueError, match="start"):
        DarkRoom(size=5, start=(5, 0))
    env, params = envs.make("darkroom-9x9", goal=jnp.array([5, 4], jnp.int32))
    obs, state = env.reset(jax.random.key(0), params)
    _, _, reward, *_ = env.step(jax.random.key(0), state, 4, params)  # right: (4,4) -> (5,4)
    assert float(reward) == 1.0


# ---------------------------------------------------------------------------- key-to-door


def path_actions(start, targets, horizon):
    """Actions walking x first then y through ``targets``; padded with stay to ``horizon``."""
    acts, (x, y) = [], start
    for tx, ty in targets:
        while x != tx:
            acts.append(4 if tx > x else 3)
            x += 1 if tx > x else -1
        while y != ty:
            acts.append(1 if ty > y else 2)
            y += 1 if ty > y else -1
    assert len(acts) <= horizon
    return jnp.array(acts + [0] * (horizon - len(acts)), jnp.int32)


def run_actions(env, params, actions):
    _, state = env.reset(jax.random.key(0), params)

    def body(state, inputs):
        key, action = inputs
        _, state, reward, term, trunc, _ = env.step(key, state, action, params)
        return state, (reward, term, trunc)

    keys = jax.random.split(jax.random.key(1), actions.shape[0])
    return jax.lax.scan(body, state, (keys, actions))[1]


@pytest.mark.parametrize(
    "key, door, route, expected",
    [
        ((0, 0), (8, 8), "key_door", 2.0),
        ((2, 7), (6, 1), "key_door", 2.0),
        ((2, 7), (6, 1), "door", 0.0),
        ((2, 7), (6, 1), "door_key", 1.0),
        ((2, 7), (6, 1), "door_key_door", 2.0),
        ((2, 7), (6, 1), "key_door_key_door", 2.0),
    ],
)
def test_key_to_door_scripted_paths(key, door, route, expected):
    env, params = envs.make(
        "key-to-door-9x9", key=jnp.array(key, jnp.int32), door=jnp.array(door, jnp.int32)
    )
    cells = {"key": key, "door": door}
    actions = path_actions((4, 4), [cells[c] for c in route.split("_")], 50)
    reward, term, trunc = run_actions(env, params, actions)
    assert float(reward.sum()) == expected
    assert not np.any(np.asarray(term))
    np.testing.assert_array_equal(np.asarray(trunc), np.arange(1, 51) == 50)


def test_key_to_door_rewards_reset_each_episode():
    env, params = envs.make(
        "key-to-door-9x9", key=jnp.array([4, 5], jnp.int32), door=jnp.array([4, 6], jnp.int32)
    )
    one_episode = path_actions((4, 4), [(4, 5), (4, 6)], 50)
    reward, _, trunc = run_actions(env, params, jnp.concatenate([one_episode, one_episode]))
    r = np.asarray(reward)
    assert r[:50].sum() == 2.0 and r[50:].sum() == 2.0
    np.testing.assert_array_equal(np.flatnonzero(r), [0, 1, 50, 51])
    assert int(np.asarray(trunc).sum()) == 2


def test_key_to_door_sample_params():
    env = KeyToDoor()
    n = 81 * 200
    tasks = jax.vmap(env.sample_params)(jax.random.split(jax.random.key(0), n))
    key, door = np.asarray(tasks.key), np.asarray(tasks.door)
    assert key.min() >= 0 and key.max() <= 8 and door.min() >= 0 and door.max() <= 8
    assert not np.any(np.all(key == door, axis=1))
    p = 1 / 81
    for cells in (key, door):
        freq = np.bincount(cells[:, 0] * 9 + cells[:, 1], minlength=81) / n
        assert np.max(np.abs(freq - p)) < 5 * np.sqrt(p * (1 - p) / n)
    assert isinstance(env.reset(jax.random.key(0), env.default_params)[1], KeyToDoorState)


def test_optimal_actions_are_exactly_the_distance_reducing_moves():
    """Brute force: an action is optimal iff it lowers the Manhattan distance by one (or is
    STAY on the goal); the x-first ``optimal_action`` is always one of them."""
    goals = all_goals(5)
    pos, goal = jnp.repeat(goals, 25, axis=0), jnp.tile(goals, (25, 1))
    mask = np.asarray(jax.vmap(optimal_actions)(pos, goal))
    first = np.asarray(jax.vmap(optimal_action)(pos, goal))
    pos, goal = np.asarray(pos), np.asarray(goal)
    d = np.abs(goal - pos).sum(1)
    for a, step in MOVES.items():
        moved = np.clip(pos + np.array(step), 0, 4)
        expected = np.where(d == 0, a == 0, np.abs(goal - moved).sum(1) == d - 1)
        np.testing.assert_array_equal(mask[:, a], expected)
    assert mask[np.arange(len(first)), first].all()
