"""Synthetic episodes with known successors, shared by the offline tests."""

from __future__ import annotations

import numpy as np
import pytest


def make_episodes(seed: int = 0, num_episodes: int = 7, obs_dim: int = 3, act_dim: int = 2) -> dict[str, np.ndarray]:
    """Raw D4RL arrays (no next_observations) of random-length episodes, plus the generator's
    own bookkeeping: ``episode`` ids and ``true_next`` (the real successor of every step,
    NaN where the episode was cut by a timeout)."""
    rng = np.random.default_rng(seed)
    parts = {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts", "episode", "true_next")}
    for e in range(num_episodes):
        length = int(rng.integers(1, 9))
        states = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        terminal = bool(rng.random() < 0.5)
        parts["observations"].append(states[:-1])
        parts["true_next"].append(states[1:])
        parts["actions"].append(rng.uniform(-1, 1, size=(length, act_dim)).astype(np.float32))
        parts["rewards"].append(rng.normal(size=length).astype(np.float32))
        flags = np.zeros(length, bool)
        last = flags.copy()
        last[-1] = True
        parts["terminals"].append(last & terminal)
        parts["timeouts"].append(last & ~terminal)
        parts["episode"].append(np.full(length, e))
    return {k: np.concatenate(v) for k, v in parts.items()}


@pytest.fixture
def episodes():
    return make_episodes()
