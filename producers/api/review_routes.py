"""Review actions, publishing and publish targets under /api/v1/automation/.

An article is approved, rejected (with a reason) or edited one at a time or in bulk, then published
to the site's targets; every action is recorded with who did it (`by` in the body, or the API key's
prefix). A target's application password is write-only: it is checked against the site when saved,
stored encrypted, and never returned, logged or shown.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from producers.api.auth import UNAUTHORIZED, api_key_header, current_account, request_session
from producers.api.schemas import Refusal
from shared import review
from shared.models import Account, Content, Publication, PublishTarget, Site
from shared.publishing import NoPublishTarget, request_publish
from shared.secrets import SecretKeyMissing, SecretUnreadable, decrypt, encrypt
from shared.settings import Settings
from shared.wordpress import WordPressClient, WordPressError, WordPressSite

router = APIRouter(prefix="/api/v1/automation", tags=["review and publishing"], responses=UNAUTHORIZED)
AccountDep = Annotated[Account, Depends(current_account)]
SessionDep = Annotated[AsyncSession, Depends(request_session)]
ContentId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="The content's id.")]
TargetId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="The publish target's id.")]
Actor = Field(None, min_length=1, max_length=200, description="Who acts (recorded); default: the API key's prefix.")
CONFLICT: dict[int | str, dict[str, Any]] = {404: {"model": Refusal}, 409: {"model": Refusal}}


async def actor_of(key: Annotated[str | None, Depends(api_key_header)]) -> str:
    return f"api key {key[:10]}…" if key else "api"


ActorDep = Annotated[str, Depends(actor_of)]


class By(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str | None = Actor


class Rejection(By):
    reason: str = Field(min_length=1, max_length=1000, description="Why it is rejected (shown on the article).")


class ContentEdit(By):
    """Only the fields given change. `markdown` replaces the body (raw HTML in it is shown as text);
    the images stay and are placed by the H2 headings."""

    title: str | None = Field(None, min_length=1, max_length=300)
    meta_title: str | None = Field(None, min_length=1, max_length=60)
    meta_description: str | None = Field(None, min_length=1, max_length=160)
    slug: str | None = Field(None, min_length=1, max_length=200, pattern=review.SLUG_PATTERN)
    markdown: str | None = Field(None, min_length=1, max_length=200_000)


class PublishRequest(By):
    recreate: bool = Field(False, description="Create a new post where the previous one was deleted on the site.")


class BulkAction(By):
    ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(min_length=1, max_length=review.BULK_LIMIT,
                                                               description="Content ids (at most 500).")
    action: Literal["approve", "reject", "publish"]
    reason: str | None = Field(None, min_length=1, max_length=1000, description="Required to reject.")


class ActionResult(BaseModel):
    id: int
    status: str | None = Field(description="The article's status afterwards; null when not found.")
    changed: bool
    error: str | None = None


class BulkResult(BaseModel):
    changed: int
    unchanged: int
    failed: int
    results: list[ActionResult]


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_id: int = Field(ge=1, le=2**31 - 1)
    name: str = Field("wordpress", min_length=1, max_length=100, pattern=r"^[\w .-]+$")
    base_url: HttpUrl = Field(description="The WordPress site's address, e.g. https://example.com/blog.")
    username: str = Field(min_length=1, max_length=200)
    application_password: SecretStr = Field(min_length=8, max_length=200,
                                            description="A WordPress application password (Users → Profile); "
                                                        "write-only: stored encrypted, never returned.")
    post_status: Literal["draft", "publish", "future"] = Field(
        "draft", description="draft: for an editor on the site; publish: live at once; future: scheduled one "
                             "per `schedule_spacing_minutes`.")
    schedule_spacing_minutes: int = Field(1440, ge=1, le=43200)
    enabled: bool = True
    verify: bool = Field(True, description="Check the credentials against the site before saving.")


class TargetUpdate(BaseModel):
    """Only the fields given change; the password is kept unless a new one is given."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[\w .-]+$")
    base_url: HttpUrl | None = None
    username: str | None = Field(None, min_length=1, max_length=200)
    application_password: SecretStr | None = Field(None, min_length=8, max_length=200)
    post_status: Literal["draft", "publish", "future"] | None = None
    schedule_spacing_minutes: int | None = Field(None, ge=1, le=43200)
    enabled: bool | None = None
    verify: bool = True


