"""The local stack's supervisor (dialer.local_stack): a worker that dies on its own is replaced,
one killed on purpose is not. Real worker processes on the test Redis."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from dialer import local_stack
from dialer.embedded_redis import EmbeddedRedis, RedisAlreadyRunning, running_server
from dialer.local_stack import LocalStack


def _wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_a_crashed_worker_is_replaced_and_a_killed_one_is_not(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    with LocalStack(tmp_path, redis_url=redis_url, workers=1, concurrency=1, beat=False) as stack:
        stack.wait_ready()
        first = stack.workers_alive()[0]
        # Past the start-up grace, then die the way kombu's "Unrecoverable error" exits do:
        # not through the stack.
        time.sleep(max(0.0, first.started_at + local_stack.MIN_UPTIME_S + 0.2 - time.monotonic()))
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait()

        assert _wait_for(lambda: len(stack.restarts) == 1 and stack.workers_alive(), 10.0)
        replacement = stack.workers_alive()[0]
        assert replacement is not first
        assert first.name in stack.restarts[0] and replacement.name in stack.restarts[0]
        stack.wait_ready()  # the replacement consumes: it answers a ping over the broker

        stack.kill_worker(replacement)  # a deliberate kill (fault injection): left dead
        time.sleep(local_stack.SUPERVISE_EVERY_S * 3)
        assert stack.workers_alive() == []
        assert len(stack.restarts) == 1


def test_a_worker_that_fails_at_start_is_not_restarted(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    stack = LocalStack(tmp_path, redis_url=redis_url, workers=1, beat=False, queues="results")
    stack.worker_options = lambda: ["--no-such-option"]  # type: ignore[method-assign]
    with stack:
        assert _wait_for(lambda: not stack.workers_alive(), 30.0)
        time.sleep(local_stack.SUPERVISE_EVERY_S * 3)
        assert stack.restarts == []
        assert len(stack.children) == 1


def test_a_relative_data_dir_works_from_any_working_folder(
    redis_url: str, r: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dialer demo` run outside the project folder: the children (which run in the project
    folder) must get absolute paths, or the beat cannot open its schedule file."""
    monkeypatch.chdir(tmp_path)
    with LocalStack(Path("stack"), redis_url=redis_url, workers=1, concurrency=1) as stack:
        stack.wait_ready()
        assert stack.data_dir == tmp_path / "stack"
        time.sleep(local_stack.MIN_UPTIME_S)
        assert all(child.alive() for child in stack.children), stack.restarts
        assert (tmp_path / "stack" / "logs" / "beat.log").exists()


def test_one_redis_server_per_data_folder_and_a_crashed_ones_files_are_cleaned_up(
    tmp_path: Path,
) -> None:
    """`<dir>/url` and `<dir>/pid` name the live server; a second one on the same folder (the
    same append-only file) is refused; files a crashed server left are removed at the next
    start."""
    first = EmbeddedRedis(tmp_path, appendonly=True).start()
    try:
        assert running_server(tmp_path) == first.url
        assert (tmp_path / "pid").read_text().strip() == str(first.pid)
        with pytest.raises(RedisAlreadyRunning):
            EmbeddedRedis(tmp_path, appendonly=True).start()
        first.kill()  # a crash: no clean-up
        assert (tmp_path / "url").exists() and running_server(tmp_path) is None
        second = EmbeddedRedis(tmp_path, appendonly=True).start()
        try:
            assert running_server(tmp_path) == second.url != first.url
            assert (tmp_path / "pid").read_text().strip() == str(second.pid)
        finally:
            second.stop()
        assert not (tmp_path / "url").exists() and not (tmp_path / "pid").exists()
    finally:
        first.stop()
