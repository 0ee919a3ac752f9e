"""Dark Room and Dark Key-to-Door grid worlds (Algorithm Distillation / DPT task families).

Coordinates and actions
    Positions are ``int32[2]`` pairs ``(x, y)`` with ``0 <= x, y < size``. The five actions are
    ``0 = stay``, ``1 = up (y + 1)``, ``2 = down (y - 1)``, ``3 = left (x - 1)``,
    ``4 = right (x + 1)``. A move that would leave the grid leaves the agent where it is
    (clipped at the walls). Out-of-range action values are treated as ``stay``.

Dark Room (``DarkRoom``)
    The task is the invisible goal cell ``params.goal``. The observation is the agent position
    only. Reward is ``1.0`` (float32) for every step whose *resulting* position is the goal. The
    episode never terminates; it is truncated after ``params.max_steps_in_episode`` steps (then
    the gymnax ``step`` auto-resets to the start cell). With this rule the optimal return for a
    goal at Manhattan distance ``d`` from the start is ``H - d + 1`` for ``d >= 1`` and ``H`` for
    ``d = 0`` (see :func:`optimal_return`). Variants (:func:`make_darkroom`): ``"9x9"`` (AD:
    start (4, 4), H = 20) and ``"10x10"`` (DPT: start (0, 0), H = 100, goal split
    :func:`dpt_goal_split`).

Dark Key-to-Door (``KeyToDoor``)
    The task is a key cell and a door cell. Reward ``1.0`` the first time the agent stands on the
    key, then ``1.0`` the first time it stands on the door *after* holding the key (a step that
    picks up the key cannot also open the door), so the maximum return is 2. Opening the door
    does **not** terminate the episode: every episode lasts exactly ``H`` steps (fixed-length
    episodes keep multi-episode in-context histories aligned), and no further reward is given
    after the door is open. Public AD reimplementations disagree on the start cell (centre,
    (0, 0) or random) and on extra observation features; this one starts in the centre
    ``(size // 2, size // 2)`` and, as in the AD paper's "dark" setting, observes the position
    only, so whether the key is held must be inferred from the reward history. With
    ``observe_key=True`` the observation is ``int32[3]`` ``(x, y, has_key)`` instead: a Markov
    state, what a tabular source learner (Q-learning) needs. :func:`key_to_door_optimal_return`
    is the optimal return of a task.
    ``sample_params`` draws the key uniformly over all cells and the door uniformly over the
    *other* cells (key and door never coincide).
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from envs.base import TimeLimitEnvironment, check_horizon
from envs.tabular import TabularParams

__all__ = [
    "DarkRoom",
    "DarkRoomParams",
    "DarkRoomState",
    "KeyToDoor",
    "KeyToDoorParams",
    "KeyToDoorState",
    "STAY",
    "UP",
    "DOWN",
    "LEFT",
    "RIGHT",
    "all_goals",
    "dpt_goal_split",
    "key_to_door_optimal_return",
    "make_darkroom",
    "make_key_to_door",
    "manhattan_distance",
    "optimal_action",
    "optimal_actions",
    "optimal_return",
    "tabular_darkroom",
]

STAY, UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3, 4
NUM_ACTIONS = 5

# variant -> (size, start, horizon)
_DARKROOM_VARIANTS = {
    "9x9": (9, (4, 4), 20),
    "10x10": (10, (0, 0), 100),
}


@struct.dataclass
class DarkRoomState(environment.EnvState):
    """``pos``: int32[2] agent (x, y); ``time``: int32 steps taken in this episode."""

    pos: jax.Array
    time: jax.Array


@struct.dataclass
class DarkRoomParams:
    """``goal``: int32[2] goal cell (x, y); ``max_steps_in_episode``: horizon H (int32)."""

    goal: jax.Array
    max_steps_in_episode: Any


@struct.dataclass
class KeyToDoorState(environment.EnvState):
    """``pos`` int32[2]; ``has_key``/``opened`` bool flags; ``time`` int32 steps taken."""

    pos: jax.Array
    has_key: jax.Array
    opened: jax.Array
    time: jax.Array


@struct.dataclass
class KeyToDoorParams:
    """``key``, ``door``: int32[2] cells (x, y); ``max_steps_in_episode``: horizon H."""

    key: jax.Array
    door: jax.Array
    max_steps_in_episode: Any


def move(pos: jax.Array, action: jax.Array, size: int) -> jax.Array:
    """Apply ``action`` to ``pos`` (int32[2]) with moves clipped at the walls; branch-free."""
    dx = (action == RIGHT).astype(jnp.int32) - (action == LEFT).astype(jnp.int32)
    dy = (action == UP).astype(jnp.int32) - (action == DOWN).astype(jnp.int32)
    return jnp.clip(pos + jnp.stack([dx, dy]), 0, size - 1)


def _at(pos: jax.Array, cell: jax.Array) -> jax.Array:
    """bool: whether the int32[2] ``pos`` equals ``cell``."""
    return jnp.logical_and(pos[0] == cell[0], pos[1] == cell[1])


def _check_grid(size: int, start: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    start = tuple(int(c) for c in start)
    if len(start) != 2 or not all(0 <= c < size for c in start):
        raise ValueError(f"start must be an (x, y) cell inside the {size}x{size} grid, got {start}")
    return int(size), start


class _GridEnv(TimeLimitEnvironment):
    """Shared pieces of the dark grid worlds: grid size, start cell, default horizon."""

    def __init__(self, size: int, start: tuple[int, int], horizon: int):
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon must be a positive int, got {horizon!r}")
        self.size, self.start = _check_grid(size, start)
        self.horizon = int(horizon)

    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(NUM_ACTIONS)

    def observation_space(self, params: Any = None) -> spaces.Box:
        """int32[2] agent position (x, y) in ``[0, size - 1]``."""
        return spaces.Box(0, self.size - 1, (2,), dtype=jnp.int32)

    def _start_pos(self) -> jax.Array:
        return jnp.asarray(self.start, dtype=jnp.int32)

    def _random_cell(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, (2,), 0, self.size, dtype=jnp.int32)

    def _check_cells(self, params: Any, *names: str) -> None:
        """ValueError naming the field unless each ``params.<name>`` is an in-grid int cell."""
        check_horizon(params)
        for name in names:
            cell = np.asarray(getattr(params, name))
            if cell.shape != (2,) or not np.issubdtype(cell.dtype, np.integer):
                raise ValueError(f"{name} must be an int32[2] (x, y) cell, got {cell.dtype}{list(cell.shape)}")
            if not np.all((0 <= cell) & (cell < self.size)):
                raise ValueError(f"{name} must lie inside the {self.size}x{self.size} grid, got {cell.tolist()}")


class DarkRoom(_GridEnv):
    """Dark Room: find an invisible goal cell by its reward; see the module docstring."""

    def __init__(self, size: int = 9, start: tuple[int, int] = (4, 4), horizon: int = 20):
        super().__init__(size, start, horizon)

    @property
    def name(self) -> str:
        return f"DarkRoom-{self.size}x{self.size}"

    @property
    def default_params(self) -> DarkRoomParams:
        """Goal in the far corner ``(size - 1, size - 1)``; H = the constructor's horizon."""
        goal = jnp.full((2,), self.size - 1, dtype=jnp.int32)
        return DarkRoomParams(goal=goal, max_steps_in_episode=self.horizon)

    def validate_params(self, params: DarkRoomParams) -> None:
        """ValueError naming the field unless ``goal`` is a cell of the grid and H >= 1."""
        self._check_cells(params, "goal")

    def sample_params(self, key: jax.Array, params: DarkRoomParams | None = None) -> DarkRoomParams:
        """A task: goal uniform over all ``size * size`` cells; other fields from ``params``."""
        base = self.default_params if params is None else params
        return base.replace(goal=self._random_cell(key))

    def get_obs(self, state: DarkRoomState, params: Any = None, key: Any = None) -> jax.Array:
        return state.pos

    def step_env(
        self, key: jax.Array, state: DarkRoomState, action: jax.Array, params: DarkRoomParams
    ) -> tuple[jax.Array, DarkRoomState, jax.Array, jax.Array, dict]:
        pos = move(state.pos, action, self.size)
        reward = _at(pos, params.goal).astype(jnp.float32)
        state = DarkRoomState(pos=pos, time=state.time + 1)
        return pos, state, reward, jnp.bool_(False), {}

    def reset_env(self, key: jax.Array, params: DarkRoomParams) -> tuple[jax.Array, DarkRoomState]:
        state = DarkRoomState(pos=self._start_pos(), time=jnp.int32(0))
        return state.pos, state


