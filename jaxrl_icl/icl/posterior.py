"""The exact-posterior policy that DPT approximates on Dark Room: its limit with unlimited pretraining.

DPT's pretraining loss (cross-entropy on an optimal action at a query cell, goals drawn from
a prior) is minimised by the posterior predictive of the label,

    P(a | s, D) = sum_g P(g | D) * label(a | s, g),

where ``label(. | s, g)`` is the labelling rule (the x-first optimal action, or a uniform one
of the shortest-path moves) and ``P(g | D)`` is the prior restricted to the goals every
transition of the context ``D`` agrees with (reward 1 exactly when the next cell is the goal).
Sampling an action from it at every step is what a perfectly pretrained DPT does online.
It shows how far a trained model is from that limit, and where the limit lies: it explores
by per-step sampling from the marginal over goals, not by committing to one goal for an
episode as posterior sampling does. Its cross-entropy on the pretraining data
(:func:`loss_floor`) is the lowest pretraining loss any DPT can reach.

In Dark Room only one cell is ever rewarded, so a reward in the context identifies the goal.
That holds even at a cell outside the prior's support, as for a held-out goal, where the
strict posterior would be undefined. With no reward in the context, the posterior is the
prior without the cells that were reached with reward 0. If those exclude the whole prior,
it is uniform over the cells not yet reached.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from envs.darkroom import all_goals, optimal_action, optimal_actions
from jaxrl_icl.icl.dpt import darkroom_sample
from jaxrl_icl.icl.evaluate import ContextTransition, InContextAgent


class GoalEvidence(NamedTuple):
    """The last ``n`` transitions of a context as the posterior needs them (a ring buffer).

    Attributes:
      cell: int32[n] flat index ``x * size + y`` of each transition's next cell.
      reward: float32[n] its reward.
      valid: bool[n] whether the slot holds a transition yet.
      count: int32[] transitions observed so far (the next slot is ``count % n``).
    """

    cell: jax.Array
    reward: jax.Array
    valid: jax.Array
    count: jax.Array


def flat_cells(cells: jax.Array, size: int) -> jax.Array:
    """Flat indices ``x * size + y`` of int cells ``[..., 2]`` (the order of :func:`envs.darkroom.all_goals`)."""
    return cells[..., 0] * size + cells[..., 1]


def uniform_prior(goals: jax.Array, size: int) -> jax.Array:
    """float32[size * size]: weight 1 on each cell of ``goals [G, 2]``, 0 elsewhere."""
    return jnp.zeros(size * size).at[flat_cells(goals, size)].set(1.0)


def empty_evidence(context_len: int) -> GoalEvidence:
    """An empty context of ``context_len`` transitions."""
    if context_len < 1:
        raise ValueError(f"context_len: must be >= 1, got {context_len}")
    return GoalEvidence(jnp.zeros(context_len, jnp.int32), jnp.zeros(context_len, jnp.float32),
                        jnp.zeros(context_len, bool), jnp.int32(0))


def add_transition(evidence: GoalEvidence, next_cell: jax.Array, reward: jax.Array, size: int) -> GoalEvidence:
    """``evidence`` with the transition to ``next_cell`` (int[2]) with ``reward`` added (the oldest
    dropped when full)."""
    slot = evidence.count % evidence.cell.shape[0]
    return GoalEvidence(evidence.cell.at[slot].set(flat_cells(next_cell, size)),
                        evidence.reward.at[slot].set(jnp.asarray(reward, jnp.float32)),
                        evidence.valid.at[slot].set(True), evidence.count + 1)


def goal_posterior(evidence: GoalEvidence, prior: jax.Array) -> jax.Array:
    """float32[size * size] posterior over goal cells for ``prior`` (weights over flat cells)."""
    num_cells = prior.shape[0]
    rewarded = evidence.valid & (evidence.reward > 0)
    found = jax.nn.one_hot(evidence.cell[jnp.argmax(rewarded)], num_cells)
    reached = jnp.zeros(num_cells).at[evidence.cell].max(evidence.valid.astype(jnp.float32))
    unexcluded = prior * (1.0 - reached)
    fallback = jnp.where(jnp.sum(1.0 - reached) > 0, 1.0 - reached, jnp.ones(num_cells))
    weights = jnp.where(jnp.any(rewarded), found, jnp.where(jnp.sum(unexcluded) > 0, unexcluded, fallback))
    return weights / jnp.sum(weights)


def label_distribution(pos: jax.Array, size: int, random_ties: bool) -> jax.Array:
    """float32[size * size, 5]: the label's distribution at ``pos`` for each goal cell (flat index)."""
    goals = all_goals(size)
    if random_ties:
        allowed = jax.vmap(lambda g: optimal_actions(pos, g))(goals).astype(jnp.float32)
        return allowed / jnp.sum(allowed, axis=-1, keepdims=True)
    return jax.nn.one_hot(jax.vmap(lambda g: optimal_action(pos, g))(goals), 5)


