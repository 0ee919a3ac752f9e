"""The experiments' command lines as a user meets them: ``--help`` everywhere, and a seed
count the devices cannot split refused before anything is written."""

from __future__ import annotations

import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import experiments

REPO = Path(__file__).resolve().parents[2]


def runnable_modules() -> list[str]:
    """Every module of the experiments package (subpackages included) with a ``__main__`` block."""
    names = [info.name for info in pkgutil.walk_packages(experiments.__path__, "experiments.")]
    return sorted(name for name in names
                  if 'if __name__ == "__main__":' in Path(importlib.util.find_spec(name).origin).read_text())


def test_the_experiments_are_found():
    assert {"experiments.ppo", "experiments.bench", "experiments.plot"} <= set(runnable_modules())


# Runs every module's ``__main__`` with ``--help`` in one fresh interpreter (a subprocess each
# cost about 5 s of imports): per module its exit code, stdout, stderr and the programs JAX
# compiled meanwhile. Modules are imported anew under ``__main__``, so each one's own
# ``--help`` path runs in full; imports shared with an earlier module do not run twice.
_HELP_ALL = """
import contextlib, io, json, logging, runpy, sys
compiled = []
class Record(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Compiling "):
            compiled.append(message.split()[1])
logging.getLogger("jax").addHandler(Record())
results = {}
for module in sys.argv[1:]:
    compiled.clear()
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [module, "--help"]
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exit:
            code = exit.code or 0
        except BaseException as error:  # reported per module, the others still run
            import traceback
            traceback.print_exc()
            code = repr(error)
    results[module] = [code, out.getvalue(), err.getvalue(), sorted(set(compiled))]
print(json.dumps(results))
"""


def test_help_works_and_compiles_nothing():
    modules = runnable_modules()
    env = dict(os.environ, JAX_LOG_COMPILES="1", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-W", "ignore::RuntimeWarning:runpy", "-c", _HELP_ALL, *modules], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    assert sorted(results) == modules
    for module, (code, stdout, stderr, compiled) in results.items():
        assert code == 0, (module, stderr[-3000:])
        assert stdout.strip() and "Traceback" not in stderr, (module, stderr[-3000:])
        # Only array constants of imported modules (gymnax builds some at import) may compile.
        assert set(compiled) <= {"jit(convert_element_type)"}, (module, compiled)


_BAD_SEED_COUNT = """
import contextlib, io, json, sys
from experiments import curriculum_ppo, curriculum_toy, dqn, ppo
results = {}
for module in (ppo, dqn, curriculum_ppo, curriculum_toy):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            module.main(["--num-seeds", "12", "--no-progress"])
            code = 0
        except SystemExit as exit:
            code = exit.code
    results[module.__name__] = [code, stderr.getvalue()]
print(json.dumps(results))
"""


def test_num_seeds_not_dividing_the_devices_is_a_flag_error_before_any_run_directory(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", _BAD_SEED_COUNT], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    assert set(results) == {"experiments.ppo", "experiments.dqn", "experiments.curriculum_ppo",
                            "experiments.curriculum_toy"}
    for name, (code, stderr) in results.items():
        assert code == 2, (name, stderr[-2000:])
        assert (f"python -m {name}: error: argument --num-seeds: num_seeds (12) is not a multiple of the "
                "device count (8)") in stderr, (name, stderr[-2000:])
    assert list(tmp_path.iterdir()) == []  # no runs/ folder, no orphan run directory
