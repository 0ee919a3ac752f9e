"""Actor-critic networks and the two action distributions PPO needs.

``ActorCritic(obs) -> (dist, value)`` with separate actor and critic MLPs (orthogonal
init, zero biases, a small-scale policy head), as in the CleanRL / PureJaxRL PPO.
``dist`` is a :class:`Categorical` for discrete actions or a :class:`DiagGaussian` with a
state-independent log standard deviation for continuous ones.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_icl.linalg import orthogonal

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}

_LOG_2PI = math.log(2.0 * math.pi)


@struct.dataclass
class Categorical:
    """Categorical distribution over ``logits.shape[-1]`` actions; batch shape ``logits.shape[:-1]``."""

    logits: jax.Array  # [..., A] float32, unnormalised

    def sample(self, key: jax.Array) -> jax.Array:
        """Actions ``[...]`` int32."""
        return jax.random.categorical(key, self.logits)

    def log_prob(self, action: jax.Array) -> jax.Array:
        """``log pi(action)``, shape ``[...]``, for integer ``action`` of shape ``[...]``."""
        log_p = jax.nn.log_softmax(self.logits)
        return jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        """Entropy in nats, shape ``[...]``."""
        log_p = jax.nn.log_softmax(self.logits)
        return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


@struct.dataclass
class DiagGaussian:
    """Gaussian with diagonal covariance over the last axis (``A`` action dimensions)."""

    mean: jax.Array  # [..., A]
    log_std: jax.Array  # [..., A] (broadcast of a [A] parameter)

    def sample(self, key: jax.Array) -> jax.Array:
        """Actions ``[..., A]`` float32."""
        return self.mean + jnp.exp(self.log_std) * jax.random.normal(key, self.mean.shape)

    def log_prob(self, action: jax.Array) -> jax.Array:
        """Joint log density of ``action [..., A]``, shape ``[...]``."""
        z = (action - self.mean) * jnp.exp(-self.log_std)
        return jnp.sum(-0.5 * z**2 - self.log_std - 0.5 * _LOG_2PI, axis=-1)

    def entropy(self) -> jax.Array:
        """Differential entropy in nats, shape ``[...]``."""
        return jnp.sum(self.log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)


class MLP(nn.Module):
    """``num_layers`` hidden layers of width ``hidden`` then a linear head of ``out`` units."""

    hidden: int
    num_layers: int
    out: int
    activation: str
    head_scale: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for _ in range(self.num_layers):
            x = nn.Dense(self.hidden, kernel_init=orthogonal(np.sqrt(2.0)))(x)
            x = act(x)
        return nn.Dense(self.out, kernel_init=orthogonal(self.head_scale))(x)


class ActorCritic(nn.Module):
    """Separate policy and value MLPs on a flat observation.

    Attributes:
      action_dim: number of discrete actions, or the dimension of a continuous action.
      continuous: ``False`` for a :class:`Categorical` policy, ``True`` for :class:`DiagGaussian`.
      hidden: width of every hidden layer.
      num_layers: hidden layers in each of the two MLPs.
      activation: a key of :data:`ACTIVATIONS`.

    ``__call__(obs [..., D])`` (any numeric dtype, cast to float32) returns
    ``(dist, value [...])``.
    """

    action_dim: int
    continuous: bool
    hidden: int = 64
    num_layers: int = 2
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[Categorical | DiagGaussian, jax.Array]:
        x = obs.astype(jnp.float32)
        policy_out = MLP(self.hidden, self.num_layers, self.action_dim, self.activation, 0.01, name="actor")(x)
        value = MLP(self.hidden, self.num_layers, 1, self.activation, 1.0, name="critic")(x)[..., 0]
        if not self.continuous:
            return Categorical(logits=policy_out), value
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return DiagGaussian(mean=policy_out, log_std=jnp.broadcast_to(log_std, policy_out.shape)), value
