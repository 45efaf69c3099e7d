"""`run(coro)`: asyncio.run for the tests, also where Hail has patched asyncio in this process.

Hail applies nest_asyncio when it starts (the integration tier starts it in
the test process). nest_asyncio's run_until_complete returns as soon as the
task is done, before the callbacks that its end scheduled have run; plain
asyncio.run runs them while it shuts the loop down. jupyter_server's file
manager (behind the guard's contents manager) hands file work to an AnyIO
worker thread, which is not a daemon and stops only in such a callback: left
behind, it keeps the test process from ever exiting. Here the loop turns once
more after the coroutine, so those callbacks run, then the loop is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(asyncio.sleep(0))  # the callbacks the task's end scheduled
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
