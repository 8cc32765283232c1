"""Nothing to do, no run: a start with nothing for any stage is refused with the counts, by the API
(409) and by run control (`run.rejected`), and a run's second start after it processed everything too."""

from __future__ import annotations

from sqlalchemy import func, select

from shared.api_keys import create_api_key
from shared.events import StartRun
from shared.models import AutomationRun
from tests.support import Bus

BASE = "/api/v1/automation"
ZERO = {"new keywords": 0, "clusters without ideas": 0, "new ideas": 0, "queued tasks": 0,
        "drafts without images": 0, "pending images": 0}


async def runs_of(deps, site_id: int) -> int:
    async with deps.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AutomationRun)
                                        .where(AutomationRun.site_id == site_id)) or 0)


async def test_a_site_with_nothing_to_process_gets_no_run(client, deps, make_site):
    site = await make_site(keywords=0)
    async with deps.sessions() as session, session.begin():
        headers = {"X-API-Key": await create_api_key(session, site.account_id)}
    answer = await client.post(f"{BASE}/run_now/", params={"site_id": site.id}, headers=headers)
    assert answer.status_code == 409
    assert answer.json()["detail"].startswith("nothing to process: 0 new keywords")
    assert answer.json()["counts"] == ZERO
    estimate = (await client.get(f"{BASE}/estimate/", params={"site_id": site.id}, headers=headers)).json()
    assert estimate["can_start"] is False and estimate["reason"].startswith("nothing to process")

    bus = Bus(deps)  # a start from the main app or the scheduler, straight to run control
    await bus.send(StartRun(site_id=site.id, trigger="manual"))
    await bus.pump()
    [rejected] = bus.keys("run.rejected")
    assert rejected["reason"].startswith("nothing to process") and rejected["counts"] == ZERO
    assert await runs_of(deps, site.id) == 0


async def test_a_second_start_after_everything_was_processed_is_refused(client, deps, make_site):
    site = await make_site(keywords=8, synthetic=True)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    await bus.pump()
    assert await runs_of(deps, site.id) == 1
    await bus.send(StartRun(site_id=site.id))
    await bus.pump()
    assert bus.keys("run.rejected")[-1]["reason"].startswith("nothing to process")
    assert await runs_of(deps, site.id) == 1
