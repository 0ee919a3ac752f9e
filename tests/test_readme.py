"""The README's set-up commands and code examples stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block is not None and README.index(first_block.group(0)) < README.index("\n## ")
    commands = first_block.group(1).strip().splitlines()
    assert len(commands) == 2
    install, *steps = commands[1].split(" && ")
    ci = (ROOT / ".ci" / "run").read_text()
    for step in steps:  # the lint and the test command, in order
        assert step in ci, f".ci/run must run the README's step {step!r}"
    assert [ci.index(step) for step in steps] == sorted(ci.index(step) for step in steps)
    assert install.replace("pip install", "pip install -q") in ci


@pytest.mark.slow  # runs every README example (training loops included): about a minute of the default suite
def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README has no python examples"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
