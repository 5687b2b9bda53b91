"""The container files name only entrypoints the package really has.

Every command in Dockerfile.worker, Dockerfile.agent and docker-compose.yml (CMD, ENTRYPOINT,
RUN, compose `command` / `entrypoint` / healthchecks) is resolved: `dialer ...` against the Typer
app (commands and options), `python -m X ...` against importable modules (and the agent's own
sub-commands), `python -c` against the modules it imports, `celery -A X` against the Celery app.
Anything else must be a known system tool, so a new kind of entrypoint cannot slip past.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from dialer.cli import app as cli_app

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ("Dockerfile.worker", "Dockerfile.agent")
SYSTEM_TOOLS = {
    "apt-get", "rm", "groupadd", "useradd", "mkdir", "pip", "redis-server", "redis-cli",
}  # fmt: skip


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    found: list[tuple[str, str]] = []
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        found.append((keyword.upper(), rest.strip()))
        current = ""
    return found


def _split_shell(command: str) -> list[list[str]]:
    parts = re.split(r"\s*(?:&&|\|\||;)\s*", command)
    return [shlex.split(part) for part in parts if part.strip()]


def dockerfile_commands(path: Path) -> list[list[str]]:
    commands: list[list[str]] = []
    for keyword, rest in instructions(path):
        if keyword in ("CMD", "ENTRYPOINT"):
            if rest.startswith("["):
                commands.append(json.loads(rest))
            else:
                commands.extend(_split_shell(rest))
        elif keyword == "RUN":
            commands.extend(_split_shell(rest))
    return commands


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    return data


def compose_commands() -> list[list[str]]:
    commands: list[list[str]] = []
    for service in compose()["services"].values():
        for key in ("entrypoint", "command"):
            value = service.get(key)
            if isinstance(value, list):
                commands.append([str(v) for v in value])
            elif isinstance(value, str):
                commands.extend(_split_shell(value))
        test = service.get("healthcheck", {}).get("test")
        if isinstance(test, list) and test and test[0] == "CMD":
            commands.append([str(v) for v in test[1:]])
        elif isinstance(test, list) and test and test[0] == "CMD-SHELL":
            commands.extend(_split_shell(str(test[1])))
    return commands


def all_commands() -> list[tuple[str, list[str]]]:
    named = [(name, c) for name in DOCKERFILES for c in dockerfile_commands(ROOT / name)]
    return named + [("docker-compose.yml", c) for c in compose_commands()]


# -- resolving one command ---------------------------------------------------------------------


def check_dialer(argv: list[str]) -> None:
    # Typer vendors its own click: groups are recognised by their `commands`, not their class.
    command: Any = typer.main.get_command(cli_app)
    args = argv[1:]
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        name = args.pop(0)
        assert name in command.commands, f"`dialer {name}` does not exist"
        command = command.commands[name]
    assert not hasattr(command, "commands"), f"`{' '.join(argv)}` names no command"
    if command.name == "agent":
        check_agent_args(args)
        return
    options = {opt for param in command.params for opt in param.opts}
    for arg in args:
        if arg.startswith("-"):
            assert arg.split("=", 1)[0] in options, f"`{' '.join(argv)}`: no option {arg}"


def check_agent_args(args: list[str]) -> None:
    from agent.worker import COMMANDS

    assert args and args[0] in COMMANDS, f"agent command {args[:1]} not in {COMMANDS}"


def check_python(argv: list[str]) -> None:
    if argv[1] == "-m":
        module = argv[2]
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"python -m {module}: no such module"
        if spec.submodule_search_locations is not None:  # a package needs a __main__
            assert importlib.util.find_spec(f"{module}.__main__") is not None
        if module == "agent":
            check_agent_args(argv[3:])
        elif module == "dialer.cli":
            check_dialer(["dialer", *argv[3:]])
    elif argv[1] == "-c":
        tree = ast.parse(argv[2])
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert importlib.util.find_spec(name) is not None, f"python -c imports {name}"
    else:
        pytest.fail(f"unexpected python invocation {argv}")


def check_celery(argv: list[str]) -> None:
    target = argv[argv.index("-A") + 1]
    module = importlib.import_module(target)
    assert hasattr(module, "app"), f"celery -A {target}: no `app` in it"


def check_pip(argv: list[str]) -> None:
    if argv[1] != "install":
        return
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"][
        "optional-dependencies"
    ]
    for target in argv[2:]:
        if target.startswith("."):
            wanted = re.findall(r"\[([^\]]+)\]", target)
            for extra in wanted[0].split(",") if wanted else []:
                assert extra.strip() in extras, f"pip install {target}: no extra {extra}"


def check(argv: list[str]) -> None:
    program = argv[0]
    if program == "dialer":
        check_dialer(argv)
    elif program in ("python", "python3"):
        check_python(argv)
    elif program == "celery":
        check_celery(argv)
    elif program == "pip":
        check_pip(argv)
    else:
        assert program in SYSTEM_TOOLS, f"unknown entrypoint {program!r}: teach this test"


@pytest.mark.parametrize(
    ("origin", "argv"), all_commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v)
)
def test_every_named_entrypoint_exists(origin: str, argv: list[str]) -> None:
    check(argv)


def test_the_checker_catches_a_wrong_entrypoint() -> None:
    for wrong in (
        ["dialer", "wokrer"],
        ["dialer", "api", "--hots", "0.0.0.0"],
        ["python", "-m", "agent", "serve"],
        ["python", "-m", "dialer.nothing"],
        ["python", "-c", "import dialer.nothing"],
        ["gunicorn", "app"],
    ):
        with pytest.raises(AssertionError):
            check(wrong)


def test_the_console_script_exists() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["scripts"]
    module, _, attr = scripts["dialer"].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_are_slim_non_root_and_copy_what_exists(name: str) -> None:
    steps = instructions(ROOT / name)
    base = [rest for keyword, rest in steps if keyword == "FROM"]
    assert base and all("slim" in b for b in base), base
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    for keyword, rest in steps:
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _dest = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
                assert not _ignored(source), f"{name}: COPY {source} is in .dockerignore"


def _ignored(source: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return source.rstrip("/") in patterns


def test_the_agent_image_fetches_its_model_files_at_build_time() -> None:
    runs = [c for c in dockerfile_commands(ROOT / "Dockerfile.agent")]
    assert ["python", "-m", "agent", "download-files"] in runs


def test_compose_runs_redis_with_aof_and_every_part() -> None:
    services = compose()["services"]
    assert {"redis", "worker", "beat", "api", "agent"} <= set(services)
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (ROOT / build.get("dockerfile", "Dockerfile")).exists(), name
        if name != "redis":
            assert service["environment"]["REDIS_URL"].startswith("redis://redis:"), name
    beat = services["beat"]
    assert beat["command"][:2] == ["dialer", "beat"]
