"""Run the LiveKit stand-in as its own process (for multi-process tests, benches and demos).

    python -m dialer.livekit_standin --port 7880 --scenarios scenarios.json \
        --api-key devkey --api-secret <secret>

Prints one line `LIVEKIT_URL=http://host:port` on stdout once it serves (port 0 picks a free
one, so a parent process reads the URL from that line), then serves until SIGINT / SIGTERM.
The scenario file is `{"default": "answer", "numbers": {"+32...": ["busy", "answer"]},
"hangup_after_s": 5}` (or a flat `{number: scenario}` mapping). Another process can inspect
and steer it through `GET /_standin/dials|requests|stats|rooms|dispatches|scenarios`,
`POST /_standin/scenarios` and `POST /_standin/hangup`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from dialer.livekit_standin.scenarios import ScenarioBook, load_json, parse_obj
from dialer.livekit_standin.server import LiveKitStandIn


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dialer.livekit_standin",
        description="Local stand-in for LiveKit's Twirp API with scripted call outcomes.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7880, help="0 picks a free port")
    parser.add_argument("--scenarios", help="JSON file: number -> scenario (or list)")
    parser.add_argument("--default-scenario", default=None, help="overrides the file's default")
    parser.add_argument("--api-key", default=os.environ.get("LIVEKIT_API_KEY", "devkey"))
    parser.add_argument(
        "--api-secret",
        default=os.environ.get("LIVEKIT_API_SECRET"),
        help="default: $LIVEKIT_API_SECRET, else a random secret printed at start-up",
    )
    parser.add_argument("--ring-seconds", type=float, default=None, help="no_answer ring time")
    parser.add_argument("--slow-seconds", type=float, default=3.0)
    parser.add_argument("--hang-seconds", type=float, default=300.0)
    parser.add_argument("--hangup-after", type=float, default=None, help="end answered calls")
    parser.add_argument("--log-level", default="INFO")
    return parser


def _book(path: str | None, default: str | None) -> tuple[ScenarioBook, Any]:
    """The scenario book and the file's `hangup_after_s` (None when absent)."""
    if path is None:
        return ScenarioBook(default=default or "answer"), None
    doc = load_json(path)
    numbers, file_default = parse_obj(doc)
    hangup = doc.get("hangup_after_s") if ("numbers" in doc or "default" in doc) else None
    return ScenarioBook(numbers, default or file_default or "answer"), hangup


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        book, file_hangup = _book(args.scenarios, args.default_scenario)
    except (OSError, ValueError) as exc:
        print(f"cannot load scenarios: {exc}", file=sys.stderr)
        return 2
    standin = LiveKitStandIn(
        book,
        api_key=args.api_key,
        api_secret=args.api_secret,
        host=args.host,
        port=args.port,
        ring_seconds=args.ring_seconds,
        slow_seconds=args.slow_seconds,
        hang_seconds=args.hang_seconds,
        hangup_after_s=args.hangup_after if args.hangup_after is not None else file_hangup,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    standin.start()
    if args.api_secret is None:
        print(f"LIVEKIT_API_SECRET={standin.api_secret}", flush=True)
    print(f"LIVEKIT_URL={standin.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