def action_probs(evidence: GoalEvidence, pos: jax.Array, prior: jax.Array, size: int, random_ties: bool) -> jax.Array:
    """float32[5]: the posterior predictive ``P(a | pos, context)`` of the label."""
    chex.assert_shape(prior, (size * size,))
    return goal_posterior(evidence, prior) @ label_distribution(pos, size, random_ties)


def make_posterior_agent(size: int, prior_goals: jax.Array, *, context_len: int, random_ties: bool) -> InContextAgent:
    """The exact-posterior DPT as an :class:`InContextAgent` for Dark Room ``size x size``.

    ``prior_goals [G, 2]`` are the pretraining goals (uniform prior over them);
    ``context_len`` transitions form a sliding window, as DPT's KV cache does; actions are
    sampled from :func:`action_probs`. It has no parameters (pass ``None``). Wrap it in
    :func:`jaxrl_icl.icl.evaluate.previous_episode_context` for the paper's online protocol.
    """
    prior = uniform_prior(prior_goals, size)

    def act(params, evidence: GoalEvidence, obs, key):
        probs = action_probs(evidence, jnp.asarray(obs, jnp.int32), prior, size, random_ties)
        return jax.random.categorical(key, jnp.log(probs)).astype(jnp.int32), evidence

    def observe(params, evidence: GoalEvidence, t: ContextTransition):
        return add_transition(evidence, jnp.asarray(t.next_obs, jnp.int32), t.reward, size)

    return InContextAgent(init=lambda: empty_evidence(context_len), act=act, observe=observe)


def loss_floor(key: jax.Array, goals: jax.Array, size: int, context_len: int, *, random_ties: bool,
               rewarded_mix: float = 0.0, num_samples: int = 4096) -> tuple[float, float]:
    """``(mean, standard error)``: the exact posterior's cross-entropy on DPT's Dark Room
    pretraining data (:func:`jaxrl_icl.icl.dpt.darkroom_sample` with ``goals`` as the prior and
    ``rewarded_mix``, under which the posterior stays Bayes-optimal), averaged over the prefixes
    0..n of each context as :func:`jaxrl_icl.icl.dpt.prefix_loss` does; a Monte Carlo estimate
    over ``num_samples`` samples, in nats. No model can have a lower expected pretraining loss:
    the gap to it is what training has left to learn.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples: must be >= 2, got {num_samples}")
    prior = uniform_prior(goals, size)

    def one(k):
        s = darkroom_sample(k, goals, size, context_len, random_ties=random_ties, rewarded_mix=rewarded_mix)
        label_given_goal = label_distribution(s.query, size, random_ties)[:, s.label]  # the query is fixed
        nll = lambda ev: -jnp.log(goal_posterior(ev, prior) @ label_given_goal)  # noqa: E731

        def body(ev, t):
            return add_transition(ev, t[0], t[1], size), nll(ev)

        ev, before = jax.lax.scan(body, empty_evidence(max(context_len, 1)), (s.next_state, s.reward))
        return jnp.mean(jnp.concatenate([before, nll(ev)[None]]))

    losses = jax.jit(jax.vmap(one))(jax.random.split(key, num_samples))
    return float(jnp.mean(losses)), float(jnp.std(losses) / jnp.sqrt(num_samples))
