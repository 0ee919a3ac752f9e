"""In-context evaluation: roll a frozen model out in new tasks, jitted and vmapped over tasks.

An in-context agent is three pure functions over a per-task ``carry`` (its context, e.g. a
KV cache plus the previous action and reward), bundled in :class:`InContextAgent`:

* ``init() -> carry``: the empty context;
* ``act(params, carry, obs, key) -> (action, carry)``: choose an action in state ``obs``;
* ``observe(params, carry, transition) -> carry``: add one :class:`ContextTransition` to the context.

:func:`rollout` runs one task for ``num_steps`` environment steps inside ``lax.scan``:
online (``learn=True``: every transition enters the context as it happens, across
episodes) or offline (``learn=False``: the context stays whatever ``carry`` held, e.g. a
dataset pushed in with :func:`prefill`). :func:`evaluate` vmaps it over tasks and seeds.
No weights change anywhere: all adaptation is in the context.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np


class ContextTransition(NamedTuple):
    """One step ``(obs, action, reward, next_obs, done)``; ``done = terminated | truncated``
    and ``next_obs`` is the observation the step led to, before any auto-reset
    (``info["final_observation"]``), so ``(obs, action, reward, next_obs)`` is a true
    transition also at an episode's last step. The agent's next ``obs`` after ``done`` is
    the reset one."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    done: jax.Array


class InContextAgent(NamedTuple):
    """A frozen in-context policy; see the module docstring for the three functions."""

    init: Callable[[], Any]
    act: Callable[[Any, Any, jax.Array, jax.Array], tuple[jax.Array, Any]]
    observe: Callable[[Any, Any, ContextTransition], Any]


class EpisodicCarry(NamedTuple):
    """Carry of :func:`previous_episode_context`: ``acting`` holds the inner agent's context
    after the last complete episode (empty during the first), ``building`` the current one's."""

    acting: Any
    building: Any


def previous_episode_context(agent: InContextAgent) -> InContextAgent:
    """``agent`` acting on the previous complete episode only, fixed while the current one
    runs (the DPT paper's online protocol); the first episode runs on an empty context.

    The current episode is observed into a second carry as it happens, which becomes the
    acting one when the episode ends (``transition.done``), so each step still costs one
    ``observe``. ``agent`` must grow its context only in ``observe``, as DPT and the exact
    posterior do; AD, which writes the observation token when it acts, does not fit.
    """

    def init():
        return EpisodicCarry(agent.init(), agent.init())

    def act(params, carry: EpisodicCarry, obs, key):
        action, acting = agent.act(params, carry.acting, obs, key)
        return action, carry._replace(acting=acting)

    def observe(params, carry: EpisodicCarry, t: ContextTransition):
        building = agent.observe(params, carry.building, t)
        ended = jnp.asarray(t.done, bool)
        acting = jax.tree.map(lambda new, old: jnp.where(ended, new, old), building, carry.acting)
        building = jax.tree.map(lambda empty, cur: jnp.where(ended, empty, cur), agent.init(), building)
        return EpisodicCarry(acting, building)

    return InContextAgent(init=init, act=act, observe=observe)


def rollout(
    env: Any,
    env_params: Any,
    agent: InContextAgent,
    params: Any,
    key: jax.Array,
    num_steps: int,
    *,
    learn: bool = True,
    carry: Any = None,
) -> dict[str, jax.Array]:
    """One task, ``num_steps`` steps from a reset; returns ``{"reward", "action", "done"}``,
    each ``[num_steps]`` (float32, int32, bool), plus ``"carry"`` (the final context).

    ``carry`` defaults to ``agent.init()``; with ``learn=False`` it is never updated.
    """
    reset_key, key = jax.random.split(key)
    obs, env_state = env.reset(reset_key, env_params)
    carry = agent.init() if carry is None else carry

    def body(state, step_key):
        obs, env_state, carry = state
        act_key, env_key = jax.random.split(step_key)
        action, carry = agent.act(params, carry, obs, act_key)
        next_obs, env_state, reward, terminated, truncated, info = env.step(env_key, env_state, action, env_params)
        done = terminated | truncated
        if learn:
            step = ContextTransition(obs, action, reward, info["final_observation"], done)
            carry = agent.observe(params, carry, step)
        out = {"reward": reward.astype(jnp.float32), "action": action.astype(jnp.int32), "done": done}
        return (next_obs, env_state, carry), out

    (_, _, carry), out = jax.lax.scan(body, (obs, env_state, carry), jax.random.split(key, num_steps))
    return {**out, "carry": carry}


