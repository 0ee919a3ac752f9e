"""Decision-Pretrained Transformer (Lee et al. 2023): predict the optimal action from a context.

Pretraining data is generated on the fly inside ``jit``: a random task, ``n`` context
transitions ``(s, a, r, s')`` and a query state labelled with the task's optimal action.
The model is trained to predict that label from every prefix of the context (0..n
transitions), which :func:`jaxrl_icl.icl.transformer.apply_queries` computes in one pass.

Tokens have ``2 * state_dim + num_actions + 2`` features: ``[s | onehot(a) | s' | r | is_query]``;
a query token is ``[s | 0 | 0 | 0 | 1]``. Dark Room states are the agent position scaled
to [0, 1], Key-to-Door states that plus the key bit (:func:`key_door_batch`); bandits have no
state (``state_dim = 0``), so their transitions are ``(a, r)``.

At evaluation a query never enters the context: the KV cache holds the transitions
(``step``) and each decision is a ``peek`` with the current state, so one decision costs
O(context) and a rollout can run for any number of episodes (the cache is a sliding
window over the last ``context_len`` transitions). Online, actions are sampled and every
transition is added as it happens; offline, the context is a fixed dataset and actions
are the argmax (as in the paper).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from envs.darkroom import all_goals, move, optimal_action, optimal_actions
from jaxrl_icl.config import require_in, require_positive, require_types
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.icl.evaluate import ContextTransition, InContextAgent, previous_episode_context
from jaxrl_icl.icl.moe import MoEConfig
from jaxrl_icl.icl.train import OptimConfig, accuracy, cross_entropy, make_supervised_trainer, with_aux
from jaxrl_icl.trainer import Trainer

# T2MIR's DPT settings (REFERENCES.md): balance 0.01, contrastive 0.001, 8 task experts. DPT
# batches draw a fresh task per sequence, so each is its own contrastive positive (unpaired).
DPT_MOE = MoEConfig(task_experts=8, balance_weight=0.01, contrastive_weight=0.001, paired=False)


@dataclasses.dataclass(frozen=True)
class DPTConfig:
    """Model and context size of a DPT.

    Attributes:
      context_len: transitions in a pretraining context (and the evaluation window).
      rewarded_mix: Dark Room pretraining data only: the fraction of contexts with a random
        share of rewarded transitions mixed in (:func:`darkroom_batch`); 0 is the paper's data.
      backbone: the transformer (:class:`~jaxrl_icl.icl.transformer.BackboneConfig`; the
        paper's embedding size is 32 and it has 4 layers; real multi-head attention, the
        public code's n_head is stuck at 1); positions must be ``"alibi"`` or ``"rope"``
        (relative, so the evaluation window can slide).
    """

    context_len: int = 100
    rewarded_mix: float = 0.0
    backbone: tr.BackboneConfig = tr.BackboneConfig(width=32, num_layers=4, num_heads=4, moe=DPT_MOE)

    def __post_init__(self) -> None:
        require_types(self)
        require_positive(self, "context_len")
        require_in(self, "rewarded_mix", 0.0, 1.0)
        tr.require_relative_positions(self.backbone)


def token_dim(state_dim: int, num_actions: int) -> int:
    return 2 * state_dim + num_actions + 2


def make_model(config: DPTConfig, state_dim: int, num_actions: int) -> tr.TransformerConfig:
    """The transformer: ``context_len`` transitions plus the query fit one window."""
    window = config.context_len + 1
    return tr.TransformerConfig(d_in=token_dim(state_dim, num_actions), d_out=num_actions, max_len=window,
                                window=window, backbone=config.backbone)


def transition_tokens(state, action, reward, next_state, num_actions: int) -> jax.Array:
    """Tokens ``[..., d]`` of transitions: ``state/next_state [..., S]`` float, ``action [...]`` int,
    ``reward [...]``."""
    reward = jnp.asarray(reward, jnp.float32)
    return jnp.concatenate([
        state.astype(jnp.float32), jax.nn.one_hot(action, num_actions), next_state.astype(jnp.float32),
        reward[..., None], jnp.zeros_like(reward)[..., None],
    ], axis=-1)


def query_tokens(state, num_actions: int) -> jax.Array:
    """Query tokens ``[..., d]`` for ``state [..., S]``."""
    lead = state.shape[:-1]
    return jnp.concatenate([
        state.astype(jnp.float32), jnp.zeros((*lead, num_actions + state.shape[-1] + 1)), jnp.ones((*lead, 1)),
    ], axis=-1)


# ----------------------------------------------------------------------------- pretraining data


class GridSample(NamedTuple):
    """One grid-world pretraining sample before tokenising (int cells are (x, y)).

    Attributes:
      state, next_state: int32[n, S] state and next state of each context transition: the
        cell in Dark Room (``S = 2``), ``(x, y, has_key)`` in Key-to-Door (``S = 3``).
      action: int32[n] its action; reward: float32[n] its reward.
      query: int32[S] the query state; label: int32[] the target action there.
      task: Dark Room's goal int32[2], or Key-to-Door's (key, door) cells int32[2, 2].
    """

    state: jax.Array
    action: jax.Array
    next_state: jax.Array
    reward: jax.Array
    query: jax.Array
    task: jax.Array
    label: jax.Array


def _tokenised_batch(sample_fn: Callable[[jax.Array], GridSample], state_fn: Callable[[jax.Array], jax.Array],
                     key: jax.Array, batch: int):
    """``(context [B, n, d], query [B, d], label [B])`` of ``batch`` samples ``sample_fn(key_b)``."""

    def one(k):
        s = sample_fn(k)
        context = transition_tokens(state_fn(s.state), s.action, s.reward, state_fn(s.next_state), 5)
        return context, query_tokens(state_fn(s.query), 5), s.label

    return jax.vmap(one)(jax.random.split(key, batch))


def _label(key: jax.Array, cell: jax.Array, target: jax.Array, random_ties: bool) -> jax.Array:
    """int32 shortest-path action from ``cell`` to ``target``: x-gap first, or with
    ``random_ties`` uniform over :func:`envs.darkroom.optimal_actions` drawn with ``key``."""
    if random_ties:
        return jax.random.categorical(key, jnp.where(optimal_actions(cell, target), 0.0, -jnp.inf)).astype(jnp.int32)
    return optimal_action(cell, target)


def darkroom_sample(key: jax.Array, goals: jax.Array, size: int, context_len: int, *,
                    random_ties: bool = False, rewarded_mix: float = 0.0) -> GridSample:
    """One sample of :func:`darkroom_batch` (the same one for the same key), untokenised."""
    if not 0.0 <= rewarded_mix <= 1.0:
        raise ValueError(f"rewarded_mix: must be in [0, 1], got {rewarded_mix!r}")
    k_goal, k_pos, k_act, k_query = jax.random.split(key, 4)
    goal = goals[jax.random.randint(k_goal, (), 0, goals.shape[0])]
    pos = jax.random.randint(k_pos, (context_len, 2), 0, size)
    action = jax.random.randint(k_act, (context_len,), 0, 5)
    if rewarded_mix:  # (a Python branch: without the mix the samples are as before)
        pos, action = _mix_in_rewarded(jax.random.fold_in(key, 7), pos, action, goal, size, rewarded_mix)
    nxt = jax.vmap(lambda p, a: move(p, a, size))(pos, action)
    reward = jnp.all(nxt == goal, axis=-1).astype(jnp.float32)
    query = jax.random.randint(k_query, (2,), 0, size)
    # a key folded from k_query, so the x-first path keeps its split (and its samples)
    label = _label(jax.random.fold_in(k_query, 1), query, goal, random_ties)
    return GridSample(pos, action, nxt, reward, query, goal, label)


def _mix_in_rewarded(key: jax.Array, pos: jax.Array, action: jax.Array, goal: jax.Array, size: int,
                     mix: float) -> tuple[jax.Array, jax.Array]:
    """With probability ``mix``, overwrite each context slot with probability ``w ~ U(0, 1)``
    by a (cell, action) pair drawn uniformly from those whose move ends on ``goal``."""
    k_branch, k_w, k_slots, k_pick = jax.random.split(key, 4)
    cells = jnp.repeat(all_goals(size), 5, axis=0)  # every (cell, action) pair, [size*size*5, 2]
    actions = jnp.tile(jnp.arange(5, dtype=jnp.int32), size * size)
    into_goal = jnp.all(jax.vmap(lambda c, a: move(c, a, size))(cells, actions) == goal, axis=-1)
    pick = jax.random.categorical(k_pick, jnp.where(into_goal, 0.0, -jnp.inf), shape=action.shape)
    w = jax.random.uniform(k_w) * jax.random.bernoulli(k_branch, mix)
    replace = jax.random.uniform(k_slots, action.shape) < w
    return jnp.where(replace[:, None], cells[pick], pos), jnp.where(replace, actions[pick], action)


def darkroom_batch(key: jax.Array, goals: jax.Array, size: int, context_len: int, batch: int, *,
                   random_ties: bool = False, rewarded_mix: float = 0.0):
    """``(context [B, n, d], query [B, d], label [B])`` for Dark Room ``size x size``.

    Each sample: a goal drawn from ``goals [G, 2]``, ``n`` uniformly random transitions
    (random cell, random action, the grid's move, reward 1 iff the next cell is the goal),
    a uniformly random query cell and an optimal action there: the x-gap-first one of
    :func:`envs.darkroom.optimal_action` (the paper's labels), or with ``random_ties`` a
    uniform one of :func:`envs.darkroom.optimal_actions` (x or y move when both gaps are
    open). x-first labels make the label marginal under an uncertain goal mostly
    left/right, so the sampled policy explores along its row; random ties keep it isotropic.

    ``rewarded_mix`` (default 0: the paper's data): the fraction of samples whose context has
    a random share ``w ~ U(0, 1)`` of its transitions replaced by rewarded ones (a uniform
    draw among the (cell, action) pairs that end on the goal, so mostly repeats). Online, once
    a DPT has found the goal, its context fills with repeats of "stay on the goal, reward 1",
    which uniform contexts never hold; the mix puts such contexts in the pretraining data.
    It keeps the exact posterior (:mod:`jaxrl_icl.icl.posterior`) the Bayes-optimal
    predictor: a rewarded transition pins the goal whatever the mix, and a context (or
    prefix) with no reward has the uniform contexts' likelihood, because which slots are
    replaced does not depend on the goal.
    """
    sample = lambda k: darkroom_sample(k, goals, size, context_len, random_ties=random_ties,  # noqa: E731
                                       rewarded_mix=rewarded_mix)
    return _tokenised_batch(sample, darkroom_state(size), key, batch)


def darkroom_batch_fn(config: DPTConfig, goals: jax.Array, size: int, *, random_ties: bool) -> BatchFn:
    """``(key, batch_size) -> batch``: :func:`darkroom_batch` with ``config``'s context length and
    rewarded mix, for :func:`make_train`."""
    return lambda key, b: darkroom_batch(key, goals, size, config.context_len, b, random_ties=random_ties,
                                         rewarded_mix=config.rewarded_mix)


def key_door_sample(key: jax.Array, tasks: jax.Array, size: int, context_len: int, *,
                    random_ties: bool = False) -> GridSample:
    """One sample of :func:`key_door_batch` (the same one for the same key), untokenised; its
    reward is 1 for picking up the key and 1 for opening the door while holding it."""
    k_task, k_pos, k_has, k_act, k_query, k_tie = jax.random.split(key, 6)
    task = tasks[jax.random.randint(k_task, (), 0, tasks.shape[0])]
    pos = jax.random.randint(k_pos, (context_len, 2), 0, size)
    has_key = jax.random.bernoulli(k_has, 0.5, (context_len,))
    action = jax.random.randint(k_act, (context_len,), 0, 5)
    nxt = jax.vmap(lambda p, a: move(p, a, size))(pos, action)
    got_key = jnp.all(nxt == task[0], axis=-1) & ~has_key
    opens = jnp.all(nxt == task[1], axis=-1) & has_key
    state = jnp.concatenate([pos, has_key[:, None]], axis=-1).astype(jnp.int32)
    next_state = jnp.concatenate([nxt, (has_key | got_key)[:, None]], axis=-1).astype(jnp.int32)
    query = jnp.concatenate([jax.random.randint(k_query, (2,), 0, size),
                             jax.random.bernoulli(jax.random.fold_in(k_query, 1), 0.5, (1,))]).astype(jnp.int32)
    label = _label(k_tie, query[:2], jnp.where(query[2] == 1, task[1], task[0]), random_ties)
    return GridSample(state, action, next_state, (got_key | opens).astype(jnp.float32), query, task, label)


def key_door_batch(key: jax.Array, tasks: jax.Array, size: int, context_len: int, batch: int, *,
                   random_ties: bool = False):
    """``(context [B, n, d], query [B, d], label [B])`` for Dark Key-to-Door ``size x size``
    observed with the key bit (states ``(x, y, has_key)``, ``d = token_dim(3, 5)``).

    Each sample: a task from ``tasks int32[K, 2, 2]`` (rows ``(key, door)``), ``n`` transitions
    from uniformly random states (cell, key bit) with uniformly random actions and the env's
    dynamics and rewards (:class:`envs.darkroom.KeyToDoor` before the door is opened; the
    ``opened`` flag is not observed, so a door already opened is out of this distribution),
    and a uniformly random query state labelled with a shortest-path move to the key (without
    it) or the door (with it); ``random_ties`` as in :func:`darkroom_batch`.
    """
    sample = lambda k: key_door_sample(k, tasks, size, context_len, random_ties=random_ties)  # noqa: E731
    return _tokenised_batch(sample, key_door_state(size), key, batch)


def bandit_batch(key: jax.Array, num_arms: int, noise_std: float, context_len: int, batch: int,
                 means: jax.Array | None = None):
    """``(context [B, n, d], query [B, d], label [B])`` for Gaussian bandits.

    Each sample: arm means ~ U(0, 1) (or row ``b`` of ``means [B, num_arms]``), a behaviour
    distribution over arms ``(1 - w) * Dirichlet(1) + w * onehot(k)`` with ``w`` uniform on
    ``{0, 0.1, ..., 1}`` and ``k`` a uniform arm (as in the DPT paper's data: from spread out
    to all pulls on one arm, so contexts that exploit one arm, as DPT's own online ones do,
    are in the pretraining distribution), ``n`` pulls from it with rewards ``mean +
    noise_std * N(0, 1)``; the label is the best arm.
    """

    def one(k, given):
        k_mean, k_pi, k_weight, k_arm, k_act, k_noise = jax.random.split(k, 6)
        means = jax.random.uniform(k_mean, (num_arms,)) if given is None else given
        weight = jax.random.randint(k_weight, (), 0, 11) / 10.0
        point = jax.nn.one_hot(jax.random.randint(k_arm, (), 0, num_arms), num_arms)
        probs = (1.0 - weight) * jax.random.dirichlet(k_pi, jnp.ones(num_arms)) + weight * point
        action = jax.random.categorical(k_act, jnp.log(probs), shape=(context_len,))
        reward = means[action] + noise_std * jax.random.normal(k_noise, (context_len,))
        empty = jnp.zeros((context_len, 0))
        context = transition_tokens(empty, action, reward, empty, num_arms)
        return context, query_tokens(jnp.zeros((0,)), num_arms), jnp.argmax(means).astype(jnp.int32)

    keys = jax.random.split(key, batch)
    return jax.vmap(one)(keys, means) if means is not None else jax.vmap(lambda k: one(k, None))(keys)


# ----------------------------------------------------------------------------- training


BatchFn = Callable[[jax.Array, int], tuple[jax.Array, jax.Array, jax.Array]]


def prefix_loss(model: tr.TransformerConfig, params, context, query, label, *, compute_dtype=jnp.float32,
                dropout_key=None):
    """Cross-entropy of predicting ``label [B]`` from every prefix 0..n of ``context`` plus the
    backbone's auxiliary losses (:func:`~jaxrl_icl.icl.train.with_aux`), and metrics (accuracy)."""
    queries = jnp.broadcast_to(query[:, None], (query.shape[0], context.shape[1] + 1, query.shape[-1]))
    _, logits, aux = tr.apply_queries(model, params, context.astype(compute_dtype), queries.astype(compute_dtype),
                                      dropout_key=dropout_key, return_aux=True)
    labels = jnp.broadcast_to(label[:, None], logits.shape[:2])
    return with_aux(cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels),
                                                    "accuracy_full_context": accuracy(logits[:, -1], label)}, aux)


def make_train(config: DPTConfig, optim: OptimConfig, model: tr.TransformerConfig, batch_fn: BatchFn) -> Trainer:
    """Pretraining as a :class:`Trainer`; ``batch_fn(key, batch_size) -> (context, query, label)``.

    The batches are generated inside the jitted step, so the trainer takes no data: run it
    with ``trainer(key, None)`` or ``train_in_chunks(trainer, keys, None, ...)``."""

    def loss(params, key, compute_dtype, _data):
        data_key, dropout_key = jax.random.split(key)
        context, query, label = batch_fn(data_key, optim.batch_size)
        return prefix_loss(model, params, context, query, label, compute_dtype=compute_dtype,
                           dropout_key=dropout_key if config.backbone.needs_rng else None)

    return make_supervised_trainer(optim, lambda k: tr.init(model, k), loss, ema_rate=config.backbone.moe.ema_rate)


# ----------------------------------------------------------------------------- acting


def make_agent(model: tr.TransformerConfig, num_actions: int, state_fn: Callable[[jax.Array], jax.Array],
               *, greedy: bool) -> InContextAgent:
    """DPT as an :class:`InContextAgent`; ``state_fn(obs) -> state [S]`` (e.g. scaled position).

    ``greedy``: argmax action (offline evaluation) instead of sampling (online).
    """

    def init():
        return tr.init_cache(model, 1)

    def act(params, cache, obs, key):
        logits = tr.peek(model, params, cache, query_tokens(state_fn(obs), num_actions)[None])[0]
        action = jnp.argmax(logits) if greedy else jax.random.categorical(key, logits)
        return action.astype(jnp.int32), cache

    def observe(params, cache, t: ContextTransition):
        token = transition_tokens(state_fn(t.obs), t.action, t.reward, state_fn(t.next_obs), num_actions)
        return tr.step(model, params, cache, token[None])[1]

    return InContextAgent(init=init, act=act, observe=observe)


def make_episodic_agent(model: tr.TransformerConfig, num_actions: int,
                        state_fn: Callable[[jax.Array], jax.Array]) -> InContextAgent:
    """DPT for online evaluation as in the paper's code: actions are sampled, and the context
    the agent acts on is the previous complete episode (at most ``context_len`` transitions),
    fixed for the whole of the current episode; the first episode runs with an empty context.
    See :func:`jaxrl_icl.icl.evaluate.previous_episode_context`; the cost per step stays one
    cached token.
    """
    return previous_episode_context(make_agent(model, num_actions, state_fn, greedy=False))


def darkroom_state(size: int) -> Callable[[jax.Array], jax.Array]:
    """Dark Room observation (int position) -> state in [0, 1]^2."""
    return lambda obs: obs.astype(jnp.float32) / (size - 1)


def key_door_state(size: int) -> Callable[[jax.Array], jax.Array]:
    """Key-to-Door observation ``(x, y, has_key)`` (int) -> state ``[x, y] / (size - 1)`` and the key bit."""
    return lambda obs: obs.astype(jnp.float32) / jnp.array([size - 1, size - 1, 1], jnp.float32)


def no_state(obs: Any) -> jax.Array:
    """Bandits: an empty state vector."""
    return jnp.zeros((0,), jnp.float32)
