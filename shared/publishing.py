"""Publish targets and publish requests: what the API and stage 7 write, what the publish consumer reads.

A request is a `publications` row per (article, enabled target), set to `queued` with the article's
current revision, and a `content.publish` message per row in the outbox of the same transaction:
the request and its message exist together or not at all. The row outlives every attempt and keeps
the remote post id, so a retry, a redelivery or a later re-publish updates that post.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events import PublishContent
from shared.models import Content, Publication, PublishTarget
from shared.outbox import add_events
from shared.review import PUBLISHABLE, ReviewConflict, record


class NoPublishTarget(Exception):
    """The site has no enabled publish target."""


async def enabled_targets(session: AsyncSession, site_id: int) -> list[PublishTarget]:
    return list((await session.scalars(select(PublishTarget).where(
        PublishTarget.site_id == site_id, PublishTarget.enabled.is_(True)).order_by(PublishTarget.id))).all())


async def request_publish(session: AsyncSession, content: Content, actor: str,
                          targets: Sequence[PublishTarget] | None = None) -> list[Publication]:
    """Queue `content` (approved, published or failed) for every enabled target of its site (or `targets`).

    Re-requesting a queued publication re-sends its message with the newer revision: the consumer
    publishes the latest revision once and drops messages for older ones."""
    if content.status not in PUBLISHABLE:
        raise ReviewConflict(f"content {content.id} is {content.status}; approve it before publishing")
    targets = list(targets) if targets is not None else await enabled_targets(session, content.site_id)
    if not targets:
        raise NoPublishTarget(f"site {content.site_id} has no enabled publish target; add one first")
    publications = []
    for target in targets:
        values = {"content_id": content.id, "target_id": target.id, "status": "queued", "revision": content.revision,
                  "attempts": 0, "last_error": None, "requested_by": actor, "media": {}}
        statement = insert(Publication).values(**values).on_conflict_do_update(
            index_elements=["content_id", "target_id"],
            set_={**{key: values[key] for key in ("status", "revision", "attempts", "last_error", "requested_by")},
                  "requested_at": func.now()})
        publication_id = await session.scalar(statement.returning(Publication.id))
        assert publication_id is not None
        publication = await session.get(Publication, publication_id, populate_existing=True)
        assert publication is not None
        publications.append(publication)
        add_events(session, PublishContent(publication_id=publication.id, content_id=content.id,
                                           revision=content.revision))
    record(session, content, actor, "publish", changes={"targets": [t.name for t in targets],
                                                         "revision": content.revision})
    return publications


async def publications_of(session: AsyncSession, content_ids: Sequence[int]) -> list[Publication]:
    return list((await session.scalars(select(Publication).where(Publication.content_id.in_(content_ids))
                                       .order_by(Publication.content_id, Publication.target_id))).all())