class KeyToDoor(_GridEnv):
    """Dark Key-to-Door: pick up an invisible key, then open an invisible door."""

    def __init__(self, size: int = 9, start: tuple[int, int] | None = None, horizon: int = 50,
                 observe_key: bool = False):
        start = (size // 2, size // 2) if start is None else start
        super().__init__(size, start, horizon)
        self.observe_key = bool(observe_key)

    def observation_space(self, params: Any = None) -> spaces.Box:
        """int32[2] position, or with ``observe_key`` int32[3] ``(x, y, has_key)``."""
        if not self.observe_key:
            return super().observation_space(params)
        return spaces.Box(jnp.zeros(3, jnp.int32), jnp.array([self.size - 1, self.size - 1, 1], jnp.int32), (3,),
                          dtype=jnp.int32)

    @property
    def name(self) -> str:
        return f"KeyToDoor-{self.size}x{self.size}"

    @property
    def default_params(self) -> KeyToDoorParams:
        """Key at ``(0, 0)``, door at ``(size - 1, size - 1)``; H = the constructor's horizon."""
        return KeyToDoorParams(
            key=jnp.zeros((2,), dtype=jnp.int32),
            door=jnp.full((2,), self.size - 1, dtype=jnp.int32),
            max_steps_in_episode=self.horizon,
        )

    def validate_params(self, params: KeyToDoorParams) -> None:
        """ValueError naming the field unless key and door are distinct grid cells and H >= 1."""
        self._check_cells(params, "key", "door")
        if np.array_equal(np.asarray(params.key), np.asarray(params.door)):
            raise ValueError(f"door must differ from key, both are {np.asarray(params.key).tolist()}")

    def sample_params(
        self, key: jax.Array, params: KeyToDoorParams | None = None
    ) -> KeyToDoorParams:
        """A task: key uniform over all cells, door uniform over the other ``size**2 - 1``."""
        base = self.default_params if params is None else params
        n = self.size * self.size
        key_key, door_key = jax.random.split(key)
        key_idx = jax.random.randint(key_key, (), 0, n, dtype=jnp.int32)
        # Uniform over the n - 1 cells other than the key: draw from n - 1 and skip the key.
        door_idx = jax.random.randint(door_key, (), 0, n - 1, dtype=jnp.int32)
        door_idx = door_idx + (door_idx >= key_idx).astype(jnp.int32)
        as_cell = lambda i: jnp.stack([i // self.size, i % self.size]).astype(jnp.int32)
        return base.replace(key=as_cell(key_idx), door=as_cell(door_idx))

    def get_obs(self, state: KeyToDoorState, params: Any = None, key: Any = None) -> jax.Array:
        if self.observe_key:
            return jnp.concatenate([state.pos, state.has_key.astype(jnp.int32)[None]])
        return state.pos

    def step_env(
        self, key: jax.Array, state: KeyToDoorState, action: jax.Array, params: KeyToDoorParams
    ) -> tuple[jax.Array, KeyToDoorState, jax.Array, jax.Array, dict]:
        pos = move(state.pos, action, self.size)
        got_key = jnp.logical_and(_at(pos, params.key), jnp.logical_not(state.has_key))
        opens = jnp.logical_and(
            jnp.logical_and(_at(pos, params.door), state.has_key), jnp.logical_not(state.opened)
        )
        reward = got_key.astype(jnp.float32) + opens.astype(jnp.float32)
        state = KeyToDoorState(
            pos=pos,
            has_key=jnp.logical_or(state.has_key, got_key),
            opened=jnp.logical_or(state.opened, opens),
            time=state.time + 1,
        )
        return self.get_obs(state), state, reward, jnp.bool_(False), {}

    def reset_env(
        self, key: jax.Array, params: KeyToDoorParams
    ) -> tuple[jax.Array, KeyToDoorState]:
        state = KeyToDoorState(
            pos=self._start_pos(),
            has_key=jnp.bool_(False),
            opened=jnp.bool_(False),
            time=jnp.int32(0),
        )
        return self.get_obs(state), state


def make_darkroom(variant: str = "9x9") -> tuple[DarkRoom, DarkRoomParams]:
    """``(env, default_params)`` for ``"9x9"`` (AD: start (4,4), H=20) or ``"10x10"`` (DPT)."""
    if variant not in _DARKROOM_VARIANTS:
        raise ValueError(
            f"unknown Dark Room variant {variant!r}; valid: {', '.join(_DARKROOM_VARIANTS)}"
        )
    size, start, horizon = _DARKROOM_VARIANTS[variant]
    env = DarkRoom(size=size, start=start, horizon=horizon)
    return env, env.default_params


def make_key_to_door() -> tuple[KeyToDoor, KeyToDoorParams]:
    """``(env, default_params)`` for Dark Key-to-Door 9x9, centre start, H = 50."""
    env = KeyToDoor(size=9, horizon=50)
    return env, env.default_params


def all_goals(size: int) -> jax.Array:
    """int32[size * size, 2]: every cell (x, y), x-major (``[(x, y) for x ... for y ...]``)."""
    _check_grid(size, (0, 0))
    xs, ys = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return jnp.asarray(np.stack([xs.ravel(), ys.ravel()], axis=1), dtype=jnp.int32)


def dpt_goal_split() -> tuple[jax.Array, jax.Array]:
    """DPT's 10x10 goal split: ``(train int32[80, 2], held_out int32[20, 2])``.

    Goals are listed as ``(j, i)`` for ``j`` outer, ``i`` inner over ``range(10)``, shuffled in
    place with ``np.random.RandomState(0).shuffle``; the first 80 train, the last 20 are held out.
    Each row is a goal (x, y) for :class:`DarkRoom`.
    """
    goals = np.array([[(j, i) for i in range(10)] for j in range(10)]).reshape(-1, 2)
    np.random.RandomState(0).shuffle(goals)
    goals = jnp.asarray(goals, dtype=jnp.int32)
    return goals[:80], goals[80:]


def manhattan_distance(a: jax.Array, b: jax.Array) -> jax.Array:
    """int32: ``|a_x - b_x| + |a_y - b_y|`` for int[2] cells (vmappable)."""
    return jnp.sum(jnp.abs(jnp.asarray(a, jnp.int32) - jnp.asarray(b, jnp.int32)), axis=-1)


def optimal_action(pos: jax.Array, goal: jax.Array) -> jax.Array:
    """int32 shortest-path action from ``pos`` to ``goal`` (both int[2] (x, y)).

    Deterministic: close the x gap first (left/right), then the y gap (down/up); ``STAY`` on the
    goal. Branch-free, so it can be vmapped over positions and goals.
    """
    chex.assert_shape([pos, goal], (2,))
    dx = goal[0] - pos[0]
    dy = goal[1] - pos[1]
    action = jnp.where(dy > 0, UP, jnp.where(dy < 0, DOWN, STAY))
    action = jnp.where(dx > 0, RIGHT, jnp.where(dx < 0, LEFT, action))
    return action.astype(jnp.int32)


def optimal_actions(pos: jax.Array, goal: jax.Array) -> jax.Array:
    """bool ``[NUM_ACTIONS]``: every shortest-path action from ``pos`` to ``goal`` (int[2] (x, y)).

    The move towards the goal along each axis with a gap (one or two actions), or only
    ``STAY`` on the goal. :func:`optimal_action` is the x-first one of them. Vmappable.
    """
    chex.assert_shape([pos, goal], (2,))
    dx = goal[0] - pos[0]
    dy = goal[1] - pos[1]
    return jnp.array([(dx == 0) & (dy == 0), dy > 0, dy < 0, dx < 0, dx > 0])


def optimal_return(goal: jax.Array, start: jax.Array, horizon: Any) -> jax.Array:
    """float32 optimal Dark Room return: ``H`` if the goal is the start, else
    ``max(H - d + 1, 0)`` for Manhattan distance ``d`` (reward counts after each step)."""
    d = manhattan_distance(goal, start)
    h = jnp.asarray(horizon, jnp.int32)
    return jnp.where(d == 0, h, jnp.maximum(h - d + 1, 0)).astype(jnp.float32)


def key_to_door_optimal_return(key: jax.Array, door: jax.Array, start: jax.Array, horizon: Any) -> jax.Array:
    """float32 optimal Dark Key-to-Door return (vmappable): the key takes ``max(d(start, key), 1)``
    steps (on the start cell, one ``STAY``), the door ``d(key, door)`` more (distinct cells), so
    the return is 2 if both fit in ``H`` steps, 1 if only the key does, else 0."""
    to_key = jnp.maximum(manhattan_distance(key, start), 1)
    to_door = to_key + manhattan_distance(door, key)
    h = jnp.asarray(horizon, jnp.int32)
    return ((to_key <= h).astype(jnp.float32) + (to_door <= h).astype(jnp.float32))


def tabular_darkroom(env: DarkRoom, params: DarkRoomParams) -> TabularParams:
    """Dark Room as explicit tables (vmappable over ``params``): state ``x * size + y`` (the
    order of :func:`all_goals`), ``P [S, 5, S]`` one-hot on the clipped move, ``R [S, 5] = 1``
    where the move lands on the goal, ``init_dist`` one-hot on the start cell, same horizon."""
    cells = all_goals(env.size)
    moved = jax.vmap(lambda pos: jax.vmap(lambda a: move(pos, a, env.size))(jnp.arange(NUM_ACTIONS)))(cells)
    index = moved[..., 0] * env.size + moved[..., 1]  # [S, A]
    num_states = env.size * env.size
    P = jax.nn.one_hot(index, num_states, dtype=jnp.float32)
    R = jnp.all(moved == params.goal, axis=-1).astype(jnp.float32)
    init = jax.nn.one_hot(env.start[0] * env.size + env.start[1], num_states, dtype=jnp.float32)
    return TabularParams(P=P, R=R, init_dist=init, max_steps_in_episode=params.max_steps_in_episode)