class TargetOut(BaseModel):
    id: int
    site_id: int
    name: str
    kind: str
    base_url: str
    username: str
    has_password: bool = Field(description="A password is stored (it is never returned).")
    post_status: str
    schedule_spacing_minutes: int
    enabled: bool


class Targets(BaseModel):
    targets: list[TargetOut]


class TargetCheck(BaseModel):
    ok: bool
    user: str | None = None
    error: str | None = None


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def target_out(target: PublishTarget) -> TargetOut:
    return TargetOut(id=target.id, site_id=target.site_id, name=target.name, kind=target.kind,
                     base_url=target.base_url, username=target.username, has_password=bool(target.secret_ciphertext),
                     post_status=target.post_status, schedule_spacing_minutes=target.schedule_spacing_minutes,
                     enabled=target.enabled)


async def owned_content(session: AsyncSession, account: Account, content_id: int) -> Content:
    content = await session.scalar(select(Content).join(Site, Site.id == Content.site_id).where(
        Content.id == content_id, Site.account_id == account.id).with_for_update(of=Content))
    if content is None:
        raise HTTPException(404, f"content {content_id} not found")
    return content


async def owned_target(session: AsyncSession, account: Account, target_id: int) -> PublishTarget:
    target = await session.scalar(select(PublishTarget).join(Site, Site.id == PublishTarget.site_id).where(
        PublishTarget.id == target_id, Site.account_id == account.id))
    if target is None:
        raise HTTPException(404, f"publish target {target_id} not found")
    return target


async def _after_change(session: AsyncSession, content: Content, actor: str, outcome: review.Outcome) -> None:
    """With the site's auto-publish on, an approval or an edit of approved or published content publishes."""
    if outcome.changed and content.status in review.PUBLISHABLE and await review.auto_publish_enabled(
            session, content.site_id):
        try:
            await request_publish(session, content, actor)
        except NoPublishTarget:
            pass  # auto-publish with no target yet: the content waits, approved


async def _act(session: AsyncSession, content: Content, actor: str, action: str, body: BaseModel) -> review.Outcome:
    """One review action; a conflict or bad value is raised for the caller to report."""
    if action == "approve":
        outcome = await review.approve(session, content, actor)
    elif action == "reject":
        outcome = await review.reject(session, content, actor, getattr(body, "reason", None) or "")
    elif action == "edit":
        assert isinstance(body, ContentEdit)
        outcome = await review.edit(session, content, actor, review.Edit(
            title=body.title, meta_title=body.meta_title, meta_description=body.meta_description, slug=body.slug,
            markdown=body.markdown))
    else:
        if isinstance(body, PublishRequest) and body.recreate:
            for publication in (await session.scalars(select(Publication).where(
                    Publication.content_id == content.id))).all():
                publication.remote_id, publication.create_started_at, publication.scheduled_for = None, None, None
        await request_publish(session, content, actor)
        return review.Outcome(content.id, content.status, changed=True)
    await _after_change(session, content, actor, outcome)
    return outcome


async def _single(session: AsyncSession, account: Account, content_id: int, actor: str, action: str,
                  body: By) -> ActionResult:
    content = await owned_content(session, account, content_id)
    try:
        outcome = await _act(session, content, body.by or actor, action, body)
    except (review.ReviewConflict, NoPublishTarget) as error:
        await session.rollback()
        raise HTTPException(409, str(error)) from None
    except ValueError as error:
        await session.rollback()
        raise HTTPException(422, str(error)) from None
    await session.commit()
    return ActionResult(id=content.id, status=outcome.status, changed=outcome.changed)


