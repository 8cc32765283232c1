"""A whole run with the `openai` provider pointed at the local stub, against the real database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.openai_provider import OpenAIProvider
from consumers.deps import Deps
from shared.automation_logger import AutomationLogger
from shared.events import StartRun
from shared.models import AutomationRun, Content
from shared.outbox import NoRelay
from shared.settings import Settings
from tests.openai_stub import CHAT, IMAGES, Fault, OpenAIStub
from tests.support import Bus, site_outcome

QUICK = {"stage_4_batch_size": 4, "stage_5_batch_size": 4, "stage_6_batch_size": 8}


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


@pytest.fixture
async def openai_deps(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                      stub: OpenAIStub) -> AsyncIterator[Deps]:
    """The `deps` fixture, but with the OpenAI provider talking to the stub."""
    stub_settings = settings.model_copy(update={"ai_provider": "openai", "openai_base_url": stub.base_url,
                                                "openai_api_key": "test", "openai_timeout_seconds": 10.0})
    provider = OpenAIProvider(stub_settings)
    yield Deps(settings=stub_settings, sessions=sessions, logger=AutomationLogger(stub_settings.log_dir),
               provider=provider, relay=NoRelay(), worker_id="pytest-openai")
    await provider.aclose()


async def test_full_run_with_openai_provider(openai_deps: Deps, make_site, stub: OpenAIStub) -> None:
    site = await make_site(keywords=16, **QUICK)
    stub.inject(CHAT, Fault("server_error"), count=2)  # absorbed by the provider's own retries
    stub.inject(IMAGES, Fault("rate_limit", retry_after="0.2"))
    bus = Bus(openai_deps)
    await bus.send(StartRun(site_id=site.id))
    await bus.pump()

    async with openai_deps.sessions() as session:
        run = (await session.scalars(select(AutomationRun).where(AutomationRun.site_id == site.id))).one()
        contents = (await session.scalars(select(Content).where(Content.site_id == site.id))).all()
    assert run.status == "completed" and run.current_stage == 7
    outcome = await site_outcome(openai_deps, site.id)
    assert outcome["keywords_clustered"] == 16 and outcome["keywords_eligible_left"] == 0
    assert outcome["content"] == outcome["tasks"] == outcome["ideas"] > 0
    assert outcome["clusters"] <= outcome["ideas"] <= 3 * outcome["clusters"]  # one per keyword, at most three
    assert outcome["tasks_without_one_content"] == 0 and outcome["review_with_pending_images"] == 0
    assert outcome["content_in_review"] == outcome["content"]
    assert outcome["images_generated"] == outcome["images"] == 5 * outcome["content"]
    assert outcome["credits_used"] == outcome["ledger_charged"] == 100_000 - outcome["balance"] > 0
    assert all(len(c.meta_title) <= 60 and c.word_count > 2000 and c.html.startswith("<h1>") for c in contents)
    assert len(stub.requests(IMAGES)) == outcome["images"] + 1
    assert len(stub.requests(CHAT)) >= outcome["content"] * 2
