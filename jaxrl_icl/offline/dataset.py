"""The offline dataset type: D4RL's arrays as one pytree, with episodes, splits, normalisation
and jittable sampling.

A :class:`Dataset` holds ``N`` transitions under D4RL's key names:

==================== ================ =====================================================
``observations``     float32 [N, obs] state at step t
``actions``          float32 [N, act] action at t (int32 [N] for discrete action spaces)
``rewards``          float32 [N]      reward received after the action
``terminals``        bool [N]         the episode ended in a terminal state after step t
``timeouts``         bool [N]         the episode was cut (time limit) after step t
``next_observations`` float32 [N, obs] state at t + 1 (for a terminal step: the final state)
==================== ================ =====================================================

Transitions are stored episode after episode; an episode ends at a step with ``terminals`` or
``timeouts`` set, or at the last step. :func:`make_dataset` validates arrays (naming the
source and key of anything wrong) and builds the per-step episode bookkeeping that
:func:`sample_segments` needs inside jit. Everything that reads a dataset inside a jitted
update takes it as an argument, never as a closed-over constant, so the compiled program
does not embed the data.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


class DatasetError(ValueError):
    """Invalid dataset input; the message names the source (file or caller) and the key."""

    def __init__(self, source: str, key: str, message: str):
        super().__init__(f"{source}: {key}: {message}")
        self.source, self.key, self.message = source, key, message


@struct.dataclass
class Dataset:
    """``N`` transitions with D4RL's keys (see the module docstring for shapes) plus per-step
    episode bookkeeping built by :func:`make_dataset`.

    Attributes:
      episode_end: int32 [N], one past the index of the last step of the step's episode.
      returns_to_go: float32 [N], undiscounted sum of rewards from the step to its episode's
        end (what Decision Transformers condition on).
      timesteps: int32 [N], the step's index within its episode.
    """

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    terminals: jax.Array
    timeouts: jax.Array
    next_observations: jax.Array
    episode_end: jax.Array
    returns_to_go: jax.Array
    timesteps: jax.Array

    @property
    def size(self) -> int:
        """Number of transitions ``N``."""
        return int(self.rewards.shape[0])

    @property
    def discrete_actions(self) -> bool:
        """Whether actions are integer indices ``[N]`` rather than vectors ``[N, act]``."""
        return bool(jnp.issubdtype(self.actions.dtype, jnp.integer))

    def arrays(self) -> dict[str, np.ndarray]:
        """The six D4RL arrays as host numpy arrays (what the file writers store)."""
        return {k: np.asarray(getattr(self, k)) for k in KEYS}


# ----------------------------------------------------------------------------- validation


def _check_array(source: str, key: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise DatasetError(source, key, f"must be numeric or bool, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        where = tuple(int(i) for i in bad)
        raise DatasetError(source, key, f"has a non-finite value ({array[where]}) at index {where}")
    return array


def _check_rank(source: str, key: str, array: np.ndarray, ranks: tuple[int, ...]) -> None:
    if array.ndim not in ranks:
        want = " or ".join(f"rank {r}" for r in ranks)
        raise DatasetError(source, key, f"must have {want}, got shape {array.shape}")


def _check_flags(source: str, key: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind != "b" and not np.isin(array, (0, 1)).all():
        raise DatasetError(source, key, "must hold booleans (0/1), found other values")
    return array.astype(bool)


def episode_bounds(terminals: np.ndarray, timeouts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` int64 [E]: step ranges ``[start, end)`` of the episodes that
    ``terminals | timeouts`` (bool [N]) delimit; the last step always ends an episode."""
    done = np.asarray(terminals, bool) | np.asarray(timeouts, bool)
    if done.size:
        done = done.copy()
        done[-1] = True
    ends = np.flatnonzero(done) + 1
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    return starts, ends.astype(np.int64)


