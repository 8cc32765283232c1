"""The processes' event loop (`AUTOMATION_EVENT_LOOP`): uvloop by default, asyncio's on request."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from automation import event_loop
from shared.settings import Settings


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_the_default_is_uvloop_and_a_process_runs_on_it() -> None:
    assert Settings().event_loop == "uvloop"
    assert isinstance(event_loop.run(running_loop(), "uvloop"), uvloop.Loop)


def test_asyncio_runs_on_the_standard_library_loop() -> None:
    loop = event_loop.run(running_loop(), "asyncio")
    assert not isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.BaseEventLoop)


def test_without_uvloop_installed_the_process_still_runs(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # an import of it now raises ImportError
    loop = event_loop.run(running_loop(), "uvloop")
    assert type(loop).__module__.startswith("asyncio")
    assert "uvloop is not installed" in caplog.text


def test_an_unknown_loop_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOMATION_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings()
