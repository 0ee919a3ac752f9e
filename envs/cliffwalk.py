"""The 4 x 12 cliff walk with random slips, and its exact tabular model.

Grid cells are ``(row, col)``, row 0 at the top; the start is ``(3, 0)``, the goal ``(3, 11)``
and the cliff the cells ``(3, 1) .. (3, 10)`` between them. The state index is
``row * 12 + col`` (48 states, cliff cells included) and the observation is that index, an
``int32`` scalar (``Discrete(48)`` space). Actions: 0 up, 1 right, 2 down, 3 left; a move into
the outer wall leaves the agent in place.

Slips: with probability ``slip_prob`` (0.1 by default) the chosen action is replaced by one
drawn uniformly from all four (which may be the chosen one again), so the chosen move happens
with probability ``1 - 3 slip_prob / 4``.

Rewards (float32): every step taken from an ordinary cell costs ``-1``. A move that lands in the
cliff puts the agent *in* the cliff cell (it costs the ordinary ``-1``); the next step, whatever
the action, costs ``-40`` and returns the agent to the start. So a fall costs 41 and two steps.
The penalty is charged one step late on purpose: the reward is then a function of ``(s, a)``
only, so the tabular model ``(P[s, a, s'], R[s, a])`` (:func:`cliffwalk_mdp`) is exact in
distribution, not only in mean. (Charging -40 on the move itself would make the reward depend
on whether the slip happened, i.e. on ``s'``, which ``R[s, a]`` cannot express.)

Episodes terminate when the agent enters the goal and are truncated after
``max_steps_in_episode`` steps. In the tabular model the goal is an absorbing state with reward
0, so the ``H``-step return law of the model equals that of an episode of the environment with
``max_steps_in_episode = H``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from envs.base import check_horizon
from envs.tabular import TabularParams

__all__ = [
    "CliffWalk",
    "CliffWalkParams",
    "CliffWalkState",
    "cliffwalk_mdp",
    "make_cliffwalk",
    "GOAL",
    "START",
]

ROWS, COLS = 4, 12
NUM_STATES = ROWS * COLS
START = (ROWS - 1) * COLS  # index of (3, 0)
GOAL = ROWS * COLS - 1  # index of (3, 11)
CLIFF = tuple(range(START + 1, GOAL))  # indices of (3, 1) .. (3, 10)
STEP_REWARD = -1.0
CLIFF_REWARD = -40.0
# (d_row, d_col) of actions up, right, down, left.
_MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], np.int32)


@struct.dataclass
class CliffWalkState:
    """``state``: int32 cell index ``row * 12 + col``; ``time``: int32 steps in this episode."""

    state: jax.Array
    time: jax.Array


@struct.dataclass
class CliffWalkParams:
    """``slip_prob``: float in [0, 1], chance that the action is replaced by a uniform one."""

    slip_prob: Any = 0.1
    max_steps_in_episode: Any = 100


def _move(state: jax.Array, action: jax.Array) -> jax.Array:
    """int32 cell reached from ordinary cell ``state`` by ``action``, walls clipping."""
    move = jnp.asarray(_MOVES)[action]
    row = jnp.clip(state // COLS + move[0], 0, ROWS - 1)
    col = jnp.clip(state % COLS + move[1], 0, COLS - 1)
    return (row * COLS + col).astype(jnp.int32)


def _is_cliff(state: jax.Array) -> jax.Array:
    return (state > START) & (state < GOAL)


class CliffWalk(environment.Environment):
    """Cliff walk with slips; see the module docstring. Terminates on reaching the goal."""

    @property
    def name(self) -> str:
        return "CliffWalk-4x12"

    @property
    def num_actions(self) -> int:
        return 4

    @property
    def default_params(self) -> CliffWalkParams:
        return CliffWalkParams()

    def action_space(self, params: Any = None) -> spaces.Discrete:
        """0 up, 1 right, 2 down, 3 left."""
        return spaces.Discrete(4)

    def observation_space(self, params: Any = None) -> spaces.Discrete:
        """int32 scalar cell index ``row * 12 + col`` in ``[0, 48)``."""
        return spaces.Discrete(NUM_STATES)

    def sample_params(self, key: jax.Array, params: CliffWalkParams | None = None) -> CliffWalkParams:
        """A task: ``slip_prob ~ U(0, 0.2)``; ``max_steps_in_episode`` from ``params``."""
        base = self.default_params if params is None else params
        slip = jax.random.uniform(key, (), jnp.float32, 0.0, 0.2)
        return base.replace(slip_prob=slip)

    def validate_params(self, params: CliffWalkParams) -> None:
        """ValueError naming the field unless ``slip_prob`` is in [0, 1] and the horizon valid."""
        slip = np.asarray(params.slip_prob)
        if slip.shape != () or not np.isfinite(slip) or not 0.0 <= float(slip) <= 1.0:
            raise ValueError(f"slip_prob must be a scalar in [0, 1], got {params.slip_prob!r}")
        check_horizon(params)

    def get_obs(self, state: CliffWalkState, params: Any = None, key: Any = None) -> jax.Array:
        return state.state

    def is_terminated(self, state: CliffWalkState, params: CliffWalkParams) -> jax.Array:
        """True at the goal (the time limit is truncation, ``is_truncated``)."""
        return state.state == GOAL

    def step_env(
        self, key: jax.Array, state: CliffWalkState, action: jax.Array, params: CliffWalkParams
    ) -> tuple[jax.Array, CliffWalkState, jax.Array, jax.Array, dict]:
        slip_key, action_key = jax.random.split(key)
        slip = jax.random.uniform(slip_key) < params.slip_prob
        taken = jnp.where(slip, jax.random.randint(action_key, (), 0, 4), action)
        in_cliff = _is_cliff(state.state)
        next_state = jnp.where(in_cliff, START, _move(state.state, taken)).astype(jnp.int32)
        reward = jnp.where(in_cliff, CLIFF_REWARD, STEP_REWARD).astype(jnp.float32)
        state = CliffWalkState(state=next_state, time=state.time + 1)
        return next_state, state, reward, next_state == GOAL, {}

    def reset_env(self, key: jax.Array, params: CliffWalkParams) -> tuple[jax.Array, CliffWalkState]:
        state = CliffWalkState(state=jnp.int32(START), time=jnp.int32(0))
        return state.state, state


def _move_table() -> np.ndarray:
    """int32[S, A]: the cell each action leads to from each ordinary cell (no slip)."""
    rows, cols = np.divmod(np.arange(NUM_STATES), COLS)
    r = np.clip(rows[:, None] + _MOVES[None, :, 0], 0, ROWS - 1)
    c = np.clip(cols[:, None] + _MOVES[None, :, 1], 0, COLS - 1)
    return (r * COLS + c).astype(np.int32)


def cliffwalk_mdp(params: CliffWalkParams) -> TabularParams:
    """The exact tabular model of :class:`CliffWalk` under ``params`` (jittable, vmappable).

    Returns ``TabularParams`` with ``P: float32[48, 4, 48]``, ``R: float32[48, 4]``,
    ``init_dist: float32[48]`` (the start cell) and ``max_steps_in_episode`` from ``params``.
    Ordinary cells: ``P[s, a] = (1 - slip) onehot(move(s, a)) + slip * mean_b onehot(move(s, b))``
    with reward -1. Cliff cells: every action goes to the start with reward -40. The goal is
    absorbing with reward 0 (it stands for the terminated episode).
    """
    slip = jnp.asarray(params.slip_prob, jnp.float32)
    moves = jax.nn.one_hot(_move_table(), NUM_STATES, dtype=jnp.float32)  # [S, A, S]
    P = (1.0 - slip) * moves + slip * moves.mean(axis=1, keepdims=True)
    cliff = np.zeros(NUM_STATES, bool)
    cliff[list(CLIFF)] = True
    P = jnp.where(cliff[:, None, None], jax.nn.one_hot(START, NUM_STATES), P)
    P = P.at[GOAL].set(jax.nn.one_hot(GOAL, NUM_STATES))
    R = np.full((NUM_STATES, 4), STEP_REWARD, np.float32)
    R[cliff] = CLIFF_REWARD
    R[GOAL] = 0.0
    init = jax.nn.one_hot(START, NUM_STATES, dtype=jnp.float32)
    return TabularParams(P=P, R=jnp.asarray(R), init_dist=init,
                         max_steps_in_episode=params.max_steps_in_episode)


def make_cliffwalk(**overrides: Any) -> tuple[CliffWalk, CliffWalkParams]:
    """``(env, default_params)``: slip 0.1, ``max_steps_in_episode`` 100."""
    env = CliffWalk()
    return env, env.default_params.replace(**overrides)
