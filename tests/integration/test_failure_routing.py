"""Failures inside handlers take the failure middleware of the real subscribers: a transient error is
retried through the retry exchange, a bad message is dead-lettered at once with its reason, and when
the attempts run out the message is dead-lettered and its run failed. The end-to-end tests run the
same path on RabbitMQ, with the real delays."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from ai.base import AIError, TransientAIError
from shared.events import ProcessBatch, StartRun
from shared.models import AutomationRun, RunLogLine
from shared.topology import ATTEMPT_HEADER
from tests.support import Bus, UnexpectedFailure


class FailingClustering:
    """The session's provider, whose clustering raises `error` the first `times` calls (every call: None)."""

    def __init__(self, provider: Any, error: Exception, times: int | None = None) -> None:
        self.provider, self.error, self.times = provider, error, times

    def __getattr__(self, name: str) -> Any:
        return getattr(self.provider, name)

    async def cluster_keywords(self, keywords: Any, existing: Any) -> Any:
        if self.times is None or self.times > 0:
            self.times = None if self.times is None else self.times - 1
            raise self.error
        return await self.provider.cluster_keywords(keywords, existing)


async def run_and_log(deps, site_id: int) -> tuple[AutomationRun, list[str]]:
    async with deps.sessions() as session:
        run = await session.scalar(select(AutomationRun).where(AutomationRun.site_id == site_id))
        lines = (await session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run.id))).all()
    return run, list(lines)


async def test_a_transient_failure_is_retried_and_the_run_completes(deps, make_site):
    site = await make_site(keywords=8)
    bus = Bus(replace(deps, provider=FailingClustering(deps.provider, TransientAIError("rate limited"), times=1)))
    await bus.send(StartRun(site_id=site.id))
    await bus.pump(allow_failures=True)

    [retry] = bus.retried
    assert retry.key == "stage.1.batch" and retry.headers[ATTEMPT_HEADER] == 2
    assert bus.dead_lettered == []
    run, lines = await run_and_log(deps, site.id)
    assert run.status == "completed"
    assert any("attempt 1 failed (TransientAIError: rate limited); retrying in" in line for line in lines)


async def test_a_handler_failure_the_test_did_not_expect_fails_the_pump(deps, make_site):
    site = await make_site(keywords=8)
    bus = Bus(replace(deps, provider=FailingClustering(deps.provider, TransientAIError("rate limited"), times=1)))
    await bus.send(StartRun(site_id=site.id))
    with pytest.raises(UnexpectedFailure, match=r"stage\.1\.batch failed in .*\.stage1\.batch: TransientAIError"):
        await bus.pump()
    assert [f.key for f in bus.retried] == ["stage.1.batch"]  # routed all the same
    await bus.pump()  # the retry comes back and succeeds
    assert (await run_and_log(deps, site.id))[0].status == "completed"


async def test_when_the_attempts_run_out_the_batch_is_dead_lettered_and_its_run_failed(deps, make_site):
    site = await make_site(keywords=8)
    bus = Bus(replace(deps, provider=FailingClustering(deps.provider, TransientAIError("still down"))))
    await bus.send(StartRun(site_id=site.id))
    await bus.pump(allow_failures=True)

    attempts = deps.settings.max_attempts
    assert [f.headers[ATTEMPT_HEADER] for f in bus.retried] == list(range(2, attempts + 1))
    [dead] = bus.dead_lettered
    assert dead.key == "stage.1.batch"
    assert dead.reason == f"gave up after {attempts} attempts: TransientAIError: still down"
    assert dead.headers["x-original-routing-key"] == "stage.1.batch"
    run, lines = await run_and_log(deps, site.id)
    assert run.status == "failed"
    assert run.error_message == f"stage 1 batch {dead.payload['batch_id']} failed: {dead.reason}"
    assert any(line.startswith("Run failed: stage 1 batch") for line in lines)
    assert [p["run_id"] for p in bus.keys("run.failed")] == [run.run_id]


async def test_a_final_ai_error_fails_the_run_without_retrying(deps, make_site):
    site = await make_site(keywords=8)
    bus = Bus(replace(deps, provider=FailingClustering(deps.provider, AIError("content policy"))))
    await bus.send(StartRun(site_id=site.id))
    await bus.pump(allow_failures=True)

    assert bus.retried == []
    [dead] = bus.dead_lettered
    assert dead.reason == "not retryable: AIError: content policy"
    assert (await run_and_log(deps, site.id))[0].status == "failed"


async def test_a_batch_on_another_stages_queue_is_poison(deps):
    bus = Bus(deps)
    stray = ProcessBatch.for_stage("run_stray", 1, 1).model_dump(mode="json")
    await bus.deliver("stage.2.batch", stray, allow_failures=True)  # routed to stage 2's batch queue
    [dead] = bus.dead_lettered
    assert dead.reason == "PoisonMessage: stage.1.batch does not belong to stage 2" and bus.retried == []


async def test_a_malformed_command_is_dead_lettered_at_once_and_starts_nothing(deps):
    bus = Bus(deps)
    await bus.deliver("run.start", {"type": "run.start", "site_id": -1}, allow_failures=True)
    [dead] = bus.dead_lettered
    assert dead.reason.startswith("schema validation failed: ") and "site_id" in dead.reason
    assert bus.retried == [] and bus.keys("run.rejected") == []
