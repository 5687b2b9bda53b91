"""A scripted LLM for text-mode agent tests: livekit-agents' `llm.LLM` interface, no network.

Each `chat()` request takes the next scripted `Reply` (text and/or tool calls) in order, so a
test writes down exactly what "the model" does at each turn. A reply can also be a function of
the request (`Callable[[Request], Reply]`) for personas and checks on what the model was shown.
Running out of script answers with an empty reply and is recorded in `overruns`, so a test can
fail with a clear message instead of hanging.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import llm
from livekit.agents.llm import ChatChunk, ChatContext, ChoiceDelta, FunctionToolCall, Tool
from livekit.agents.llm.tool_context import ToolChoice
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Request:
    """What one `chat()` call was given (for assertions)."""

    chat_ctx: ChatContext
    tool_names: tuple[str, ...]
    tool_choice: Any

    @property
    def instructions(self) -> str:
        for item in self.chat_ctx.items:
            if item.type == "message" and item.role in ("system", "developer"):
                return item.text_content or ""
        return ""

    @property
    def last_user_text(self) -> str:
        for item in reversed(self.chat_ctx.items):
            if item.type == "message" and item.role == "user":
                return item.text_content or ""
        return ""


def call(name: str, **arguments: Any) -> Reply:
    """A reply that calls one tool."""
    return Reply(tool_calls=(ToolCall(name, arguments),))


def say(text: str) -> Reply:
    """A reply that only speaks."""
    return Reply(text=text)


Step = Reply | Callable[[Request], Reply]


class ScriptedLLM(llm.LLM[Any]):
    def __init__(self, script: Iterable[Step] = ()) -> None:
        super().__init__()
        self._script: list[Step] = list(script)
        self.requests: list[Request] = []
        self.overruns = 0

    @property
    def model(self) -> str:
        return "scripted"

    @property
    def provider(self) -> str:
        return "tests"

    def extend(self, steps: Iterable[Step]) -> None:
        self._script.extend(steps)

    @property
    def remaining(self) -> int:
        return len(self._script)

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        names = tuple(getattr(t, "id", "") for t in tools or [])
        request = Request(chat_ctx=chat_ctx.copy(), tool_names=names, tool_choice=tool_choice)
        self.requests.append(request)
        if self._script:
            step = self._script.pop(0)
            reply = step(request) if callable(step) else step
        else:
            self.overruns += 1
            reply = Reply()
        return _ScriptedStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            reply=reply,
            index=len(self.requests),
        )


class _ScriptedStream(llm.LLMStream):
    def __init__(
        self,
        llm_: ScriptedLLM,
        *,
        chat_ctx: ChatContext,
        tools: list[Tool],
        conn_options: APIConnectOptions,
        reply: Reply,
        index: int,
    ) -> None:
        super().__init__(llm_, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._reply = reply
        self._index = index

    async def _run(self) -> None:
        calls = [
            FunctionToolCall(
                name=c.name,
                arguments=json.dumps(c.arguments, ensure_ascii=False),
                call_id=f"call_{self._index}_{i}",
            )
            for i, c in enumerate(self._reply.tool_calls)
        ]
        self._event_ch.send_nowait(
            ChatChunk(
                id=f"scripted-{self._index}",
                delta=ChoiceDelta(
                    role="assistant", content=self._reply.text or None, tool_calls=calls
                ),
            )
        )
