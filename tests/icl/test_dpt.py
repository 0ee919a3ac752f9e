"""DPT: pretraining data against the Dark Room rules and bandit means, the loss at init,
learning from tiny contexts, and the cached agent against the full-sequence model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.darkroom import KeyToDoor, KeyToDoorState, move, optimal_action
from jaxrl_icl.icl import dpt
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.icl.evaluate import ContextTransition, prefill
from jaxrl_icl.icl.train import OptimConfig
from jaxrl_icl.run.loop import train_in_chunks

SIZE, N = 10, 12


def _split(tokens, state_dim=2, num_actions=5):
    s = tokens[..., :state_dim]
    a = tokens[..., state_dim : state_dim + num_actions]
    s2 = tokens[..., state_dim + num_actions : 2 * state_dim + num_actions]
    return s, a, s2, tokens[..., -2], tokens[..., -1]


@pytest.mark.parametrize("mix", [pytest.param(0.0, marks=pytest.mark.slow), 0.7])
def test_darkroom_batch_follows_the_grid_and_labels_the_optimal_action(mix):
    goals = jnp.array([[2, 7], [9, 0]], jnp.int32)
    context, query, label = jax.jit(lambda k: dpt.darkroom_batch(k, goals, SIZE, N, 256, rewarded_mix=mix))(
        jax.random.key(0))
    assert context.shape == (256, N, 11) and query.shape == (256, 11) and label.shape == (256,)
    s, a, s2, r, flag = (np.asarray(x) for x in _split(context))
    pos, nxt = np.rint(s * 9).astype(int), np.rint(s2 * 9).astype(int)
    action = a.argmax(-1)
    assert np.all(a.sum(-1) == 1) and np.all(flag == 0)
    np.testing.assert_array_equal(nxt, jax.vmap(jax.vmap(lambda p, x: move(p, x, SIZE)))(pos, action))
    # every sample's rewarded cells are one cell, one of the goals
    for row_next, row_r, q, lab in zip(nxt, r, np.asarray(query), np.asarray(label)):
        goal_cells = {tuple(c) for c in row_next[row_r == 1]}
        assert len(goal_cells) <= 1 and goal_cells <= {(2, 7), (9, 0)}
        qpos = np.rint(q[:2] * 9).astype(int)
        assert q[-1] == 1 and not q[2:-1].any()
        if goal_cells:
            assert lab == int(optimal_action(jnp.asarray(qpos), jnp.asarray(next(iter(goal_cells)))))
    # uniform contexts: 5 of the 500 (cell, action) pairs reach a goal, so about 1% of the slots
    # are rewarded; the mix replaces a share w ~ U(0, 1) of the slots in a fraction ``mix`` of the samples
    expected = mix / 2 + (1 - mix / 2) * 5 / (SIZE * SIZE * 5)
    assert abs(r.mean() - expected) < 4 * (0.3 * np.sqrt(mix / 256) + 0.01)


def test_darkroom_rewarded_mix_of_zero_is_the_uniform_data():
    goals = jnp.array([[2, 7], [9, 0]], jnp.int32)
    plain, explicit, mixed = jax.jit(lambda k: (  # one compiled program for the three samples
        dpt.darkroom_sample(k, goals, SIZE, N, random_ties=True),
        dpt.darkroom_sample(k, goals, SIZE, N, random_ties=True, rewarded_mix=0.0),
        dpt.darkroom_sample(k, goals, SIZE, N, random_ties=True, rewarded_mix=1.0)))(jax.random.key(4))
    jax.tree.map(np.testing.assert_array_equal, plain, explicit)
    # the mix changes only context slots: goal, query and label are drawn as without it
    for name in ("task", "query", "label"):
        np.testing.assert_array_equal(getattr(mixed, name), getattr(plain, name))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="rewarded_mix"):
            dpt.darkroom_batch(jax.random.key(4), goals, SIZE, N, 2, rewarded_mix=bad)


def test_darkroom_random_ties_label_every_optimal_move():
    """With ``random_ties`` each label lowers the distance to the goal by one (brute force; STAY
    on the goal), and where both an x and a y move do, each is chosen half the time."""
    goal = np.array([2, 7])
    _, query, label = jax.jit(lambda k: dpt.darkroom_batch(k, jnp.asarray(goal)[None], SIZE, 4, 4000,
                                                           random_ties=True))(jax.random.key(3))
    q = np.rint(np.asarray(query[:, :2]) * (SIZE - 1)).astype(int)
    label = np.asarray(label)
    moves = np.array([(0, 0), (0, 1), (0, -1), (-1, 0), (1, 0)])
    before = np.abs(goal - q).sum(1)
    after = np.abs(goal - np.clip(q + moves[label], 0, SIZE - 1)).sum(1)
    np.testing.assert_array_equal(np.where(before == 0, label == 0, after == before - 1), True)
    both = (q[:, 0] != goal[0]) & (q[:, 1] != goal[1])
    y_share = np.isin(label[both], (1, 2)).mean()
    assert abs(y_share - 0.5) < 4 * np.sqrt(0.25 / both.sum())


@pytest.mark.slow
def test_key_door_batch_follows_the_env_and_labels_a_shortest_move_to_key_then_door():
    """Context transitions equal ``KeyToDoor(observe_key=True).step`` from the same state (door
    not yet opened); each label lowers the hand-computed distance to the key (without it) or
    the door (with it) by one, STAY on the target; the tokens decode to the raw sample."""
    size, n, batch = 9, 6, 300
    tasks = jnp.array([[[2, 7], [6, 1]], [[4, 4], [4, 5]]], jnp.int32)
    keys = jax.random.split(jax.random.key(5), batch)
    samples = jax.jit(jax.vmap(lambda k: dpt.key_door_sample(k, tasks, size, n, random_ties=True)))(keys)
    context, query, label = jax.jit(lambda k: dpt.key_door_batch(k, tasks, size, n, batch, random_ties=True))(
        jax.random.key(5))
    assert context.shape == (batch, n, dpt.token_dim(3, 5)) and query.shape == (batch, dpt.token_dim(3, 5))
    np.testing.assert_array_equal(label, samples.label)
    s, a, s2, r, _ = (np.asarray(x) for x in _split(context, state_dim=3))
    np.testing.assert_array_equal(np.rint(s[..., :2] * 8).astype(int), samples.state[..., :2])
    np.testing.assert_array_equal(s2[..., 2], samples.next_state[..., 2])
    np.testing.assert_array_equal(a.argmax(-1), samples.action)
    np.testing.assert_array_equal(r, samples.reward)

    env = KeyToDoor(size, observe_key=True)

    def env_step(state, action, task):
        params = env.default_params.replace(key=task[0], door=task[1])
        st = KeyToDoorState(pos=state[:2], has_key=state[2] == 1, opened=jnp.bool_(False), time=jnp.int32(0))
        obs, _, reward, _, _ = env.step_env(jax.random.key(0), st, action, params)
        return obs, reward

    obs, reward = jax.jit(jax.vmap(jax.vmap(env_step, (0, 0, None))))(samples.state, samples.action, samples.task)
    np.testing.assert_array_equal(obs, samples.next_state)
    np.testing.assert_array_equal(reward, samples.reward)
    assert samples.reward.sum() > 0 and samples.state[..., 2].min() == 0 and samples.state[..., 2].max() == 1

    q, lab, task = (np.asarray(x) for x in (samples.query, samples.label, samples.task))
    target = np.where(q[:, 2:3] == 1, task[:, 1], task[:, 0])
    moves = np.array([(0, 0), (0, 1), (0, -1), (-1, 0), (1, 0)])
    before = np.abs(target - q[:, :2]).sum(1)
    after = np.abs(target - np.clip(q[:, :2] + moves[lab], 0, size - 1)).sum(1)
    np.testing.assert_array_equal(np.where(before == 0, lab == 0, after == before - 1), True)
    assert 0 < q[:, 2].mean() < 1


@pytest.mark.slow
def test_bandit_batch_labels_the_best_arm():
    context, query, label = jax.jit(dpt.bandit_batch, static_argnums=(1, 2, 3, 4))(jax.random.key(1), 5, 0.3, 400, 64)
    assert context.shape == (64, 400, 7) and query.shape == (64, 7)
    a, r = np.asarray(context[..., :5]).argmax(-1), np.asarray(context[..., 5])
    # empirical mean of the most-pulled arm ranks it consistently with the label's mean (noisy check
    # on arms with many pulls): the labelled arm's sample mean beats every well-sampled other arm's
    # by less than noise only rarely
    wins = []
    for ai, ri, lab in zip(a, r, np.asarray(label)):
        counts = np.bincount(ai, minlength=5)
        if counts[lab] >= 30:
            means = np.array([ri[ai == k].mean() if counts[k] >= 30 else -np.inf for k in range(5)])
            wins.append(means.argmax() == lab)
    assert len(wins) > 10 and np.mean(wins) > 0.7


@pytest.mark.slow
def test_bandit_behaviour_mixes_in_a_point_mass_on_one_arm():
    """Behaviour ``(1 - w) Dirichlet(1) + w onehot``, ``w`` uniform on {0, .1, ..., 1}: exactly
    the ``w = 1`` draws (1 in 11) put every one of 100 pulls on one arm (for ``w <= 0.9`` that has
    probability below 0.91^100 < 1e-4), and the mean share of the most-pulled arm is far above
    the Dirichlet-only value."""
    context, _, _ = jax.jit(dpt.bandit_batch, static_argnums=(1, 2, 3, 4))(jax.random.key(2), 5, 0.3, 100, 4000)
    counts = np.asarray(context[..., :5]).sum(axis=1)  # [B, 5] pulls per arm
    single = np.mean(counts.max(axis=1) == 100)
    assert abs(single - 1 / 11) < 4 * np.sqrt((1 / 11) * (10 / 11) / 4000)
    # Monte Carlo oracle of the top share under the mixture, from numpy's own Dirichlet draws.
    rng = np.random.default_rng(0)
    w = rng.integers(0, 11, 20000) / 10
    probs = (1 - w)[:, None] * rng.dirichlet(np.ones(5), 20000) + w[:, None] * np.eye(5)[rng.integers(0, 5, 20000)]
    pulls = np.stack([rng.multinomial(100, p) for p in probs])
    expected = pulls.max(axis=1).mean() / 100
    assert abs(counts.max(axis=1).mean() / 100 - expected) < 0.02


def _tiny(context_len=N):
    cfg = dpt.DPTConfig(context_len=context_len, backbone=tr.BackboneConfig(width=32, num_layers=2, num_heads=2))
    return cfg, dpt.make_model(cfg, 2, 5)


def test_loss_at_init_is_near_log_num_actions():
    cfg, model = _tiny()
    params = tr.init(model, jax.random.key(0))
    context, query, label = jax.jit(lambda k: dpt.darkroom_batch(k, jnp.array([[3, 3]]), SIZE, N, 32))(
        jax.random.key(1))
    loss, _ = jax.jit(dpt.prefix_loss, static_argnums=0)(model, params, context, query, label)
    assert abs(float(loss) - np.log(5)) < 0.3


@pytest.mark.slow
def test_pretraining_learns_the_query_to_action_map():
    """With one known goal the label depends on the query only: a short run gets most right."""
    cfg, model = _tiny(context_len=4)
    optim = OptimConfig(num_updates=300, batch_size=64, lr=3e-3, warmup_updates=20)
    goal = jnp.array([[6, 2]], jnp.int32)
    trainer = dpt.make_train(cfg, optim, model, lambda k, b: dpt.darkroom_batch(k, goal, SIZE, 4, b))
    _, metrics = train_in_chunks(trainer, jax.random.key(0)[None], None, chunk_updates=150, progress=False)
    assert metrics["accuracy"][0, -20:].mean() > 0.8


def test_agent_decisions_equal_the_full_sequence_model():
    cfg, model = _tiny()
    params = tr.init(model, jax.random.key(2))
    state = dpt.darkroom_state(SIZE)
    agent = dpt.make_agent(model, 5, state, greedy=True)
    query_pos = jnp.array([5, 1], jnp.int32)

    @jax.jit
    def full_sequence(params):  # one compiled program for the set-up and the full-sequence logits
        pos = jax.random.randint(jax.random.key(3), (N, 2), 0, SIZE)
        action = jax.random.randint(jax.random.key(4), (N,), 0, 5)
        nxt = jax.vmap(lambda p, a: move(p, a, SIZE))(pos, action)
        reward = jnp.zeros(N)
        context = dpt.transition_tokens(state(pos), action, reward, state(nxt), 5)[None]
        queries = jnp.broadcast_to(dpt.query_tokens(state(query_pos), 5), (1, N + 1, 11))
        return pos, action, reward, nxt, tr.apply_queries(model, params, context, queries)[1]

    pos, action, reward, nxt, logits = full_sequence(params)
    carry = agent.init()
    act, observe = jax.jit(agent.act), jax.jit(agent.observe)
    for i in range(N + 1):
        got, _ = act(params, carry, query_pos, jax.random.key(0))
        assert int(got) == int(jnp.argmax(logits[0, i]))
        if i < N:
            step = ContextTransition(pos[i], action[i], reward[i], nxt[i], jnp.bool_(False))
            carry = observe(params, carry, step)


def test_config_rejects_learned_positions():
    with pytest.raises(ValueError, match="^backbone.positions"):
        dpt.DPTConfig(backbone=tr.BackboneConfig(positions="learned"))


def test_episodic_agent_acts_on_exactly_the_previous_episode():
    """Oracle: a fresh per-transition agent prefilled with the previous episode only (and an
    empty one during the first episode) samples the same actions from the same keys."""
    _, model = _tiny()
    params = tr.init(model, jax.random.key(5))
    state = dpt.darkroom_state(SIZE)
    episodic = dpt.make_episodic_agent(model, 5, state)
    plain = dpt.make_agent(model, 5, state, greedy=False)
    horizon, steps = 4, 11  # episodes end at steps 3 and 7; the third is cut short
    pos = jax.random.randint(jax.random.key(6), (steps, 2), 0, SIZE)
    action = jax.random.randint(jax.random.key(7), (steps,), 0, 5)
    nxt = jax.vmap(lambda p, a: move(p, a, SIZE))(pos, action)
    reward = (jnp.arange(steps) % 3 == 0).astype(jnp.float32)
    done = jnp.arange(steps) % horizon == horizon - 1
    transitions = ContextTransition(pos, action, reward, nxt, done)
    carry = episodic.init()
    episodic_act, episodic_observe, plain_act = jax.jit(episodic.act), jax.jit(episodic.observe), jax.jit(plain.act)
    for t in range(steps):
        episode = t // horizon
        window = slice((episode - 1) * horizon, episode * horizon)
        previous = jax.tree.map(lambda x, w=window: x[w], transitions)
        oracle = plain.init() if episode == 0 else prefill(plain, params, previous)
        for k in range(3):
            key = jax.random.key(100 * t + k)
            got, carry = episodic_act(params, carry, pos[t], key)
            want, _ = plain_act(params, oracle, pos[t], key)
            assert int(got) == int(want), (t, k)
        carry = episodic_observe(params, carry, jax.tree.map(lambda x, t=t: x[t], transitions))
