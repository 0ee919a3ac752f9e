"""Library packages do not load the run layer (CLI, orbax, matplotlib).

Each import runs in a fresh interpreter, so modules that other tests loaded cannot hide a
leak.
"""

import ast
import subprocess
import sys

import pytest

import jaxrl_icl.config

RUN_LAYER = ("jaxrl_icl.run", "orbax", "tensorstore")
PLOTTING = ("matplotlib",)

# module -> what importing it must not load
CASES = {
    "envs": RUN_LAYER + PLOTTING,
    "jaxrl_icl.config": RUN_LAYER + PLOTTING,
    "jaxrl_icl.trainer": RUN_LAYER + PLOTTING,
    "envs.spaces": RUN_LAYER + PLOTTING,
    "envs.running_moments": RUN_LAYER + PLOTTING,
    "envs.wrappers": RUN_LAYER + PLOTTING,
    "jaxrl_icl.rl.ppo": RUN_LAYER + PLOTTING,
    "jaxrl_icl.rl.dqn": RUN_LAYER + PLOTTING,
    "jaxrl_icl.rl.q_learning": RUN_LAYER + PLOTTING,
    "jaxrl_icl.rl": RUN_LAYER + PLOTTING,
    "jaxrl_icl.icl": RUN_LAYER,
    "jaxrl_icl.distributional": RUN_LAYER,
    "jaxrl_icl.curriculum": RUN_LAYER,
    "jaxrl_icl.offline": RUN_LAYER + PLOTTING + ("minari", "gymnasium"),
}


def _loaded(module: str, forbidden: tuple[str, ...]) -> list[str]:
    code = (
        f"import sys, {module}\n"
        f"forbidden = {forbidden!r}\n"
        "print(','.join(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in forbidden))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


@pytest.mark.parametrize("module", sorted(CASES))
def test_library_import_does_not_load_run_layer(module):
    loaded = _loaded(module, CASES[module])
    assert not loaded, f"importing {module} loaded {loaded[:5]}"


def test_config_module_imports_only_the_standard_library():
    tree = ast.parse(open(jaxrl_icl.config.__file__).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
