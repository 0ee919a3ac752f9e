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
# Cache every program, the smallest too: on a 2-core CPU XLA takes about 60 ms for even one
# eager op, tests dispatch hundreds, and the other worker and subprocesses load them instead
# (5% less wall time on three ICL test files than caching only programs over 0.2 s).
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# JAXRL_TEST_COMPILE_STATS=<dir>: each pytest process writes ``<dir>/<worker>.json``, per test
# (setup, call and teardown) its wall seconds, the seconds JAX spent tracing, lowering and compiling with XLA,
# and the number of XLA compiles (cache hits excluded), to see what the suite's time is made of:
# ``python -m tests.compile_stats <dir>`` summarises them against the test durations.
_STATS_DIR = os.environ.get("JAXRL_TEST_COMPILE_STATS")
if _STATS_DIR:
    import json
    import time
    from collections import defaultdict

    import pytest

    _EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
               "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
               "/jax/core/compile/backend_compile_duration": "compile_s"}
    _totals: dict[str, float] = defaultdict(float)
    _per_test: dict[str, dict[str, float]] = {}

    def _record(event: str, seconds: float, **_) -> None:
        if event in _EVENTS:
            _totals[_EVENTS[event]] += seconds
            _totals["compiles"] += event.endswith("backend_compile_duration")

    jax.monitoring.register_event_duration_secs_listener(_record)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        before, start = dict(_totals), time.perf_counter()
        yield
        _per_test[item.nodeid] = {k: round(v - before.get(k, 0.0), 4) for k, v in _totals.items()}
        _per_test[item.nodeid]["wall_s"] = round(time.perf_counter() - start, 4)

    def pytest_sessionfinish(session):
        os.makedirs(_STATS_DIR, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(os.path.join(_STATS_DIR, f"{worker}.json"), "w") as f:
            json.dump(_per_test, f)
