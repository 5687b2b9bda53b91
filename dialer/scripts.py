"""The Lua scripts in `dialer/lua/`, registered on a client and run alone or inside pipelines.

Each script is sent as the shared prelude (`_prelude.lua`), any libraries it names (files whose
names start with `_`), then its own body. redis-py's `Script` runs EVALSHA and reloads the
script on NOSCRIPT (Redis restarted, `SCRIPT FLUSH`). Inside a pipeline it cannot: there the
reply is an error in the script's place while the other commands ran, so `run_pipeline` re-runs
exactly the scripts that came back NOSCRIPT, one by one, through `Script` (which loads them).
redis-py's own pipeline support for scripts checks `SCRIPT EXISTS` before every execute, one
round trip more than the dial path can afford.

Scripts compute some key names from a prefix (job state index sets), so they assume one Redis
(or a Sentinel-managed primary), not Redis Cluster.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


@cache
def source(name: str, libraries: tuple[str, ...] = ()) -> str:
    """The prelude, the named libraries, then the script `name` (all from dialer/lua)."""
    folder = resources.files("dialer") / "lua"
    parts = [(folder / "_prelude.lua").read_text(encoding="utf-8")]
    parts += [(folder / f"{lib}.lua").read_text(encoding="utf-8") for lib in libraries]
    parts.append((folder / f"{name}.lua").read_text(encoding="utf-8"))
    return "\n".join(parts)


_registered: weakref.WeakKeyDictionary[redis.Redis, dict[tuple[str, tuple[str, ...]], Script]] = (
    weakref.WeakKeyDictionary()
)


def reply_text(value: Any) -> str:
    """A Redis reply as text, whether or not the client decodes responses ("" for nil)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def register(client: redis.Redis, name: str, libraries: tuple[str, ...] = ()) -> Script:
    """The script `name` on `client`, registered once per client (a dial makes several objects
    that need scripts; hashing the source for each cost as much as a Redis command)."""
    scripts = _registered.setdefault(client, {})
    key = (name, libraries)
    script = scripts.get(key)
    if script is None:
        script = scripts[key] = client.register_script(source(name, libraries))
    return script


@dataclass(frozen=True)
class ScriptCall:
    """One script invocation queued in a pipeline."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Any]


def queue_script(pipe: Any, call: ScriptCall) -> None:
    pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)


def run_pipeline(
    client: redis.Redis, steps: Sequence[ScriptCall | tuple[str, tuple[Any, ...]]]
) -> list[Any]:
    """Send `steps` in one round trip (no MULTI: each step is atomic on its own) and return
    their replies in order. A step is a `ScriptCall` or `(command_name, args)`. The first error
    reply is raised after every step ran, except NOSCRIPT, which is healed as above."""
    pipe = client.pipeline(transaction=False)
    for step in steps:
        if isinstance(step, ScriptCall):
            queue_script(pipe, step)
        else:
            command, args = step
            pipe.execute_command(command, *args)  # type: ignore[no-untyped-call]
    replies: list[Any] = pipe.execute(raise_on_error=False)
    for i, (step, reply) in enumerate(zip(steps, replies, strict=True)):
        if isinstance(reply, NoScriptError) and isinstance(step, ScriptCall):
            replies[i] = step.script(keys=list(step.keys), args=list(step.args), client=client)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
