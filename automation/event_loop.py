"""The event loop every long-running process runs on (`AUTOMATION_EVENT_LOOP`).

A consumer's CPU goes mostly to its sockets (RabbitMQ and PostgreSQL) and the loop that drives them,
not to the stage's own code: uvloop does that work in libuv, in C, and asyncpg is written for it.
The standard library's loop stays available for platforms without uvloop (Windows) and to compare.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("automation.event_loop")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the named loop; None is asyncio's default. uvloop missing falls back to
    asyncio with a warning rather than stopping a process that works without it."""
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("AUTOMATION_EVENT_LOOP=uvloop but uvloop is not installed: running on asyncio's loop")
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], loop: str) -> T:
    """`asyncio.run(main)` on the named loop."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)
