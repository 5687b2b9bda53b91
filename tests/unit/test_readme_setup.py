"""The README's set-up section says what is true: exactly two commands (the second is what
.ci/run installs and runs), the Python versions the package declares, the venv package Debian
and Ubuntu lack, and every gate .ci/run adds besides the tests."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SETUP = README[README.index("## Set up") : README.index("\n## ", README.index("## Set up") + 1)]
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_exactly_two_setup_commands_and_the_second_is_what_ci_runs() -> None:
    commands = re.findall(r"```bash\n(.*?)\n```", SETUP, re.DOTALL)
    assert len(commands) == 2, commands
    assert all(c.startswith("python3 -m venv .venv && ") and "\n" not in c for c in commands)
    assert commands[0].endswith(".venv/bin/dialer demo")
    extras = re.search(r"pip install -q -e '(\.\[[a-z,]+\])'", commands[1])
    assert extras and f"pip install -q -e '{extras.group(1)}'" in CI


def test_the_python_versions_named_are_the_declared_ones() -> None:
    named = set(re.findall(r"\b3\.1[0-9]\b", SETUP.split("Elsewhere")[0]))
    classifiers = PYPROJECT["project"]["classifiers"]
    declared = {c.rsplit(":: ", 1)[1] for c in classifiers if c.startswith("Programming Lang")}
    assert named == declared == {"3.11", "3.12"}
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    assert "python3-venv" in SETUP


def test_every_ci_gate_is_mentioned() -> None:
    gates = re.findall(r'"\$venv/bin/(ruff|mypy)" (.+)', CI)
    assert {g[0] for g in gates} == {"ruff", "mypy"}
    for tool, args in gates:
        assert f"`{tool} {args.strip()}`" in SETUP, tool