def prefill(agent: InContextAgent, params: Any, transitions: ContextTransition, carry: Any = None) -> Any:
    """The context after observing ``transitions`` (each field with a leading ``[N]`` step axis) in order."""
    carry = agent.init() if carry is None else carry
    carry, _ = jax.lax.scan(lambda c, t: (agent.observe(params, c, t), None), carry, transitions)
    return carry


def evaluate(
    env: Any,
    task_params: Any,
    agent: InContextAgent,
    params: Any,
    key: jax.Array,
    *,
    num_steps: int,
    num_seeds: int = 1,
    learn: bool = True,
    contexts: Any = None,
) -> dict[str, jax.Array]:
    """:func:`rollout` on every task (leading axis ``[N]`` of ``task_params``) x ``num_seeds``.

    ``contexts``: optional per-task starting carries (leading ``[N]``), e.g. from
    :func:`prefill` under ``vmap``. Returns ``reward``, ``action``, ``done`` as
    ``[N, num_seeds, num_steps]`` (the final carries are dropped).
    """
    num_tasks = jax.tree.leaves(task_params)[0].shape[0]
    keys = jax.random.split(key, (num_tasks, num_seeds))

    def one(task, task_keys, context):
        def seed(k):
            out = rollout(env, task, agent, params, k, num_steps, learn=learn, carry=context)
            return {name: out[name] for name in ("reward", "action", "done")}

        return jax.vmap(seed)(task_keys)

    if contexts is None:
        return jax.vmap(lambda t, k: one(t, k, None))(task_params, keys)
    return jax.vmap(one)(task_params, keys, contexts)


def episode_returns(reward: jax.Array | np.ndarray, done: jax.Array | np.ndarray, horizon: int) -> np.ndarray:
    """Per-episode returns ``[..., num_steps // horizon]`` of fixed-length episodes.

    Raises ValueError unless every episode ends (``done``) exactly at steps ``horizon - 1,
    2 * horizon - 1, ...`` and nowhere else, which is what the Dark Room and bandit tasks
    (time limit only, no termination) produce.
    """
    reward, done = np.asarray(reward), np.asarray(done)
    chex.assert_equal_shape([reward, done])
    steps = reward.shape[-1]
    if horizon < 1 or steps % horizon:
        raise ValueError(f"horizon: {steps} steps are not a whole number of {horizon}-step episodes")
    expected = np.zeros(steps, bool)
    expected[horizon - 1 :: horizon] = True
    if not np.array_equal(done, np.broadcast_to(expected, done.shape)):
        raise ValueError(f"done: episodes do not all last exactly horizon={horizon} steps")
    return reward.reshape(*reward.shape[:-1], steps // horizon, horizon).sum(axis=-1)


def held_out_evaluation(agent: InContextAgent, env: Any, tasks: Any, *, eval_episodes: int, eval_seeds: int,
                        seed: int, per_rollout: bool = False) -> Callable[[Any], np.ndarray]:
    """``params [S, ...] -> [S, eval_episodes]``: each of ``S`` trained models' (e.g. seeds')
    mean in-context return per episode over ``tasks`` (stacked env params, leading axis the
    tasks ``G``) and ``eval_seeds`` online rollouts per task, no weight updates; ``per_rollout``
    keeps every rollout, ``[S, G, eval_seeds, eval_episodes]``. Episodes last ``env.horizon``
    steps. One jitted ``vmap`` over models, tasks and rollouts, compiled once for every call;
    every model gets the same keys (from ``seed``), so models compare on the same rollouts."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    run = jax.jit(jax.vmap(lambda p: evaluate(env, tasks, agent, p, key, num_steps=eval_episodes * env.horizon,
                                              num_seeds=eval_seeds)))

    def returns(params: Any) -> np.ndarray:
        out = run(params)
        per_episode = episode_returns(out["reward"], out["done"], env.horizon)  # [S, G, seeds, episodes]
        return per_episode if per_rollout else per_episode.mean(axis=(1, 2))

    return returns