def make_dataset(arrays: dict[str, Any], *, source: str = "dataset",
                 action_bounds: tuple[Any, Any] | None = None) -> Dataset:
    """Validate D4RL arrays and build a :class:`Dataset`.

    Args:
      arrays: the six :data:`KEYS` (``timeouts`` may be missing: all False). Observations are
        cast to float32, continuous actions to float32, discrete (integer, rank-1) actions to
        int32, flags to bool.
      source: what the arrays came from (a file path), named in every error.
      action_bounds: optional ``(low, high)`` (scalars or [act]) the actions must lie in, or
        for discrete actions ``(0, num_actions - 1)``.

    Raises :class:`DatasetError` naming ``source`` and the key for a missing key, a length
    mismatch, NaN/inf, a non-numeric dtype, a wrong rank, observations and next observations
    of different shapes, actions outside ``action_bounds``, or an empty dataset.
    """
    arrays = dict(arrays)
    arrays.setdefault("timeouts", np.zeros(len(np.asarray(arrays.get("rewards", ()))), bool))
    for key in KEYS:
        if key not in arrays:
            raise DatasetError(source, key, f"missing (a dataset needs {', '.join(KEYS)})")
    checked = {key: _check_array(source, key, arrays[key]) for key in KEYS}
    n = len(checked["rewards"]) if checked["rewards"].ndim else 0
    if n == 0:
        raise DatasetError(source, "rewards", "the dataset is empty")
    for key, array in checked.items():
        if array.ndim == 0 or len(array) != n:
            raise DatasetError(source, key, f"has {len(array) if array.ndim else 'no'} rows, rewards has {n}")
    _check_rank(source, "rewards", checked["rewards"], (1,))
    _check_rank(source, "observations", checked["observations"], (2,))
    _check_rank(source, "next_observations", checked["next_observations"], (2,))
    _check_rank(source, "actions", checked["actions"], (1, 2))
    if checked["observations"].shape != checked["next_observations"].shape:
        raise DatasetError(source, "next_observations", f"shape {checked['next_observations'].shape} differs from "
                           f"observations {checked['observations'].shape}")
    actions = checked["actions"]
    discrete = actions.ndim == 1
    if discrete and actions.dtype.kind not in "iu":
        raise DatasetError(source, "actions", f"rank-1 actions are discrete and must be integers, got {actions.dtype}")
    actions = actions.astype(np.int32 if discrete else np.float32)
    if action_bounds is not None:
        low, high = (np.broadcast_to(np.asarray(b, np.float64), actions.shape[1:]) for b in action_bounds)
        outside = (actions < low) | (actions > high)
        if outside.any():
            row = int(np.argwhere(outside)[0][0])
            raise DatasetError(source, "actions", f"row {row} ({actions[row]}) lies outside the action bounds "
                               f"[{low}, {high}]")
    terminals = _check_flags(source, "terminals", checked["terminals"])
    timeouts = _check_flags(source, "timeouts", checked["timeouts"])
    _check_rank(source, "terminals", terminals, (1,))
    _check_rank(source, "timeouts", timeouts, (1,))
    rewards = checked["rewards"].astype(np.float32)

    starts, ends = episode_bounds(terminals, timeouts)
    lengths = ends - starts
    episode_end = np.repeat(ends, lengths).astype(np.int32)
    timesteps = (np.arange(n) - np.repeat(starts, lengths)).astype(np.int32)
    # reverse cumulative sum within each episode (float64, then float32)
    csum = np.concatenate([[0.0], np.cumsum(rewards, dtype=np.float64)])
    returns_to_go = (csum[episode_end] - csum[:-1]).astype(np.float32)
    return Dataset(
        observations=jnp.asarray(checked["observations"], jnp.float32),
        actions=jnp.asarray(actions),
        rewards=jnp.asarray(rewards),
        terminals=jnp.asarray(terminals),
        timeouts=jnp.asarray(timeouts),
        next_observations=jnp.asarray(checked["next_observations"], jnp.float32),
        episode_end=jnp.asarray(episode_end),
        returns_to_go=jnp.asarray(returns_to_go),
        timesteps=jnp.asarray(timesteps),
    )