@router.post("/content/{content_id}/approve", response_model=ActionResult, responses=CONFLICT,
             summary="Approve an article (publishes it at once with the site's auto-publish)")
async def approve(content_id: ContentId, account: AccountDep, session: SessionDep, actor: ActorDep,
                  body: By | None = None) -> ActionResult:
    return await _single(session, account, content_id, actor, "approve", body or By())


@router.post("/content/{content_id}/reject", response_model=ActionResult, responses=CONFLICT,
             summary="Reject an article, with a reason; rejected content never publishes")
async def reject(content_id: ContentId, body: Rejection, account: AccountDep, session: SessionDep,
                 actor: ActorDep) -> ActionResult:
    return await _single(session, account, content_id, actor, "reject", body)


@router.patch("/content/{content_id}", response_model=ActionResult, responses=CONFLICT,
              summary="Edit an article's title, meta, slug or body; its images stay")
async def edit(content_id: ContentId, body: ContentEdit, account: AccountDep, session: SessionDep,
               actor: ActorDep) -> ActionResult:
    return await _single(session, account, content_id, actor, "edit", body)


@router.post("/content/{content_id}/publish", response_model=ActionResult, status_code=202, responses=CONFLICT,
             summary="Publish (or update) an approved article on the site's publish targets")
async def publish(content_id: ContentId, account: AccountDep, session: SessionDep, actor: ActorDep,
                  body: PublishRequest | None = None) -> ActionResult:
    return await _single(session, account, content_id, actor, "publish", body or PublishRequest())


@router.post("/content/bulk", response_model=BulkResult,
             summary="Approve, reject or publish up to 500 articles; each gets its own result")
async def bulk(body: BulkAction, account: AccountDep, session: SessionDep, actor: ActorDep) -> BulkResult:
    if body.action == "reject" and not body.reason:
        raise HTTPException(422, "a rejection needs a reason")
    site_ids = (await session.scalars(select(Site.id).where(Site.account_id == account.id))).all()
    contents = await review.locked_contents(session, list(site_ids), sorted(set(body.ids)))
    results = []
    for content_id in dict.fromkeys(body.ids):
        content = contents.get(content_id)
        if content is None:
            results.append(ActionResult(id=content_id, status=None, changed=False, error="not found"))
            continue
        try:
            async with session.begin_nested():
                outcome = await _act(session, content, body.by or actor, body.action, body)
            results.append(ActionResult(id=content_id, status=outcome.status, changed=outcome.changed))
        except (review.ReviewConflict, NoPublishTarget, ValueError) as error:
            await session.refresh(content)
            results.append(ActionResult(id=content_id, status=content.status, changed=False, error=str(error)))
    await session.commit()
    return BulkResult(changed=sum(r.changed for r in results),
                      unchanged=sum(not r.changed and r.error is None for r in results),
                      failed=sum(r.error is not None for r in results), results=results)


# --- publish targets ----------------------------------------------------------------------------


async def _verify(settings: Settings, base_url: str, username: str, password: str) -> None:
    try:
        async with WordPressClient(WordPressSite(base_url, username, password),
                                   timeout=settings.publish_timeout_seconds) as wordpress:
            await wordpress.check()
    except WordPressError as error:
        raise HTTPException(422, f"the site refused these credentials: {error}") from None


@router.get("/publish_targets/", response_model=Targets)
async def list_targets(site_id: Annotated[int, Query(ge=1, le=2**31 - 1)], account: AccountDep,
                       session: SessionDep) -> Targets:
    site = await session.scalar(select(Site).where(Site.id == site_id, Site.account_id == account.id))
    if site is None:
        raise HTTPException(404, f"site {site_id} not found")
    rows = (await session.scalars(select(PublishTarget).where(PublishTarget.site_id == site.id)
                                  .order_by(PublishTarget.id))).all()
    return Targets(targets=[target_out(t) for t in rows])


