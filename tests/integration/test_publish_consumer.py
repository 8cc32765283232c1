"""The publish consumer's logic against a real WordPress and the real database, called in-process.

The cases an operator fears: a crash between WordPress creating a post and the database storing its
id (the next attempt adopts that post instead of creating another), a post deleted on the site, a
scheduled target spacing posts out, forged or stale messages, and content rejected while queued.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import delete, func, select, update

from consumers import publish as publisher
from consumers.watchdog import resend_stalled_publications
from shared.events import PublishContent, StartRun
from shared.messaging import PoisonMessage
from shared.models import Content, OutboxMessage, Publication, PublishTarget
from shared.publishing import request_publish
from shared.review import Edit, approve, edit, reject
from shared.secrets import encrypt
from shared.wordpress import WordPressClient, WordPressSite
from tests.support import Bus
from tests.wordpress import ThrowawayWordPress, throwaway_wordpress

QUICK = {"stage_4_batch_size": 8, "stage_5_batch_size": 8, "stage_6_batch_size": 16}


@pytest.fixture(scope="module")
async def wordpress(output_dir: Path) -> AsyncIterator[ThrowawayWordPress]:
    async with throwaway_wordpress(output_dir / "wordpress-consumer") as site:
        yield site


@pytest.fixture
def publishing_deps(deps):
    settings = deps.settings.model_copy(update={"secret_key": SecretStr(uuid.uuid4().hex)})
    return dataclasses.replace(deps, settings=settings)


async def approved_articles(deps, make_site, wordpress: ThrowawayWordPress, post_status: str = "publish"
                            ) -> tuple[list[int], int]:
    """A completed run's articles, approved, and a target on the test site: (content ids, target id)."""
    site = await make_site(keywords=8, **QUICK)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    await bus.pump()
    async with deps.sessions() as session, session.begin():
        target = PublishTarget(site_id=site.id, name="blog", kind="wordpress", base_url=wordpress.site.base_url,
                               username=wordpress.site.username, post_status=post_status,
                               schedule_spacing_minutes=90,
                               secret_ciphertext=encrypt(deps.settings, wordpress.site.application_password))
        session.add(target)
        contents = (await session.scalars(select(Content).where(Content.site_id == site.id)
                                          .order_by(Content.id))).all()
        for content in contents:
            await approve(session, content, "tester")
        await session.flush()
        return [c.id for c in contents], target.id


async def queue(deps, content_id: int) -> PublishContent:
    """Request a publish (as the API does) and return the message it queued."""
    async with deps.sessions() as session, session.begin():
        content = await session.get(Content, content_id, with_for_update=True)
        [publication] = await request_publish(session, content, "tester")
        return PublishContent(publication_id=publication.id, content_id=content_id, revision=content.revision)


async def publication(deps, content_id: int) -> Publication:
    async with deps.sessions() as session:
        return await session.scalar(select(Publication).where(Publication.content_id == content_id))


class CrashAfterCreate(WordPressClient):
    """Creates the post for real, then dies before the caller can store its id (a kill -9 there)."""

    async def create_post(self, fields):  # type: ignore[no-untyped-def]
        await super().create_post(fields)
        raise SystemExit("killed")


def crashing(site: WordPressSite, timeout: float) -> WordPressClient:
    return CrashAfterCreate(site, timeout=timeout)


async def test_a_crash_after_the_post_was_created_adopts_that_post(publishing_deps, make_site, wordpress):
    deps = publishing_deps
    ids, _ = await approved_articles(deps, make_site, wordpress)
    command = await queue(deps, ids[0])
    before = {p["id"] for p in await wordpress.posts()}
    media_before = {m["id"] for m in await wordpress.media()}
    with pytest.raises(SystemExit):
        await publisher.publish(deps, command, client=crashing)
    row = await publication(deps, ids[0])
    assert row.remote_id is None and row.create_started_at is not None and row.status == "queued"
    [orphan] = [p["id"] for p in await wordpress.posts() if p["id"] not in before]

    await publisher.publish(deps, command)  # the redelivery
    row = await publication(deps, ids[0])
    assert row.status == "published" and row.remote_id == orphan  # adopted, not created again
    assert [p["id"] for p in await wordpress.posts() if p["id"] not in before] == [orphan]
    uploaded = [m["id"] for m in await wordpress.media() if m["id"] not in media_before]
    assert row.media and sorted(uploaded) == sorted(v[0] for v in row.media.values())  # each image uploaded once


class CrashBeforeCreate(WordPressClient):
    """Dies after the attempt was marked as creating but before WordPress got the request (a kill -9 there)."""

    async def create_post(self, fields):  # type: ignore[no-untyped-def]
        raise SystemExit("killed")


async def test_a_crash_before_the_post_was_created_takes_over_no_other_article_with_its_title(
        publishing_deps, make_site, wordpress):
    """Another site's article with the same title and slug, just published to the same WordPress, matches
    the crashed attempt's lookup; it is someone else's post, so the retry creates this article's own."""
    deps = publishing_deps
    [theirs, *_], _ = await approved_articles(deps, make_site, wordpress)
    [ours, *_], _ = await approved_articles(deps, make_site, wordpress)
    async with deps.sessions() as session, session.begin():
        their_content = await session.get(Content, theirs)
        await session.execute(update(Content).where(Content.id == ours)
                              .values(title=their_content.title, slug=their_content.slug))
    await publisher.publish(deps, await queue(deps, theirs))
    their_post = (await publication(deps, theirs)).remote_id
    their_html = (await wordpress.rest("GET", f"wp/v2/posts/{their_post}", params={"context": "edit"})).json()

    command = await queue(deps, ours)
    with pytest.raises(SystemExit):
        await publisher.publish(deps, command, client=lambda site, timeout: CrashBeforeCreate(site, timeout=timeout))
    assert (await publication(deps, ours)).create_started_at is not None
    await publisher.publish(deps, command)  # the redelivery

    row = await publication(deps, ours)
    assert row.status == "published" and row.remote_id not in (None, their_post)
    after = (await wordpress.rest("GET", f"wp/v2/posts/{their_post}", params={"context": "edit"})).json()
    assert after["content"]["raw"] == their_html["content"]["raw"]  # their post was not overwritten
    assert after["modified_gmt"] == their_html["modified_gmt"]


