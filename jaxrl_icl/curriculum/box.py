"""The task box shared by every teacher: validation of ``low``/``high`` and uniform draws."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_icl.config import ConfigError


def validate_box(cfg: Any) -> None:
    """``cfg.low``/``cfg.high``: same non-zero length and ``low < high`` everywhere, else ConfigError."""
    if len(cfg.low) == 0:
        raise ConfigError("low", "needs at least one dimension")
    if len(cfg.low) != len(cfg.high):
        raise ConfigError("high", f"must have the length of low ({len(cfg.low)}), got {len(cfg.high)}")
    for i, (lo, hi) in enumerate(zip(cfg.low, cfg.high)):
        if not lo < hi:
            raise ConfigError("low", f"must be < high in every dimension, got low[{i}]={lo} >= high[{i}]={hi}")


def uniform_in_box(key: jax.Array, low: tuple[float, ...], high: tuple[float, ...]) -> jax.Array:
    """One task uniform in ``[low, high]``: float32[d]."""
    lo, hi = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
    return jax.random.uniform(key, lo.shape, minval=lo, maxval=hi)


def clip_to_box(task: jax.Array, low: tuple[float, ...], high: tuple[float, ...]) -> jax.Array:
    """``task`` float32[d] clipped to ``[low, high]``."""
    return jnp.clip(task, jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32))
