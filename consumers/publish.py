"""The publish consumer (`automation consume publish`): one approved article onto one target.

For WordPress it uploads the article's images to the media library (each once: the remote media id
is stored as soon as it exists), sets the featured image, points the in-article images at their
media URLs, maps the cluster to a category and the keywords to tags, and creates the post as a
draft, published or scheduled, as the target says.

Exactly one post per article and target, whatever fails:
- A publication is worked on by one consumer at a time: a PostgreSQL advisory lock held on the
  connection the attempt does all its database work on (one connection per publish in flight, so
  the pool can never be exhausted by handlers waiting for a second one). A consumer killed mid-way
  loses its connection, so its lock goes with it, and the broker hands its unacknowledged message
  to another consumer, which takes the lock at once (no lease to wait out). A duplicate message that finds the lock
  held is dropped: the holder's own message is still unacknowledged, so it cannot be lost.
- The remote post id is stored in its own transaction as soon as WordPress answers; from then on
  every attempt, redelivery or re-publish after an edit updates that post.
- Between WordPress creating the post and that transaction, a crash would leave a post we do not
  know of; `create_started_at` is written before creating, and an attempt that finds it set looks
  the post up (same title and slug, changed since then) before it creates one.
Failures retry with backoff through the delay queues (5xx, timeouts, a site that is down) or end
at once (wrong credentials, a post deleted on the site); either way the publication ends `failed`
and the article `publish_failed` with the site's own message, which the dashboard shows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import Deps
from shared.article_html import PlacedImage, featured_image, place_images
from shared.db import advisory_locked
from shared.events import PublicationChanged, PublishContent
from shared.media import image_path
from shared.messaging import PoisonMessage
from shared.models import Cluster, Content, ContentIdea, Image, Keyword, Publication, PublishTarget, Task
from shared.outbox import add_events
from shared.review import record
from shared.secrets import decrypt
from shared.wordpress import PostFields, WordPressClient, WordPressError, WordPressSite

log = logging.getLogger("automation.publish")
ACTOR = "publish consumer"
# Advisory lock keys of publications: the publication id with a bit no other lock of the system uses.
LOCK_NAMESPACE = 1 << 62
TAGS_PER_POST = 5

ClientFactory = Callable[[WordPressSite, float], WordPressClient]


class PublishError(Exception):
    """Publishing failed; `retryable` says whether another attempt can help (the failure routing reads it)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Article:
    """Everything a post is made of, read once per attempt."""

    content: Content
    target: PublishTarget
    images: list[PlacedImage]
    category: str | None
    tags: list[str]


def _client(site: WordPressSite, timeout: float) -> WordPressClient:
    return WordPressClient(site, timeout=timeout)


Sessions = Callable[[], AsyncSession]


def publication_lock(deps: Deps, publication_id: int) -> AbstractAsyncContextManager[Sessions | None]:
    """Takes it (see the module's docstring): sessions on the lock's connection, or None when another
    consumer holds it."""
    return advisory_locked(deps.sessions, LOCK_NAMESPACE | publication_id)


async def publish(deps: Deps, command: PublishContent, client: ClientFactory = _client) -> None:
    """Handle one `content.publish`: check it, take the publication, publish, record the outcome."""
    async with publication_lock(deps, command.publication_id) as sessions:
        if sessions is None:
            log.info("publication %d is being published by another consumer; this copy is dropped",
                     command.publication_id)
            return
        article = await _start(sessions, command)
        if article is None:
            return
        try:
            remote_id, remote_url = await _send(deps, sessions, command, article, client)
        except WordPressError as error:
            raise PublishError(f"{article.target.name}: {error}", retryable=error.retryable) from None
        await _finish(sessions, command, article, remote_id, remote_url)
    deps.relay.wake()


async def _start(sessions: Sessions, command: PublishContent) -> Article | None:
    """Check the message against the publication and read the article; None when there is nothing to do."""
    async with sessions() as session, session.begin():
        publication = await session.get(Publication, command.publication_id, with_for_update=True)
        if publication is None or publication.content_id != command.content_id:
            raise PoisonMessage(f"publication {command.publication_id} of content {command.content_id} does not exist")
        if command.revision > publication.revision:
            raise PoisonMessage(f"revision {command.revision} was never requested for publication {publication.id}")
        if command.revision < publication.revision or publication.status != "queued":
            return None  # superseded by a newer request, or already done: a duplicate or late delivery
        content = await session.get(Content, publication.content_id)
        target = await session.get(PublishTarget, publication.target_id)
        assert content is not None and target is not None  # foreign keys
        if content.status == "rejected":
            publication.status, publication.last_error = "failed", "rejected before it was published"
            return None
        publication.attempts += 1
        images = (await session.scalars(select(Image).where(Image.content_id == content.id, Image.status == "generated")
                                        .order_by(Image.position, Image.id))).all()
        category, keywords = await _cluster_terms(session, content)
        session.expunge(content)
        session.expunge(target)
        return Article(content=content, target=target, category=category, tags=keywords[:TAGS_PER_POST], images=[
            PlacedImage(id=i.id, kind=i.kind, position=i.position, prompt=i.prompt, section=i.section, width=i.width,
                        height=i.height) for i in images])