@router.post("/publish_targets/", response_model=TargetOut, status_code=201,
             responses={404: {"model": Refusal}, 409: {"model": Refusal}, 422: {"model": Refusal},
                        503: {"model": Refusal, "description": "AUTOMATION_SECRET_KEY is not set"}})
async def create_target(body: TargetIn, request: Request, account: AccountDep, session: SessionDep) -> TargetOut:
    site = await session.scalar(select(Site).where(Site.id == body.site_id, Site.account_id == account.id))
    if site is None:
        raise HTTPException(404, f"site {body.site_id} not found")
    if await session.scalar(select(PublishTarget.id).where(PublishTarget.site_id == site.id,
                                                           PublishTarget.name == body.name)):
        raise HTTPException(409, f"site {site.id} already has a publish target named {body.name!r}")
    settings = _settings(request)
    password = body.application_password.get_secret_value()
    base_url = str(body.base_url).rstrip("/")
    try:
        ciphertext = encrypt(settings, password)
    except SecretKeyMissing as error:
        raise HTTPException(503, str(error)) from None
    if body.verify:
        await _verify(settings, base_url, body.username, password)
    target = PublishTarget(site_id=site.id, name=body.name, kind="wordpress", base_url=base_url,
                           username=body.username, secret_ciphertext=ciphertext, post_status=body.post_status,
                           schedule_spacing_minutes=body.schedule_spacing_minutes, enabled=body.enabled)
    session.add(target)
    await session.commit()
    return target_out(target)


@router.put("/publish_targets/{target_id}", response_model=TargetOut,
            responses={404: {"model": Refusal}, 422: {"model": Refusal}, 503: {"model": Refusal}})
async def update_target(target_id: TargetId, body: TargetUpdate, request: Request, account: AccountDep,
                        session: SessionDep) -> TargetOut:
    target = await owned_target(session, account, target_id)
    settings = _settings(request)
    changes = body.model_dump(exclude_none=True, exclude={"application_password", "verify"})
    if "base_url" in changes:
        changes["base_url"] = str(changes["base_url"]).rstrip("/")
    for field, value in changes.items():
        setattr(target, field, value)
    try:
        if body.application_password is not None:
            target.secret_ciphertext = encrypt(settings, body.application_password.get_secret_value())
        if body.verify and ({"base_url", "username"} & changes.keys() or body.application_password is not None):
            await _verify(settings, target.base_url, target.username, decrypt(settings, target.secret_ciphertext))
    except (SecretKeyMissing, SecretUnreadable) as error:
        raise HTTPException(503, str(error)) from None
    await session.commit()
    return target_out(target)


@router.delete("/publish_targets/{target_id}", status_code=204, responses={404: {"model": Refusal}})
async def delete_target(target_id: TargetId, account: AccountDep, session: SessionDep) -> None:
    target = await owned_target(session, account, target_id)
    await session.delete(target)
    await session.commit()


@router.post("/publish_targets/{target_id}/test", response_model=TargetCheck, responses={404: {"model": Refusal}})
async def test_target(target_id: TargetId, request: Request, account: AccountDep, session: SessionDep) -> TargetCheck:
    """Check the stored credentials against the site now."""
    target = await owned_target(session, account, target_id)
    settings = _settings(request)
    try:
        password = decrypt(settings, target.secret_ciphertext)
        async with WordPressClient(WordPressSite(target.base_url, target.username, password),
                                   timeout=settings.publish_timeout_seconds) as wordpress:
            me = await wordpress.check()
    except (WordPressError, SecretKeyMissing, SecretUnreadable) as error:
        return TargetCheck(ok=False, error=str(error))
    return TargetCheck(ok=True, user=str(me.get("name", "")))
