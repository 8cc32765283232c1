"""Schedule forms through the API: weekdays, several times a day, days of the month, cron; the next five
run times before and after saving; refusals that name what to change and change nothing."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from shared.api_keys import create_api_key

BASE = "/api/v1/automation"


async def site_and_key(deps, make_site):
    site = await make_site(keywords=4)
    async with deps.sessions() as session, session.begin():
        return site, {"X-API-Key": await create_api_key(session, site.account_id)}


async def test_weekdays_and_several_times_in_the_sites_timezone(client, deps, make_site):
    site, headers = await site_and_key(deps, make_site)
    body = {"is_enabled": True, "frequency": "weekly", "weekdays": ["thu", "mon"],
            "scheduled_times": ["17:30", "09:00"], "timezone": "Europe/Paris"}
    config = (await client.put(f"{BASE}/update_config/", params={"site_id": site.id}, json=body,
                               headers=headers)).json()
    assert config["schedule"] == "Mon, Thu at 09:00 and 17:30 (Europe/Paris)"
    assert config["scheduled_times"] == ["09:00", "17:30"] and config["scheduled_time"] == "09:00"
    local = [datetime.fromisoformat(t).astimezone(ZoneInfo("Europe/Paris")) for t in config["next_runs"]]
    assert len(local) == 5 and all(t.strftime("%a") in ("Mon", "Thu") for t in local)
    assert {t.strftime("%H:%M") for t in local} == {"09:00", "17:30"} and local == sorted(local)
    assert datetime.fromisoformat(config["next_run_at"]) == datetime.fromisoformat(config["next_runs"][0])

    seed_style = (await client.put(f"{BASE}/update_config/", params={"site_id": site.id},
                                   json={"scheduled_time": "06:15"}, headers=headers)).json()
    assert seed_style["scheduled_times"] == ["06:15"] and seed_style["weekdays"] == ["mon", "thu"]


async def test_cron_and_preview_before_saving(client, deps, make_site):
    site, headers = await site_and_key(deps, make_site)
    preview = await client.post(f"{BASE}/schedule_preview/", params={"site_id": site.id},
                                json={"frequency": "cron", "cron": "0 7 * * 1-5"}, headers=headers)
    assert preview.status_code == 200
    days = {datetime.fromisoformat(t).strftime("%a") for t in preview.json()["next_runs"]}
    assert days <= {"Mon", "Tue", "Wed", "Thu", "Fri"} and len(preview.json()["next_runs"]) == 5
    config = (await client.get(f"{BASE}/config/", params={"site_id": site.id}, headers=headers)).json()
    assert config["frequency"] == "daily"  # a preview saves nothing


@pytest.mark.parametrize(("body", "words"), [
    ({"frequency": "cron"}, "needs a cron expression"),
    ({"frequency": "cron", "cron": "*/5 * * * *"}, "15 minutes"),
    ({"frequency": "cron", "cron": "0 9 * * 8"}, "day of week"),
    ({"scheduled_times": ["25:00"]}, "String should match pattern"),
    ({"weekdays": ["someday"]}, "Input should be"),
    ({"month_days": [0]}, "greater than or equal to 1"),
    ({"scheduled_times": []}, "at least 1 item"),
])
async def test_refusals_name_what_to_change_and_change_nothing(client, deps, make_site, body, words):
    site, headers = await site_and_key(deps, make_site)
    before = (await client.get(f"{BASE}/config/", params={"site_id": site.id}, headers=headers)).json()
    answer = await client.put(f"{BASE}/update_config/", params={"site_id": site.id}, json=body, headers=headers)
    assert answer.status_code == 422 and words in answer.text
    after = (await client.get(f"{BASE}/config/", params={"site_id": site.id}, headers=headers)).json()
    assert after == before
