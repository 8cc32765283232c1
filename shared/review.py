"""Review actions on an article: approve, reject (with a reason), edit; one at a time or in bulk.

Content moves `review -> approved -> published`, or to `rejected`; `publish_failed` until a publish
succeeds. Each action that changes something is a `content_changes` row (who, when, what), written
in the transaction of the change. Rejected content never publishes: the publish consumer checks the
status again before it sends anything.

An edit changes the text, never the images: the body is Markdown (what editors type), rendered to
HTML here with raw HTML disabled, so nothing an editor pastes can inject script into the dashboard
or the published post; the H2 headings are kept as the article's sections, which is what in-article
images are placed by.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from markdown_it import MarkdownIt
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import AutomationConfig, Content, ContentChange

ReviewAction = Literal["approve", "reject"]
# Which statuses each action starts from; any other status is a conflict with a reason.
APPROVABLE = ("review", "rejected")
REJECTABLE = ("review", "approved", "publish_failed")
EDITABLE = ("review", "approved", "rejected", "published", "publish_failed")
PUBLISHABLE = ("approved", "published", "publish_failed")
BULK_LIMIT = 500
SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_MARKDOWN = MarkdownIt("commonmark", {"html": False})
_WORDS = re.compile("[\\w'\u2019-]+")


class ReviewConflict(Exception):
    """The action does not apply to the article in its current status; the message says why."""


@dataclass(frozen=True)
class Edit:
    """The fields an editor may change; None leaves a field as it is."""

    title: str | None = None
    meta_title: str | None = None
    meta_description: str | None = None
    slug: str | None = None
    markdown: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What one action did to one article: `changed` False means it was already so."""

    content_id: int
    status: str
    changed: bool
    error: str | None = None


def record(session: AsyncSession, content: Content, actor: str, action: str, *,
           reason: str | None = None, changes: dict[str, Any] | None = None) -> None:
    session.add(ContentChange(content_id=content.id, actor=actor, action=action, reason=reason,
                              changes=changes or {}))


def _reviewed(content: Content, actor: str, when: datetime) -> None:
    content.reviewed_by = actor
    content.reviewed_at = when


async def approve(session: AsyncSession, content: Content, actor: str) -> Outcome:
    """Approve an article in review (or one rejected before). Approving an approved article changes nothing."""
    if content.status in ("approved", *PUBLISHABLE):
        return Outcome(content.id, content.status, changed=False)
    if content.status not in APPROVABLE:
        raise ReviewConflict(f"content {content.id} is {content.status}; only content in review or rejected "
                             "can be approved")
    before = content.status
    content.status = "approved"
    content.rejection_reason = None
    _reviewed(content, actor, await _db_now(session))
    record(session, content, actor, "approve", changes={"status": [before, "approved"]})
    return Outcome(content.id, content.status, changed=True)


async def reject(session: AsyncSession, content: Content, actor: str, reason: str) -> Outcome:
    """Reject an article with a reason; a published one stays published (its post exists)."""
    if not reason.strip():
        raise ValueError("a rejection needs a reason")
    if content.status == "rejected":
        return Outcome(content.id, content.status, changed=False)
    if content.status not in REJECTABLE:
        raise ReviewConflict(f"content {content.id} is {content.status}; published content cannot be rejected "
                             "(edit it, or remove the post on its site)")
    before = content.status
    content.status = "rejected"
    content.rejection_reason = reason.strip()
    _reviewed(content, actor, await _db_now(session))
    record(session, content, actor, "reject", reason=content.rejection_reason,
           changes={"status": [before, "rejected"]})
    return Outcome(content.id, content.status, changed=True)


def render_markdown(markdown: str) -> tuple[str, list[str], int]:
    """(HTML, H2 headings, words) of an editor's Markdown; raw HTML in it is shown as text."""
    tokens = _MARKDOWN.parse(markdown)
    sections = [tokens[i + 1].content.strip() for i, token in enumerate(tokens)
                if token.type == "heading_open" and token.tag == "h2" and i + 1 < len(tokens)]
    return _MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {}), sections, len(_WORDS.findall(markdown))


async def edit(session: AsyncSession, content: Content, actor: str, change: Edit) -> Outcome:
    """Apply an editor's changes; the revision goes up when anything changed, so a published article
    is marked out of date on its targets (and re-published at once with auto-publish)."""
    if content.status not in EDITABLE:
        raise ReviewConflict(f"content {content.id} is {content.status} and cannot be edited yet")
    if change.slug is not None and not re.fullmatch(SLUG_PATTERN, change.slug):
        raise ValueError("slug: lowercase letters, digits and single hyphens only")
    changes: dict[str, Any] = {}
    for field in ("title", "meta_title", "meta_description", "slug"):
        value = getattr(change, field)
        if value is not None and value != getattr(content, field):
            changes[field] = [getattr(content, field), value]
            setattr(content, field, value)
    markdown = change.markdown
    if markdown is None and "title" in changes:
        markdown = _retitled(content.markdown, changes["title"][0], changes["title"][1])
    if markdown is not None and markdown != content.markdown:
        html, sections, words = render_markdown(markdown)
        changes["body"] = {"words": [content.word_count, words]}
        content.markdown, content.html, content.sections, content.word_count = markdown, html, sections, words
    if not changes:
        return Outcome(content.id, content.status, changed=False)
    content.revision += 1
    changes["revision"] = [content.revision - 1, content.revision]
    record(session, content, actor, "edit", changes=changes)
    return Outcome(content.id, content.status, changed=True)


def _retitled(markdown: str, old_title: str, new_title: str) -> str | None:
    """The body with its `# title` heading following a new title (None when it has no such heading),
    so the article does not show the old title above its text."""
    first, _, rest = markdown.partition("\n")
    if first.strip() != f"# {old_title}".strip():
        return None
    return f"# {new_title}\n{rest}"


async def locked_contents(session: AsyncSession, site_ids: Sequence[int], content_ids: Sequence[int]
                          ) -> dict[int, Content]:
    """The articles among `content_ids` that belong to `site_ids`, locked for the action, by id."""
    if len(content_ids) > BULK_LIMIT:
        raise ValueError(f"at most {BULK_LIMIT} articles per request")
    rows = (await session.scalars(select(Content).where(Content.id.in_(content_ids), Content.site_id.in_(site_ids))
                                  .order_by(Content.id).with_for_update())).all()
    return {row.id: row for row in rows}


async def auto_publish_enabled(session: AsyncSession, site_id: int) -> bool:
    return bool(await session.scalar(select(AutomationConfig.auto_publish).where(AutomationConfig.site_id == site_id)))


async def history(session: AsyncSession, content_id: int, limit: int = 100) -> list[ContentChange]:
    """The article's changes, newest first."""
    return list((await session.scalars(select(ContentChange).where(ContentChange.content_id == content_id)
                                       .order_by(ContentChange.id.desc()).limit(limit))).all())


async def _db_now(session: AsyncSession) -> datetime:
    """The database's clock, as every other timestamp of the system."""
    return await session.scalar(select(func.now()))  # type: ignore[return-value]