def qlearning_transitions(arrays: dict[str, Any], *, source: str = "dataset") -> dict[str, np.ndarray]:
    """Add ``next_observations`` to D4RL arrays that lack them, as ``d4rl.qlearning_dataset``
    does, never across an episode boundary.

    ``next_observations[i] = observations[i + 1]`` within an episode. A step whose episode
    was cut by a timeout (and the file's last step, unless terminal) has no recorded
    successor and is dropped; the step before it then carries the timeout, so episode
    boundaries stay where they were. A terminal step's successor is never bootstrapped from;
    it gets its own observation as a placeholder.

    Returns the six :data:`KEYS` as numpy arrays (rows dropped as described).
    """
    for key in ("observations", "actions", "rewards", "terminals"):
        if key not in arrays:
            raise DatasetError(source, key, "missing")
    obs = np.asarray(arrays["observations"])
    n = len(obs)
    terminals = np.asarray(arrays["terminals"]).astype(bool)
    timeouts = np.asarray(arrays.get("timeouts", np.zeros(n, bool))).astype(bool)
    if len(terminals) != n or len(timeouts) != n:
        raise DatasetError(source, "terminals" if len(terminals) != n else "timeouts",
                           f"has {len(terminals) if len(terminals) != n else len(timeouts)} rows, observations has {n}")
    cut = timeouts & ~terminals
    if n:
        cut[-1] |= not terminals[-1]
    keep = ~cut
    next_obs = np.concatenate([obs[1:], obs[-1:]], axis=0)
    next_obs[terminals] = obs[terminals]
    new_timeouts = np.zeros(n, bool)
    new_timeouts[:-1] = cut[1:] & ~terminals[:-1]  # the step before a dropped one now ends its episode
    new_timeouts &= ~cut
    out = {k: np.asarray(arrays[k])[keep] for k in ("observations", "actions", "rewards")}
    out.update(terminals=terminals[keep], timeouts=new_timeouts[keep], next_observations=next_obs[keep])
    return out


# ----------------------------------------------------------------------------- splits, stats


