"""Library packages do not load the run layer (CLI, orbax, matplotlib).

The imports run in a fresh interpreter (one for all modules, in an order that cannot hide a
leak), so modules that other tests loaded cannot hide one either.
"""

import ast
import json
import subprocess
import sys

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


# One fresh interpreter imports every module, strictest forbidden set first, and records what
# each import newly loaded. The forbidden sets form a chain (each one a superset of every later
# one), so a forbidden module is never hidden by an earlier import: whoever loaded it first was
# itself forbidden to, and is reported.
_IMPORT_ALL = """
import importlib, json, sys
loaded = {}
for module in sys.argv[1:]:
    before = set(sys.modules)
    importlib.import_module(module)
    loaded[module] = sorted(set(sys.modules) - before)
print(json.dumps(loaded))
"""


def _import_order() -> list[str]:
    order = sorted(CASES, key=lambda m: (-len(CASES[m]), m))
    for earlier, later in zip(order, order[1:]):
        assert set(CASES[later]) <= set(CASES[earlier]), "forbidden sets must form a chain"
    return order


def test_library_imports_do_not_load_the_run_layer():
    """Every module in ``CASES``, in one interpreter (a fixture per pytest worker would start one
    per worker): the forbidden modules each import newly loaded, all offenders reported."""
    out = subprocess.run([sys.executable, "-c", _IMPORT_ALL, *_import_order()], capture_output=True, text=True,
                         check=True)
    newly_loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(newly_loaded) == sorted(CASES)
    leaks = {module: [m for m in newly_loaded[module] if any(m == f or m.startswith(f + ".") for f in forbidden)][:5]
             for module, forbidden in CASES.items()}
    assert not any(leaks.values()), {m: leaked for m, leaked in leaks.items() if leaked}


def test_config_module_imports_only_the_standard_library():
    tree = ast.parse(open(jaxrl_icl.config.__file__).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
