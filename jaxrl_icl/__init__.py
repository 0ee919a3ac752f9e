"""jaxrl-icl: a JAX-native toolkit for in-context reinforcement learning research."""

import os as _os

import jax as _jax

__version__ = "0.1.0"

# JAX's asynchronous dispatch on the CPU backend can deadlock (all threads parked on
# futexes, e.g. while restoring a checkpoint or reading results back; jax-ml/jax#25861,
# seen here with jaxlib 0.10 under load). Our training loops dispatch one jitted chunk at a
# time, so synchronous CPU dispatch costs nothing measurable; it must be set before the
# CPU backend starts, hence here. JAXRL_CPU_ASYNC_DISPATCH=1 keeps JAX's default.
if _os.environ.get("JAXRL_CPU_ASYNC_DISPATCH", "0") != "1":
    _jax.config.update("jax_cpu_enable_async_dispatch", False)