async def _cluster_terms(session: AsyncSession, content: Content) -> tuple[str | None, list[str]]:
    """The cluster's name (the category) and the keywords (tags): the article's own first."""
    row = (await session.execute(
        select(ContentIdea.primary_keyword, ContentIdea.cluster_id, Cluster.name)
        .join(Task, Task.idea_id == ContentIdea.id).outerjoin(Cluster, Cluster.id == ContentIdea.cluster_id)
        .where(Task.id == content.task_id))).first()
    if row is None:
        return None, []
    primary, cluster_id, cluster_name = row
    others = (await session.scalars(select(Keyword.keyword).where(Keyword.cluster_id == cluster_id)
                                    .order_by(Keyword.volume.desc(), Keyword.id).limit(TAGS_PER_POST))).all()
    tags = [primary] if primary else []
    tags += [k for k in others if k not in tags]
    return cluster_name, tags


async def _save(sessions: Sessions, publication_id: int, **values: Any) -> None:
    """Store what now exists remotely at once, in its own transaction."""
    async with sessions() as session, session.begin():
        await session.execute(update(Publication).where(Publication.id == publication_id).values(**values))


async def _send(deps: Deps, sessions: Sessions, command: PublishContent, article: Article,
                client: ClientFactory) -> tuple[int, str]:
    target, content = article.target, article.content
    site = WordPressSite(target.base_url, target.username, decrypt(deps.settings, target.secret_ciphertext))
    async with sessions() as session:
        publication = await session.get(Publication, command.publication_id)
        assert publication is not None
    media: dict[str, list[Any]] = dict(publication.media or {})
    async with client(site, deps.settings.publish_timeout_seconds) as wordpress:
        for image in article.images:
            if str(image.id) in media:
                continue
            path = image_path(deps.settings.media_dir, content.site_id, content.id, image.id)
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError:
                log.warning("image %d of content %d is missing on disk; published without it", image.id, content.id)
                continue
            media_id, url = await wordpress.upload_media(f"{content.slug}-{image.position}.png", data, "image/png",
                                                         alt_text=_alt(image), caption="")
            media[str(image.id)] = [media_id, url]
            await _save(sessions, publication.id, media=dict(media))
        categories = [await wordpress.ensure_term("categories", article.category)] if article.category else []
        tags = [await wordpress.ensure_term("tags", tag) for tag in article.tags]
        featured = featured_image(article.images)
        html = place_images(content.html, article.images,
                            lambda image: str(media[str(image.id)][1]) if str(image.id) in media else None)
        fields = PostFields(
            title=content.title, content=html, excerpt=content.meta_description, slug=content.slug,
            status=target.post_status,  # type: ignore[arg-type]
            date_gmt=await _scheduled_for(sessions, publication, target) if target.post_status == "future" else None,
            featured_media=int(media[str(featured.id)][0]) if featured and str(featured.id) in media else None,
            categories=categories, tags=tags, meta_title=content.meta_title,
            meta_description=content.meta_description)
        if publication.remote_id is not None:
            try:
                return await wordpress.update_post(int(publication.remote_id), fields)
            except WordPressError as error:
                if error.status == 404:
                    raise PublishError(f"{target.name}: post {publication.remote_id} was deleted on the site; "
                                       "publish again with recreate to make a new one", retryable=False) from None
                raise
        if publication.create_started_at is not None:
            found = await _orphan(sessions, wordpress, target, publication, content)
            if found is not None:
                log.warning("publication %d: adopted post %d, created by an attempt that did not record it",
                            publication.id, found[0])
                await _save(sessions, publication.id, remote_id=found[0], remote_url=found[1])
                return await wordpress.update_post(found[0], fields)
        await _save(sessions, publication.id, create_started_at=func.now())
        remote_id, remote_url = await wordpress.create_post(fields)
        await _save(sessions, publication.id, remote_id=remote_id, remote_url=remote_url)
        return remote_id, remote_url