def split_episodes(dataset: Dataset, val_fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """``(train, validation)``: whole episodes, a random ``val_fraction`` of them (at least one
    each) held out. Host-side; the split depends only on ``seed``."""
    if not 0 < val_fraction < 1:
        raise DatasetError("split_episodes", "val_fraction", f"must be in (0, 1), got {val_fraction}")
    starts, ends = episode_bounds(np.asarray(dataset.terminals), np.asarray(dataset.timeouts))
    if len(starts) < 2:
        raise DatasetError("split_episodes", "episodes", f"need at least 2 episodes to split, got {len(starts)}")
    order = np.random.default_rng(seed).permutation(len(starts))
    num_val = min(len(starts) - 1, max(1, round(val_fraction * len(starts))))
    val = np.sort(order[:num_val])
    train = np.sort(order[num_val:])
    return select_episodes(dataset, train), select_episodes(dataset, val)


def episode_returns(dataset: Dataset) -> np.ndarray:
    """float64 [E]: the undiscounted return of each episode, in storage order."""
    starts, _ = episode_bounds(np.asarray(dataset.terminals), np.asarray(dataset.timeouts))
    return np.asarray(dataset.returns_to_go, np.float64)[starts]


def scale_rewards_by_return_range(dataset: Dataset, target: float = 1000.0) -> tuple[Dataset, float]:
    """``(scaled dataset, factor)``: rewards (and so returns-to-go) times ``factor = target /
    (max - min)`` of the episode returns, so the returns span ``target``. This is IQL's reward
    normalisation for D4RL locomotion (``target`` 1000, those tasks' episode length): it makes
    the size of values, and so of IQL's advantage weights ``exp(beta * (Q - V))``, the same for
    every robot. Only complete episodes (ending in a terminal or a timeout) count, as in CORL,
    so a D4RL file's cut-off last episode does not stretch the range; a dataset with none uses
    them all. Host-side. Raises :class:`DatasetError` on ``rewards`` when the episodes all
    return the same (nothing to scale by)."""
    if not target > 0:
        raise DatasetError("scale_rewards_by_return_range", "target", f"must be positive, got {target}")
    returns = episode_returns(dataset)
    done = np.asarray(dataset.terminals) | np.asarray(dataset.timeouts)
    complete = done[episode_bounds(done, done)[1] - 1]
    if complete.any():
        returns = returns[complete]
    spread = float(returns.max() - returns.min())
    if not spread > 0:
        raise DatasetError("scale_rewards_by_return_range", "rewards",
                           f"all {len(returns)} episodes return {returns[0]:g}: no range to scale by")
    factor = target / spread
    arrays = dataset.arrays()
    arrays["rewards"] = (arrays["rewards"].astype(np.float64) * factor).astype(np.float32)
    return make_dataset(arrays, source="scale_rewards_by_return_range"), factor


def select_episodes(dataset: Dataset, which: np.ndarray) -> Dataset:
    """The dataset of episodes ``which`` (int [k], indices in storage order, kept in the order
    given). Host-side. The last step of each selected episode keeps its flags; an episode that
    ended only because the data ended gets a timeout, so it stays an episode of its own."""
    which = np.asarray(which, np.int64)
    starts, ends = episode_bounds(np.asarray(dataset.terminals), np.asarray(dataset.timeouts))
    if which.size == 0 or which.min() < 0 or which.max() >= len(starts):
        raise DatasetError("select_episodes", "which", f"must be a non-empty set of indices below {len(starts)}")
    rows = np.concatenate([np.arange(starts[i], ends[i]) for i in which])
    arrays = {k: v[rows] for k, v in dataset.arrays().items()}
    last = np.cumsum(ends[which] - starts[which]) - 1
    arrays["timeouts"][last] |= ~arrays["terminals"][last]
    return make_dataset(arrays, source="select_episodes")


def concat_datasets(*datasets: Dataset) -> Dataset:
    """One dataset holding the episodes of all ``datasets`` one after another (each part's
    unflagged last step gets a timeout, so no episode runs into the next part). Host-side."""
    if not datasets:
        raise DatasetError("concat_datasets", "datasets", "nothing to concatenate")
    parts = [d.arrays() for d in datasets]
    for part in parts:  # a part's unflagged last step becomes a timeout
        part["timeouts"] = part["timeouts"].copy()
        part["timeouts"][-1] |= not part["terminals"][-1]
    kinds = {p["actions"].ndim for p in parts}
    if len(kinds) > 1:
        raise DatasetError("concat_datasets", "actions", "mixes discrete and continuous actions")
    return make_dataset({k: np.concatenate([p[k] for p in parts]) for k in KEYS}, source="concat_datasets")


@struct.dataclass
class ObsNormalizer:
    """Per-feature observation statistics: ``(obs - mean) / std``, float32 [obs] each."""

    mean: jax.Array
    std: jax.Array

    def __call__(self, obs: jax.Array) -> jax.Array:
        return (obs - self.mean) / self.std


def observation_stats(dataset: Dataset, eps: float = 1e-3) -> ObsNormalizer:
    """Mean and ``std + eps`` of the dataset's observations (TD3+BC's state normalisation)."""
    obs = np.asarray(dataset.observations, np.float64)
    return ObsNormalizer(mean=jnp.asarray(obs.mean(0), jnp.float32), std=jnp.asarray(obs.std(0) + eps, jnp.float32))


def normalize_observations(dataset: Dataset, normalizer: ObsNormalizer) -> Dataset:
    """The dataset with ``observations`` and ``next_observations`` normalised."""
    return dataset.replace(observations=normalizer(dataset.observations),
                           next_observations=normalizer(dataset.next_observations))


# ----------------------------------------------------------------------------- sampling (jittable)


def sample_transitions(key: jax.Array, dataset: Dataset, batch_size: int) -> dict[str, jax.Array]:
    """``batch_size`` transitions drawn uniformly with replacement: a dict of the six
    :data:`KEYS`, each ``[batch_size, ...]``. Jittable (``batch_size`` static)."""
    return transitions_at(dataset, jax.random.randint(key, (batch_size,), 0, dataset.rewards.shape[0]))


def transitions_at(dataset: Dataset, idx: jax.Array) -> dict[str, jax.Array]:
    """The transitions at steps ``idx`` [B]: a dict of the six :data:`KEYS`, each ``[B, ...]``."""
    return {k: getattr(dataset, k)[idx] for k in KEYS}


def sample_segments(key: jax.Array, dataset: Dataset, batch_size: int, length: int) -> dict[str, jax.Array]:
    """``batch_size`` segments of ``length`` consecutive steps of one episode each, for
    sequence models. Start steps are uniform over all steps; a segment that reaches its
    episode's end is padded (``mask`` False, values zero) after it. Jittable.

    Returns a dict with ``observations [B, K, obs]``, ``actions [B, K, act]`` (``[B, K]``
    discrete), ``rewards``, ``returns_to_go`` float32 [B, K], ``timesteps`` int32 [B, K],
    ``terminals`` bool [B, K] and ``mask`` bool [B, K].
    """
    n = dataset.rewards.shape[0]
    start = jax.random.randint(key, (batch_size,), 0, n)
    idx = start[:, None] + jnp.arange(length)[None, :]
    mask = idx < dataset.episode_end[start][:, None]
    idx = jnp.where(mask, idx, start[:, None])

    def take(x):
        values = x[idx]
        m = mask.reshape(mask.shape + (1,) * (values.ndim - 2))
        return jnp.where(m, values, jnp.zeros((), values.dtype))

    keys = ("observations", "actions", "rewards", "returns_to_go", "timesteps", "terminals")
    return {**{k: take(getattr(dataset, k)) for k in keys}, "mask": mask}
