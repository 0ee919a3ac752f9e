"""Test-wide set-up: importing jaxrl_icl first applies its JAX settings (synchronous CPU
dispatch, see jaxrl_icl/__init__.py) before any test touches the CPU backend."""

import jaxrl_icl  # noqa: F401  (imported for its side effect)
