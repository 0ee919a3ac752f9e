"""Running mean and variance with the parallel merge of Chan et al. (1979).

One implementation for every running normaliser: the :class:`~envs.wrappers.ObsNorm`
wrapper (one observation at a time), PPO's observation normalisation (a rollout at a time)
and PPO's reward scaling (the discounted returns of all envs at each step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["RunningMoments"]


@struct.dataclass
class RunningMoments:
    """Count, mean and population variance of every sample merged so far.

    ``count`` float32[]; ``mean``, ``var`` float32[*shape] (per-coordinate statistics of
    samples of shape ``shape``). Leading axes on all three (stacked or vmapped statistics)
    are fine for reading; :meth:`merge` and :meth:`normalize` take one set of statistics.
    """

    count: jax.Array
    mean: jax.Array
    var: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...] = (), count: float = 0.0) -> RunningMoments:
        """Mean 0, variance 1 and ``count`` prior samples (0: the first merge sets both)."""
        return cls(
            jnp.float32(count), jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32)
        )

    def merge(self, batch: jax.Array) -> RunningMoments:
        """Statistics of the samples so far together with ``batch [N, *shape]``.

        Chan et al.'s update: with ``n = N``, ``total = count + n`` and ``delta`` the
        difference of the batch mean and the old mean, ``mean += delta * n / total`` and
        ``var = (var * count + batch_var * n + delta^2 * count * n / total) / total``.
        """
        n = jnp.float32(batch.shape[0])
        batch_mean, batch_var = jnp.mean(batch, axis=0), jnp.var(batch, axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        return RunningMoments(total, self.mean + delta * n / total, m2 / total)

    def normalize(self, x: jax.Array, clip: float = 10.0, eps: float = 1e-8) -> jax.Array:
        """``clip((x - mean) / sqrt(var + eps), -clip, clip)`` for ``x [..., *shape]``."""
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + eps), -clip, clip)
