"""The README's offline install on a GPU node, simulated: a node that has JAX but not gymnax & co.

``tools/wheelhouse.sh`` builds the wheelhouse (a real ``pip download``: it needs the package
index, hence slow). The "node" is a fresh venv that sees this machine's site-packages through a
view without the wheelhouse's packages, Brax, MuJoCo, rlax, distrax, torch and this project (as
a node with only JAX, flax, optax, chex, orbax, h5py and matplotlib preinstalled). There the
README's two commands install with ``--no-index`` (nothing from the network), and the
pure-JAX benchmark suites run without Brax or MuJoCo.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# distributions a bare JAX node does not have: the wheelhouse's, Brax's and the other heavy ones
ABSENT = ("gymnax", "gymnasium", "cloudpickle", "farama-notifications", "seaborn", "pandas", "six", "tqdm",
          "scikit-learn", "joblib", "narwhals", "threadpoolctl", "brax", "mujoco", "mujoco-mjx", "rlax", "distrax",
          "torch", "jaxrl-icl")


def _wheelhouse_packages() -> list[str]:
    """The ``name==version`` pins of tools/wheelhouse.sh."""
    return re.findall(r"([A-Za-z0-9_.-]+)==[0-9][^\s)]*", (ROOT / "tools" / "wheelhouse.sh").read_text())


def _hidden_entries() -> set[str]:
    """Top-level site-packages entries (packages, modules, dist-infos, .pth) of the ABSENT distributions."""
    hidden = set()
    for name in ABSENT:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        hidden |= {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")}
    return hidden


def _node_view(path: Path) -> Path:
    """A directory of links to this machine's site-packages entries, less the hidden ones."""
    path.mkdir()
    hidden = _hidden_entries()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name not in hidden and not entry.name.startswith(("__editable__", "_jaxrl_icl")):
            (path / entry.name).symlink_to(entry)
    return path


def _sh(cmd: list[str], **kwargs) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_wheelhouse_lists_gymnax_dependencies_the_node_lacks():
    pins = {p.lower() for p in _wheelhouse_packages()}
    # gymnax's declared requirements beyond what the node has (jax, flax, matplotlib), transitively
    assert {"gymnax", "gymnasium", "seaborn", "pandas", "cloudpickle", "farama-notifications", "six"} <= pins
    assert not pins & {"brax", "mujoco", "mujoco-mjx", "rlax", "distrax", "jax", "jaxlib", "flax"}
    readme = (ROOT / "README.md").read_text()
    assert all(p in readme for p in ("gymnax", "gymnasium", "seaborn", "pandas", "farama-notifications"))


@pytest.mark.slow
def test_offline_install_on_a_jax_only_node(tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    _sh(["bash", str(ROOT / "tools" / "wheelhouse.sh"), str(wheelhouse), version])
    wheels = sorted(wheelhouse.glob("*.whl"))
    assert len(wheels) == len(_wheelhouse_packages()) and list((wheelhouse / "build").glob("setuptools-*.whl"))

    venv = tmp_path / "node"
    _sh([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    site = Path(_sh([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (site / "node.pth").write_text(f"import site; site.addsitedir({str(_node_view(tmp_path / 'view'))!r})\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    absent = _sh([python, "-c", "import importlib.util as u; print([m for m in ('gymnax', 'brax', 'mujoco', "
                  "'jaxrl_icl') if u.find_spec(m)])"], env=env, cwd=tmp_path)
    assert absent.strip() == "[]"  # the simulated node: JAX without gymnax, Brax or this project

    # the README's commands, with no package index
    _sh([python, "-m", "pip", "install", "--no-index", "--no-deps", *map(str, wheels)], env=env)
    _sh([python, "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse / "build"), "--no-deps",
         "-e", str(ROOT)], env=env, cwd=tmp_path)

    assert "--num-envs" in _sh([python, "-m", "experiments.bench", "envs", "--help"], env=env, cwd=tmp_path)
    run = tmp_path / "bench"
    code = ("import sys\nfrom experiments import bench\n"
            f"bench.main(['all', '--suites', 'envs', 'curriculum', '--run-dir', {str(run)!r}, "
            "'--envs.num-envs', '4', '--envs.num-steps', '5', '--envs.repeats', '1', '--curriculum.num-seeds', '1', "
            "'--curriculum.num-updates', '8', '--curriculum.fit-rate', '8', '--curriculum.max-k', '2', "
            "'--curriculum.repeats', '1'])\n"
            "print('LOADED', [m for m in ('brax', 'mujoco') if m in sys.modules])")
    out = _sh([python, "-c", code], env=env, cwd=tmp_path)
    assert out.rsplit("LOADED", 1)[1].strip() == "[]"
    rows = json.loads((run / "bench.json").read_text())
    assert {r["suite"] for r in rows} == {"envs", "curriculum"}
    assert all(r["ours"] is not None for r in rows)  # scikit-learn came from the wheelhouse: nothing skipped


def test_brax_env_without_brax_names_the_extra(monkeypatch):
    import envs

    monkeypatch.setitem(sys.modules, "brax", None)  # as on a node without Brax
    monkeypatch.delitem(sys.modules, "envs.brax_adapter", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"make\('brax:hopper'\): Brax environments need brax .*\[brax\]"):
        envs.make("brax:hopper")
    assert envs.make("darkroom-9x9")[0] is not None  # the pure-JAX environments do not need it
