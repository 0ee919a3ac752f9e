"""jaxrl-icl: a JAX-native toolkit for in-context reinforcement learning research."""

__version__ = "0.1.0"
