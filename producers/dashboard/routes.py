"""The dashboard's page (`GET /automation`) and the extra reads it needs under /api/v1/automation/.

The page is a static shell; everything it shows comes from the API with the account's X-API-Key.
Every id is checked against the caller's account: another account's site, content or image is a 404.
Image files are read from a path built from database ids only (never from request text).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from producers.api.auth import UNAUTHORIZED, current_account, request_session
from producers.api.schemas import Refusal
from shared.media import image_path
from shared.models import (
    CONTENT_STATUSES,
    Account,
    Content,
    ContentChange,
    ContentIdea,
    Image,
    Publication,
    PublishTarget,
    Site,
    Task,
)

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
PAGE = PACKAGE_DIR / "templates" / "automation.html"
API_PREFIX = "/api/v1/automation"

AccountDep = Annotated[Account, Depends(current_account)]
SessionDep = Annotated[AsyncSession, Depends(request_session)]
SiteId = Annotated[int, Query(ge=1, le=2**31 - 1, description="The site's id.")]
ContentId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="The content's id.")]
ImageId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="The image's id.")]

page_router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix=API_PREFIX, tags=["dashboard"], responses=UNAUTHORIZED)


@page_router.get("/automation", response_class=HTMLResponse)
async def automation_page() -> HTMLResponse:
    """The dashboard shell; it asks for the API key itself and keeps it in sessionStorage."""
    return HTMLResponse(await asyncio.to_thread(PAGE.read_text, "utf-8"),
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer"})


class SiteOut(BaseModel):
    id: int
    name: str
    timezone: str


class Sites(BaseModel):
    sites: list[SiteOut]


class ReviewItem(BaseModel):
    id: int
    title: str
    primary_keyword: str | None = Field(description="The keyword (search intent) the article targets.")
    status: str
    word_count: int
    images: int
    created_at: str


class Review(BaseModel):
    site_id: int
    status: str
    total: int = Field(description="How many match (all pages).")
    offset: int
    items: list[ReviewItem]
    counts: dict[str, int] = Field(description="The site's articles per status.")


class ChangeOut(BaseModel):
    actor: str
    action: str
    reason: str | None
    changes: dict[str, object]
    at: str


class PublicationOut(BaseModel):
    target: str
    status: str = Field(description="queued, published or failed.")
    remote_id: int | None
    url: str | None
    up_to_date: bool = Field(description="The post shows the article's latest revision.")
    attempts: int
    error: str | None
    scheduled_for: str | None
    published_at: str | None


class ImageOut(BaseModel):
    id: int
    kind: str
    position: int
    prompt: str
    section: str | None
    status: str
    width: int | None
    height: int | None
    url: str | None


class ContentOut(BaseModel):
    id: int
    site_id: int
    title: str
    meta_title: str
    meta_description: str
    slug: str
    primary_keyword: str | None = Field(description="The keyword (search intent) the article targets.")
    status: str
    revision: int
    rejection_reason: str | None
    reviewed_by: str | None
    word_count: int
    html: str
    markdown: str
    images: list[ImageOut]
    changes: list[ChangeOut] = Field(description="Review actions, newest first.")
    publications: list[PublicationOut]


async def _owned_content(session: AsyncSession, account: Account, content_id: int) -> Content:
    content = await session.scalar(select(Content).join(Site, Site.id == Content.site_id)
                                   .where(Content.id == content_id, Site.account_id == account.id))
    if content is None:
        raise HTTPException(404, f"content {content_id} not found")
    return content


def _image_url(content_id: int, image: Image) -> str | None:
    return f"{API_PREFIX}/content/{content_id}/images/{image.id}" if image.status == "generated" else None


@api_router.get("/sites/", response_model=Sites)
async def sites(account: AccountDep, session: SessionDep) -> Sites:
    rows = (await session.scalars(select(Site).where(Site.account_id == account.id).order_by(Site.id))).all()
    return Sites(sites=[SiteOut(id=s.id, name=s.name, timezone=s.timezone) for s in rows])


ReviewStatus = Literal["review", "approved", "rejected", "published", "publish_failed", "all"]


@api_router.get("/review/", response_model=Review, responses={404: {"model": Refusal}})
async def review(site_id: SiteId, account: AccountDep, session: SessionDep,
                 status: Annotated[ReviewStatus, Query(description="Which articles; all: every status.")] = "review",
                 q: Annotated[str | None, Query(max_length=200, description="Words in the title or keyword.")] = None,
                 limit: Annotated[int, Query(ge=1, le=200, description="How many, newest first.")] = 50,
                 offset: Annotated[int, Query(ge=0, le=1_000_000, description="How many to skip.")] = 0) -> Review:
    site = await session.scalar(select(Site).where(Site.id == site_id, Site.account_id == account.id))
    if site is None:
        raise HTTPException(404, f"site {site_id} not found")
    chosen = (Content.site_id == site.id) & (Content.status != "draft")
    if status != "all":
        chosen &= Content.status == status
    if q and q.strip():
        pattern = "%" + q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        chosen &= Content.title.ilike(pattern) | ContentIdea.primary_keyword.ilike(pattern)
    base = select(Content.id).join(Task, Task.id == Content.task_id).join(ContentIdea, ContentIdea.id == Task.idea_id)
    total = await session.scalar(select(func.count()).select_from(base.where(chosen).subquery())) or 0
    images = (select(func.count()).select_from(Image).where(Image.content_id == Content.id)
              .correlate(Content).scalar_subquery())
    rows = (await session.execute(
        select(Content.id, Content.title, Content.word_count, Content.created_at, images, ContentIdea.primary_keyword,
               Content.status)
        .join(Task, Task.id == Content.task_id).join(ContentIdea, ContentIdea.id == Task.idea_id)
        .where(chosen).order_by(Content.id.desc()).limit(limit).offset(offset))).all()
    counts = dict((await session.execute(select(Content.status, func.count()).where(Content.site_id == site.id)
                                         .group_by(Content.status))).all())
    return Review(site_id=site.id, status=status, total=total, offset=offset,
                  counts={name: int(counts.get(name, 0)) for name in CONTENT_STATUSES if name != "draft"},
                  items=[ReviewItem(id=r[0], title=r[1], word_count=r[2], created_at=r[3].isoformat(), images=r[4],
                                    primary_keyword=r[5], status=r[6]) for r in rows])


@api_router.get("/content/{content_id}", response_model=ContentOut, responses={404: {"model": Refusal}})
async def content(content_id: ContentId, account: AccountDep, session: SessionDep) -> ContentOut:
    item = await _owned_content(session, account, content_id)
    images = (await session.scalars(select(Image).where(Image.content_id == item.id)
                                    .order_by(Image.position, Image.id))).all()
    primary = await session.scalar(select(ContentIdea.primary_keyword).join(Task, Task.idea_id == ContentIdea.id)
                                   .where(Task.id == item.task_id))
    changes = (await session.scalars(select(ContentChange).where(ContentChange.content_id == item.id)
                                     .order_by(ContentChange.id.desc()).limit(100))).all()
    publications = (await session.execute(
        select(Publication, PublishTarget.name).join(PublishTarget, PublishTarget.id == Publication.target_id)
        .where(Publication.content_id == item.id).order_by(Publication.target_id))).all()
    return ContentOut(
        id=item.id, site_id=item.site_id, title=item.title, meta_title=item.meta_title,
        meta_description=item.meta_description, slug=item.slug, primary_keyword=primary, status=item.status,
        revision=item.revision, rejection_reason=item.rejection_reason, reviewed_by=item.reviewed_by,
        word_count=item.word_count, markdown=item.markdown,
        changes=[ChangeOut(actor=c.actor, action=c.action, reason=c.reason, changes=c.changes,
                           at=c.created_at.isoformat()) for c in changes],
        publications=[PublicationOut(
            target=name, status=p.status, remote_id=p.remote_id, url=p.remote_url,
            up_to_date=p.published_revision == item.revision, attempts=p.attempts, error=p.last_error,
            scheduled_for=p.scheduled_for.isoformat() if p.scheduled_for else None,
            published_at=p.published_at.isoformat() if p.published_at else None) for p, name in publications],
        html=item.html, images=[ImageOut(id=i.id, kind=i.kind, position=i.position, prompt=i.prompt, section=i.section,
                                         status=i.status, width=i.width, height=i.height, url=_image_url(item.id, i))
                                for i in images])


@api_router.get("/content/{content_id}/images/{image_id}", response_class=Response,
                responses={200: {"content": {"image/png": {}}, "description": "The PNG file."},
                           404: {"model": Refusal}})
async def content_image(content_id: ContentId, image_id: ImageId, request: Request, account: AccountDep,
                        session: SessionDep) -> Response:
    item = await _owned_content(session, account, content_id)
    image = await session.scalar(select(Image).where(Image.id == image_id, Image.content_id == item.id))
    if image is None or image.status != "generated":
        raise HTTPException(404, f"image {image_id} not found")
    media_dir = Path(request.app.state.settings.media_dir)
    path = image_path(media_dir, int(item.site_id), int(item.id), int(image.id))  # database ids only
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError:
        raise HTTPException(404, f"image {image_id} not found") from None
    return Response(data, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})
