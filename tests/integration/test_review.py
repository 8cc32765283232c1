"""Review actions through the API against the real database: what an editor and the main app see.

A real run (in-process bus, offline provider) fills the review queue; then articles are approved,
rejected, edited and queued for publishing one at a time and in bulk. Asserted: statuses, the
recorded history, refusals that change nothing, images kept by edits, auto-publish and skip review
queuing `content.publish` messages, and that a target's password is never returned.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from automation.contract import asyncapi_document
from producers.api.app import create_app
from shared.api_keys import create_api_key
from shared.events import StartRun
from shared.models import AutomationConfig, Content, ContentChange, Image, OutboxMessage, Publication, PublishTarget
from shared.secrets import encrypt
from shared.settings import Settings
from tests.support import Bus

BASE = "/api/v1/automation"
QUICK = {"stage_4_batch_size": 8, "stage_5_batch_size": 8, "stage_6_batch_size": 16}
SECRET = "correct-horse-battery-staple-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def review_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"secret_key": SecretStr(SECRET)})


@pytest.fixture(scope="module")
async def client(review_settings: Settings, sessions) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(review_settings, asyncapi_document(review_settings))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            yield http


async def reviewed_site(deps, make_site, **config: object):
    """A site whose first run completed: its articles wait in review. Returns (site, API headers)."""
    site = await make_site(keywords=16, **QUICK, **config)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    await bus.pump()
    async with deps.sessions() as session, session.begin():
        key = await create_api_key(session, site.account_id)
    return site, {"X-API-Key": key}


async def article_ids(deps, site_id: int, status: str = "review") -> list[int]:
    async with deps.sessions() as session:
        return list((await session.scalars(select(Content.id).where(Content.site_id == site_id,
                                                                    Content.status == status)
                                           .order_by(Content.id))).all())


async def publish_messages(deps, content_ids: list[int]) -> list[dict]:
    async with deps.sessions() as session:
        rows = (await session.scalars(select(OutboxMessage.payload).where(
            OutboxMessage.routing_key == "content.publish"))).all()
    return [p for p in rows if p["content_id"] in content_ids]


async def add_target(deps, site_id: int, settings: Settings, password: str = "abcd efgh ijkl mnop") -> int:
    async with deps.sessions() as session, session.begin():
        target = PublishTarget(site_id=site_id, name="blog", kind="wordpress", base_url="http://127.0.0.1:9",
                               username="editor", secret_ciphertext=encrypt(settings, password), post_status="draft")
        session.add(target)
        await session.flush()
        return target.id


async def test_approve_reject_and_edit_one_at_a_time(client, deps, make_site):
    site, headers = await reviewed_site(deps, make_site)
    first, second, third = (await article_ids(deps, site.id))[:3]

    answer = await client.post(f"{BASE}/content/{first}/approve", json={"by": "ana@example.com"}, headers=headers)
    assert answer.status_code == 200 and answer.json() == {"id": first, "status": "approved", "changed": True,
                                                          "error": None}
    again = await client.post(f"{BASE}/content/{first}/approve", headers=headers)
    assert again.json()["changed"] is False  # approving twice records nothing more

    no_reason = await client.post(f"{BASE}/content/{second}/reject", json={"reason": ""}, headers=headers)
    assert no_reason.status_code == 422
    rejected = await client.post(f"{BASE}/content/{second}/reject",
                                 json={"reason": "off topic for this site", "by": "ben"}, headers=headers)
    assert rejected.json()["status"] == "rejected"

    async with deps.sessions() as session:
        images_before = (await session.scalars(select(Image.id).where(Image.content_id == third)
                                               .order_by(Image.id))).all()
    markdown = ("# New headline\n\nFirst paragraph with <script>alert(1)</script> in it.\n\n"
                "## A section of my own\n\nMore words here.\n")
    edited = await client.patch(f"{BASE}/content/{third}", headers=headers, json={
        "title": "A better title", "slug": "a-better-title", "meta_description": "What this is about.",
        "markdown": markdown, "by": "cleo"})
    assert edited.status_code == 200 and edited.json()["changed"] is True
    bad_slug = await client.patch(f"{BASE}/content/{third}", json={"slug": "../../etc"}, headers=headers)
    assert bad_slug.status_code == 422

    detail = (await client.get(f"{BASE}/content/{third}", headers=headers)).json()
    assert detail["title"] == "A better title" and detail["slug"] == "a-better-title" and detail["revision"] == 2
    assert "<script>" not in detail["html"] and "&lt;script&gt;" in detail["html"]  # raw HTML is shown as text
    assert detail["status"] == "review"  # an edit does not approve
    assert sorted(i["id"] for i in detail["images"]) == sorted(images_before)  # the images stay
    [change] = detail["changes"]
    assert change["actor"] == "cleo" and change["action"] == "edit"
    assert change["changes"]["title"][1] == "A better title" and change["changes"]["revision"] == [1, 2]

    detail = (await client.get(f"{BASE}/content/{second}", headers=headers)).json()
    assert detail["status"] == "rejected" and detail["rejection_reason"] == "off topic for this site"
    assert [(c["actor"], c["action"], c["reason"]) for c in detail["changes"]] == [
        ("ben", "reject", "off topic for this site")]
    detail = (await client.get(f"{BASE}/content/{first}", headers=headers)).json()
    assert [(c["actor"], c["action"]) for c in detail["changes"]] == [("ana@example.com", "approve")]
    assert detail["reviewed_by"] == "ana@example.com"

    listed = (await client.get(f"{BASE}/review/", params={"site_id": site.id, "status": "all", "q": "better"},
                               headers=headers)).json()
    assert [i["id"] for i in listed["items"]] == [third]
    assert listed["counts"]["approved"] == 1 and listed["counts"]["rejected"] == 1
    page = (await client.get(f"{BASE}/review/", params={"site_id": site.id, "limit": 2, "offset": 2},
                             headers=headers)).json()
    assert page["offset"] == 2 and len(page["items"]) == 2 and page["total"] == listed["counts"]["review"]


async def test_refusals_change_nothing_and_other_accounts_see_nothing(client, deps, make_site, review_settings):
    site, headers = await reviewed_site(deps, make_site)
    _, stranger = await reviewed_site(deps, make_site)
    target = (await article_ids(deps, site.id))[0]

    assert (await client.post(f"{BASE}/content/{target}/approve", headers=stranger)).status_code == 404
    assert (await client.patch(f"{BASE}/content/{target}", json={"title": "x"}, headers=stranger)).status_code == 404
    unpublishable = await client.post(f"{BASE}/content/{target}/publish", headers=headers)
    assert unpublishable.status_code == 409 and "approve it before publishing" in unpublishable.json()["detail"]
    await client.post(f"{BASE}/content/{target}/approve", headers=headers)
    no_target = await client.post(f"{BASE}/content/{target}/publish", headers=headers)
    assert no_target.status_code == 409 and "no enabled publish target" in no_target.json()["detail"]

    async with deps.sessions() as session:
        content = await session.get(Content, target)
        changes = await session.scalar(select(func.count()).select_from(ContentChange)
                                       .where(ContentChange.content_id == target))
        publications = await session.scalar(select(func.count()).select_from(Publication)
                                            .where(Publication.content_id == target))
    assert content.status == "approved" and changes == 1 and publications == 0  # only the approval happened


async def test_bulk_actions_report_each_article(client, deps, make_site, review_settings):
    site, headers = await reviewed_site(deps, make_site)
    ids = await article_ids(deps, site.id)
    await client.post(f"{BASE}/content/{ids[0]}/reject", json={"reason": "thin"}, headers=headers)
    await add_target(deps, site.id, review_settings)

    no_reason = await client.post(f"{BASE}/content/bulk", json={"ids": ids, "action": "reject"}, headers=headers)
    assert no_reason.status_code == 422
    approved = (await client.post(f"{BASE}/content/bulk", json={"ids": [*ids, 2**31 - 1], "action": "approve"},
                                  headers=headers)).json()
    assert approved["changed"] == len(ids) and approved["failed"] == 1  # the rejected one is approved too
    assert approved["results"][-1] == {"id": 2**31 - 1, "status": None, "changed": False, "error": "not found"}

    published = (await client.post(f"{BASE}/content/bulk", json={"ids": ids, "action": "publish", "by": "dee"},
                                   headers=headers)).json()
    assert published["changed"] == len(ids) and published["failed"] == 0
    messages = await publish_messages(deps, ids)
    assert sorted(m["content_id"] for m in messages) == ids and all(m["revision"] == 1 for m in messages)
    rejected_now = (await client.post(f"{BASE}/content/bulk", json={"ids": ids[:2], "action": "reject",
                                                                    "reason": "changed my mind"},
                                      headers=headers)).json()
    assert rejected_now["changed"] == 2  # queued, not yet published: the publish consumer will skip them
    too_many = await client.post(f"{BASE}/content/bulk", json={"ids": list(range(1, 502)), "action": "approve"},
                                 headers=headers)
    assert too_many.status_code == 422


async def test_auto_publish_and_skip_review_queue_publishing(client, deps, make_site, review_settings, sessions):
    site, headers = await reviewed_site(deps, make_site)
    await add_target(deps, site.id, review_settings)
    config = await client.put(f"{BASE}/update_config/", params={"site_id": site.id}, json={"auto_publish": True},
                              headers=headers)
    assert config.json()["auto_publish"] is True and config.json()["skip_review"] is False
    first = (await article_ids(deps, site.id))[0]
    await client.post(f"{BASE}/content/{first}/approve", headers=headers)
    assert [m["revision"] for m in await publish_messages(deps, [first])] == [1]  # approval published it
    await client.patch(f"{BASE}/content/{first}", json={"title": "Edited after approval"}, headers=headers)
    assert [m["revision"] for m in await publish_messages(deps, [first])] == [1, 2]  # and the edit re-publishes
    detail = (await client.get(f"{BASE}/content/{first}", headers=headers)).json()
    assert "<h1>Edited after approval</h1>" in detail["html"]  # the body's heading follows the title
    assert detail["markdown"].startswith("# Edited after approval\n") and detail["images"]

    # skip review: stage 7 approves the next run's articles and queues them for publishing itself
    skipping = await make_site(keywords=16, **QUICK)
    async with sessions() as session, session.begin():
        config_row = await session.scalar(select(AutomationConfig).where(AutomationConfig.site_id == skipping.id))
        if config_row is None:
            config_row = AutomationConfig(site_id=skipping.id)
            session.add(config_row)
        config_row.skip_review = True
    await add_target(deps, skipping.id, review_settings)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=skipping.id))
    await bus.pump(allow_failures=True)  # the publish messages fail here: these deps have no secret key
    approved = await article_ids(deps, skipping.id, "approved")
    assert approved and await article_ids(deps, skipping.id, "review") == []
    assert sorted(m["content_id"] for m in bus.keys("content.publish") if m["content_id"] in approved) == approved


async def test_publish_target_password_is_write_only(client, deps, make_site, review_settings, settings):
    site, headers = await reviewed_site(deps, make_site)
    password = "Zq9x " + uuid.uuid4().hex[:4] + " pW2k rT5m"
    created = await client.post(f"{BASE}/publish_targets/", headers=headers, json={
        "site_id": site.id, "base_url": "http://127.0.0.1:9/blog/", "username": "editor",
        "application_password": password, "verify": False})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["has_password"] is True and body["base_url"] == "http://127.0.0.1:9/blog"
    listed = await client.get(f"{BASE}/publish_targets/", params={"site_id": site.id}, headers=headers)
    check = await client.post(f"{BASE}/publish_targets/{body['id']}/test", headers=headers)
    assert check.json()["ok"] is False and check.json()["error"]  # nothing listens on port 9
    for answer in (created, listed, check):
        assert password not in answer.text and password.replace(" ", "") not in answer.text
    async with deps.sessions() as session:
        stored = await session.scalar(select(PublishTarget.secret_ciphertext).where(PublishTarget.id == body["id"]))
    assert password not in stored  # encrypted at rest
    duplicate = await client.post(f"{BASE}/publish_targets/", headers=headers, json={
        "site_id": site.id, "base_url": "http://127.0.0.1:9", "username": "x", "application_password": password,
        "verify": False})
    assert duplicate.status_code == 409

    keyless = create_app(settings, {})  # no AUTOMATION_SECRET_KEY: saving a password is refused, clearly
    async with keyless.router.lifespan_context(keyless):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=keyless), base_url="http://api") as http:
            refused = await http.post(f"{BASE}/publish_targets/", headers=headers, json={
                "site_id": site.id, "name": "other", "base_url": "http://127.0.0.1:9", "username": "x",
                "application_password": password, "verify": False})
    assert refused.status_code == 503 and "AUTOMATION_SECRET_KEY" in refused.json()["detail"]
