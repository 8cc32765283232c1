"""Same input, same output: two runs of the same keywords through the real processes, with the
offline provider, give the same idea titles and totals, whatever the consumers' concurrency and the
two runs' interleaving. (A file of its own: a fleet of another module would relay this database's
outbox too while its module runs.)"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from shared.models import ContentIdea
from tests.e2e.conftest import fleet_with
from tests.e2e.test_resilience import deps_for, start_and_wait_for_id, wait_status
from tests.support import site_outcome

pytestmark = pytest.mark.e2e
TOTALS = ("clusters", "ideas", "tasks", "content", "content_in_review", "images_generated", "credits_used")


async def test_two_runs_of_the_same_keywords_give_the_same_ideas_and_totals(settings, sessions, output_dir,
                                                                            make_site):
    """With the offline provider, whatever the consumers' concurrency and the two runs' interleaving."""
    sites = [await make_site(keywords=60, stage_1_batch_size=10, stage_2_batch_size=2) for _ in range(2)]
    media = output_dir / f"media-same-{uuid.uuid4().hex[:6]}"
    async with fleet_with(settings, output_dir, ai_provider="local", media_dir=media) as (_fleet, own):
        run_ids = await asyncio.gather(*(start_and_wait_for_id(own, sessions, s.id) for s in sites))
        runs = [await wait_status(sessions, r, "completed", "failed", timeout=240) for r in run_ids]
    assert [r.status for r in runs] == ["completed", "completed"]
    async with sessions() as session:
        titles = [sorted((await session.scalars(select(ContentIdea.title).where(ContentIdea.site_id == s.id))).all())
                  for s in sites]
    outcomes = [await site_outcome(deps_for(settings, sessions), s.id) for s in sites]
    assert titles[0] == titles[1]
    assert {k: outcomes[0][k] for k in TOTALS} == {k: outcomes[1][k] for k in TOTALS}