async def _orphan(sessions: Sessions, wordpress: WordPressClient, target: PublishTarget, publication: Publication,
                  content: Content) -> tuple[int, str] | None:
    """The post an attempt that crashed after creating it left for this publication, if any: the newest
    with its title and slug changed since that attempt began that no other publication to the same
    WordPress holds. Without that last check, an article of another site (or an earlier one of this
    site) with the same title, published there moments before, would be taken over and overwritten."""
    assert publication.create_started_at is not None
    candidates = await wordpress.find_posts(content.title, content.slug, publication.create_started_at)
    if not candidates:
        return None
    async with sessions() as session:
        held = set((await session.scalars(
            select(Publication.remote_id).join(PublishTarget, PublishTarget.id == Publication.target_id)
            .where(PublishTarget.base_url == target.base_url, Publication.id != publication.id,
                   Publication.remote_id.in_([post_id for post_id, _ in candidates])))).all())
    return next((post for post in candidates if post[0] not in held), None)


async def _scheduled_for(sessions: Sessions, publication: Publication, target: PublishTarget) -> datetime:
    """A scheduled post keeps its slot; a new one goes `schedule_spacing_minutes` after the target's
    last scheduled post (or after now), so a run's articles come out one by one."""
    if publication.scheduled_for is not None:
        return publication.scheduled_for
    async with sessions() as session, session.begin():
        await session.execute(select(PublishTarget.id).where(PublishTarget.id == target.id).with_for_update())
        now = await session.scalar(select(func.now()))
        latest = await session.scalar(select(func.max(Publication.scheduled_for))
                                      .where(Publication.target_id == target.id))
        assert now is not None
        slot: datetime = max(now, latest or now) + timedelta(minutes=target.schedule_spacing_minutes)
        await session.execute(update(Publication).where(Publication.id == publication.id).values(scheduled_for=slot))
    return slot


async def _finish(sessions: Sessions, command: PublishContent, article: Article, remote_id: int,
                  remote_url: str) -> None:
    async with sessions() as session, session.begin():
        publication = await session.get(Publication, command.publication_id, with_for_update=True)
        content = await session.get(Content, article.content.id, with_for_update=True)
        assert publication is not None and content is not None
        publication.remote_id, publication.remote_url = remote_id, remote_url
        publication.published_revision = max(publication.published_revision or 0, command.revision)
        publication.published_at = await session.scalar(select(func.now()))
        publication.last_error = None
        if publication.revision == command.revision:
            publication.status = "published"
        if content.status != "rejected":
            content.status = "published"
        record(session, content, ACTOR, "published", changes={
            "target": article.target.name, "remote_id": remote_id, "url": remote_url, "revision": command.revision})
        add_events(session, PublicationChanged(
            type="content.published", publication_id=publication.id, content_id=content.id, site_id=content.site_id,
            target_id=publication.target_id, remote_id=remote_id, remote_url=remote_url))
    log.info("content %d published on %s as post %d (%s)", article.content.id, article.target.name, remote_id,
             remote_url)


async def mark_failed(deps: Deps, payload: dict[str, Any], reason: str) -> None:
    """The last resort of a publish message (its retries are used up, or it can never succeed): the
    publication ends `failed` and the article `publish_failed`, with the site's message."""
    publication_id = payload.get("publication_id")
    if not isinstance(publication_id, int):
        return
    async with deps.sessions() as session, session.begin():
        publication = await session.get(Publication, publication_id, with_for_update=True)
        if publication is None or publication.status != "queued":
            return
        content = await session.get(Content, publication.content_id, with_for_update=True)
        assert content is not None
        publication.status, publication.last_error = "failed", reason[:2000]
        if content.status in ("approved", "published"):
            content.status = "publish_failed"
        record(session, content, ACTOR, "publish_failed", reason=reason[:2000],
               changes={"target_id": publication.target_id})
        add_events(session, PublicationChanged(
            type="content.publish_failed", publication_id=publication.id, content_id=content.id,
            site_id=content.site_id, target_id=publication.target_id, remote_id=publication.remote_id,
            error=reason[:2000]))
    deps.relay.wake()


async def note_retry(deps: Deps, payload: dict[str, Any], attempt: int, delay: float, reason: str) -> None:
    """Show a retry on the publication, so the dashboard says what is going on while it waits."""
    publication_id = payload.get("publication_id")
    if isinstance(publication_id, int):
        note = f"attempt {attempt} failed, retrying in {delay:.0f} s: {reason}"
        await _save(deps.sessions, publication_id, last_error=note[:2000])


def _alt(image: PlacedImage) -> str:
    first = image.prompt.split(". ")[0].strip().rstrip(".")
    return first if len(first) <= 125 else first[:125].rsplit(" ", 1)[0]