async def test_a_post_deleted_on_the_site_fails_clearly_until_recreated(publishing_deps, make_site, wordpress):
    deps = publishing_deps
    ids, _ = await approved_articles(deps, make_site, wordpress)
    await publisher.publish(deps, await queue(deps, ids[0]))
    first = await publication(deps, ids[0])
    await wordpress.delete_post(first.remote_id, force=False)  # to the trash, as an editor would

    async with deps.sessions() as session, session.begin():
        content = await session.get(Content, ids[0], with_for_update=True)
        await edit(session, content, "tester", Edit(title="A title after the post was deleted"))
    with pytest.raises(publisher.PublishError) as failure:
        await publisher.publish(deps, await queue(deps, ids[0]))
    assert failure.value.retryable is False and "was deleted on the site" in str(failure.value)
    assert (await publication(deps, ids[0])).remote_id == first.remote_id  # nothing created behind the user's back

    async with deps.sessions() as session, session.begin():  # what the API's recreate does
        row = await session.scalar(select(Publication).where(Publication.content_id == ids[0]))
        row.remote_id = row.create_started_at = None
    await publisher.publish(deps, await queue(deps, ids[0]))
    again = await publication(deps, ids[0])
    assert again.status == "published" and again.remote_id != first.remote_id
    post = (await wordpress.rest("GET", f"wp/v2/posts/{again.remote_id}", params={"context": "edit"})).json()
    assert post["title"]["raw"] == "A title after the post was deleted"


async def test_a_scheduled_target_spaces_posts_out(publishing_deps, make_site, wordpress):
    deps = publishing_deps
    ids, _ = await approved_articles(deps, make_site, wordpress, post_status="future")
    for content_id in ids[:3]:
        await publisher.publish(deps, await queue(deps, content_id))
    rows = [await publication(deps, content_id) for content_id in ids[:3]]
    slots = sorted(r.scheduled_for for r in rows)
    assert [b - a for a, b in pairwise(slots)] == [timedelta(minutes=90)] * 2
    for row in rows:
        post = (await wordpress.rest("GET", f"wp/v2/posts/{row.remote_id}", params={"context": "edit"})).json()
        assert post["status"] == "future"
    await publisher.publish(deps, await queue(deps, ids[0]))  # a re-publish keeps its slot
    assert (await publication(deps, ids[0])).scheduled_for == rows[0].scheduled_for


async def test_forged_stale_and_rejected_messages_publish_nothing(publishing_deps, make_site, wordpress):
    deps = publishing_deps
    ids, _ = await approved_articles(deps, make_site, wordpress)
    command = await queue(deps, ids[0])
    before = len(await wordpress.posts())
    with pytest.raises(PoisonMessage):
        await publisher.publish(deps, command.model_copy(update={"revision": command.revision + 1}))
    with pytest.raises(PoisonMessage):
        await publisher.publish(deps, command.model_copy(update={"content_id": ids[1]}))
    with pytest.raises(PoisonMessage):
        await publisher.publish(deps, command.model_copy(update={"publication_id": 2**62}))

    async with deps.sessions() as session, session.begin():
        content = await session.get(Content, ids[0], with_for_update=True)
        await reject(session, content, "tester", "not for this site")
    await publisher.publish(deps, command)
    row = await publication(deps, ids[0])
    assert row.status == "failed" and "rejected" in row.last_error and row.remote_id is None
    assert len(await wordpress.posts()) == before

    newer = await queue(deps, ids[1])
    await publisher.publish(deps, newer)
    await publisher.publish(deps, newer)  # a duplicate delivery after success does nothing
    stale = newer.model_copy(update={"revision": newer.revision - 1}) if newer.revision > 1 else None
    assert stale is None or await publisher.publish(deps, stale) is None
    assert len(await wordpress.posts()) == before + 1


async def test_a_publish_whose_message_was_lost_is_re_sent_by_the_watchdog(publishing_deps, make_site, wordpress):
    deps = publishing_deps
    ids, _ = await approved_articles(deps, make_site, wordpress)
    await queue(deps, ids[0])  # its message is dropped: the outbox is emptied below, as if lost
    async with deps.sessions() as session, session.begin():
        await session.execute(delete(OutboxMessage))
        await session.execute(update(Publication).where(Publication.content_id == ids[0]).values(
            requested_at=func.now() - timedelta(seconds=deps.settings.stall_seconds + 1)))
    assert await resend_stalled_publications(deps) == 1
    assert await resend_stalled_publications(deps) == 0  # once per stall period
    async with deps.sessions() as session:
        [payload] = (await session.scalars(select(OutboxMessage.payload).where(
            OutboxMessage.routing_key == "content.publish"))).all()
    await publisher.publish(deps, PublishContent.model_validate(payload))
    assert (await publication(deps, ids[0])).status == "published"
