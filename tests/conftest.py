"""Test-wide set-up.

* Importing jaxrl_icl first applies its JAX settings (synchronous CPU dispatch, see
  jaxrl_icl/__init__.py) before any test touches the CPU backend.
* One persistent compilation cache for the whole run, shared by the pytest-xdist workers and the
  subprocesses tests start: most of the suite's time is XLA compiling tiny programs, and many
  tests compile the same program again (parametrised cases, one trainer jitted in several
  tests, the same step in two workers). A cache hit loads the executable XLA compiled before,
  so results are bit for bit the same. The directory is made once per run (the first process
  to import this file exports it to the processes it starts) and removed when that process
  exits; ``JAX_COMPILATION_CACHE_DIR`` set by the user is kept and used as is.
"""

import atexit
import os
import shutil
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="jaxrl-icl-test-jit-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)

import jax  # noqa: E402

import jaxrl_icl  # noqa: E402, F401  (imported for its side effect)

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
# Cache every program that takes a noticeable time to compile (the default, 1 s, misses most).
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
