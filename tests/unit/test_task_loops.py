"""Dial tasks run their coroutines on a long-lived event loop per thread, so a worker with a
thread pool (`-P threads`) runs dials side by side and each thread keeps its HTTP session."""

from __future__ import annotations

import asyncio
import threading

from tasks.context import run_async


async def current_loop() -> asyncio.AbstractEventLoop:
    await asyncio.sleep(0)
    return asyncio.get_running_loop()


def test_one_loop_per_thread_reused_by_each_call() -> None:
    here = run_async(current_loop())
    assert run_async(current_loop()) is here, "the same loop for every task of a thread"
    seen: list[asyncio.AbstractEventLoop] = []
    threads = [threading.Thread(target=lambda: seen.append(run_async(current_loop())))
               for _ in range(3)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(loop) for loop in seen}) == 3 and here not in seen
