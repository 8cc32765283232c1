"""Notification channels and their delivery log under /api/v1/automation/.

A channel belongs to an account and optionally to one of its sites (NULL: every site): a signed webhook,
email addresses, or a Slack incoming webhook. A webhook's signing secret is made here, returned once (at
creation and at each rotation), stored encrypted and never returned again; a Slack URL is a credential
too, stored encrypted and shown masked. URLs that resolve to loopback, private or link-local addresses are
refused (422) unless `AUTOMATION_NOTIFY_ALLOW_PRIVATE_TARGETS` is set. The notification body is
documented in the OpenAPI document's `webhooks` section (`notification`).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from producers.api.auth import UNAUTHORIZED, current_account, request_session
from producers.api.schemas import Refusal
from shared.events import DeliverNotification
from shared.models import Account, Notification, NotificationChannel, NotificationDelivery, Site
from shared.notifications import (
    SIGNATURE_HEADER,
    SUBSCRIBABLE,
    NotificationType,
    SiteRef,
    new_signing_secret,
)
from shared.notifications import Notification as Body
from shared.notify_delivery import DeliveryError, TargetRefused, check_url, deliver, target_of
from shared.outbox import add_events
from shared.secrets import SecretKeyMissing, SecretUnreadable, encrypt
from shared.settings import Settings

router = APIRouter(prefix="/api/v1/automation", tags=["notifications"], responses=UNAUTHORIZED)
AccountDep = Annotated[Account, Depends(current_account)]
SessionDep = Annotated[AsyncSession, Depends(request_session)]
ChannelId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="The channel's id.")]
DeliveryId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="The delivery's id.")]
EMAIL = re.compile(r"^[^@\s,;<>\"\x00-\x1f\x7f]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$")
MAX_EMAILS = 20
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Refusal}}
SAVE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Refusal}, 409: {"model": Refusal}, 422: {"model": Refusal},
    503: {"model": Refusal, "description": "AUTOMATION_SECRET_KEY is not set"}}
Subscribable = Literal["run.completed", "run.failed", "run.paused", "content.ready_for_review",
                       "content.publish_failed", "credits.low"]
NAME = r"^[\w .@-]+$"
Url = Field(None, min_length=8, max_length=2000, description="webhook and slack: where to POST (http or https).")
Emails = Field(None, min_length=1, max_length=MAX_EMAILS, description="email: the addresses to write to.")


def _emails(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    cleaned = list(dict.fromkeys(v.strip() for v in value))
    bad = [v for v in cleaned if not EMAIL.match(v)]
    if bad:
        raise ValueError(f"not an email address: {bad[0][:100]!r}")
    return cleaned


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    kind: Literal["webhook", "email", "slack"]
    site_id: int | None = Field(None, ge=1, le=2**31 - 1, description="One site's notifications; none: every site.")
    events: list[Subscribable] | None = Field(None, max_length=len(SUBSCRIBABLE),
                                              description="The notification types it takes; default: all.")
    enabled: bool = True
    url: str | None = Url
    emails: list[str] | None = Emails

    _check_emails = field_validator("emails")(_emails)


class ChannelUpdate(BaseModel):
    """Only the fields given change; a webhook's secret changes only by rotation."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100, pattern=NAME)
    events: list[Subscribable] | None = Field(None, max_length=len(SUBSCRIBABLE))
    enabled: bool | None = None
    url: str | None = Url
    emails: list[str] | None = Emails

    _check_emails = field_validator("emails")(_emails)


class ChannelOut(BaseModel):
    id: int
    name: str
    kind: str
    site_id: int | None
    events: list[str]
    enabled: bool
    url: str | None = Field(description="A webhook's URL (a Slack URL is never returned: see url_hint).")
    url_hint: str | None = Field(description="A Slack URL, masked.")
    emails: list[str]
    has_secret: bool = Field(description="A webhook: a signing secret is stored (it is never returned again).")
    secret_rotated_at: datetime | None
    previous_secret_valid_until: datetime | None = Field(
        description="Until then deliveries are signed with the previous secret too (a second v1).")
    created_at: datetime


class ChannelCreated(ChannelOut):
    secret: str | None = Field(description="A webhook's signing secret: shown this once; store it now.")


class Channels(BaseModel):
    channels: list[ChannelOut]


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_minutes: int = Field(1440, ge=0, le=10080, description="How long the old secret still signs (a second "
                                 "v1), so receivers can switch; 0 ends it at once. At most 7 days.")


class SecretRotated(BaseModel):
    secret: str = Field(description="The new signing secret: shown this once.")
    previous_secret_valid_until: datetime | None


class DeliveryOut(BaseModel):
    id: int
    channel_id: int
    event_id: str = Field(description="The notification's event_id (the same on every attempt).")
    type: str
    site_id: int | None
    status: Literal["queued", "retrying", "delivered", "failed"]
    attempts: int
    response_code: int | None = Field(description="HTTP status, or the SMTP reply code.")
    latency_ms: int | None
    response_excerpt: str | None = Field(description="The first 500 characters of the last answer.")
    error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None


class Deliveries(BaseModel):
    deliveries: list[DeliveryOut]
    total: int


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _mask(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/…{url[-4:]}"


def channel_out(channel: NotificationChannel, now: datetime) -> ChannelOut:
    previous = channel.previous_secret_expires_at
    return ChannelOut(
        id=channel.id, name=channel.name, kind=channel.kind, site_id=channel.site_id, events=list(channel.events),
        enabled=channel.enabled, url=channel.url if channel.kind == "webhook" else None,
        url_hint=channel.url if channel.kind == "slack" else None,
        emails=list(channel.emails), has_secret=bool(channel.secret_ciphertext),
        secret_rotated_at=channel.secret_rotated_at,
        previous_secret_valid_until=previous if previous and previous > now else None, created_at=channel.created_at)


def delivery_out(delivery: NotificationDelivery, notification: Notification) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id, channel_id=delivery.channel_id, event_id=notification.event_id, type=notification.type,
        site_id=notification.site_id, status=delivery.status,
        attempts=delivery.attempts, response_code=delivery.response_code, latency_ms=delivery.latency_ms,
        response_excerpt=delivery.response_excerpt, error=delivery.error, created_at=delivery.created_at,
        last_attempt_at=delivery.last_attempt_at, delivered_at=delivery.delivered_at)


async def owned_channel(session: AsyncSession, account: Account, channel_id: int) -> NotificationChannel:
    channel = await session.scalar(select(NotificationChannel).where(
        NotificationChannel.id == channel_id, NotificationChannel.account_id == account.id))
    if channel is None:
        raise HTTPException(404, f"notification channel {channel_id} not found")
    return channel


async def _owned_site(session: AsyncSession, account: Account, site_id: int) -> Site:
    site = await session.scalar(select(Site).where(Site.id == site_id, Site.account_id == account.id))
    if site is None:
        raise HTTPException(404, f"site {site_id} not found")
    return site


async def _check_target(settings: Settings, url: str) -> str:
    try:
        await check_url(settings, url)
    except (TargetRefused, DeliveryError) as error:
        raise HTTPException(422, f"url refused: {error}") from None
    return url


def _encrypt(settings: Settings, value: str) -> str:
    try:
        return encrypt(settings, value)
    except SecretKeyMissing as error:
        raise HTTPException(503, str(error)) from None


@router.get("/notification_channels/", response_model=Channels, responses=NOT_FOUND,
            summary="The account's notification channels (with site_id: that site's and the account-wide ones)")
async def list_channels(account: AccountDep, session: SessionDep,
                        site_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Channels:
    query = select(NotificationChannel).where(NotificationChannel.account_id == account.id)
    if site_id is not None:
        await _owned_site(session, account, site_id)
        query = query.where((NotificationChannel.site_id == site_id) | NotificationChannel.site_id.is_(None))
    rows = (await session.scalars(query.order_by(NotificationChannel.id))).all()
    now = datetime.now(UTC)
    return Channels(channels=[channel_out(c, now) for c in rows])


@router.post("/notification_channels/", response_model=ChannelCreated, status_code=201, responses=SAVE_ERRORS,
             summary="Add a channel; a webhook's signing secret is in this answer only")
async def create_channel(body: ChannelIn, request: Request, account: AccountDep, session: SessionDep
                         ) -> ChannelCreated:
    settings = _settings(request)
    if body.site_id is not None:
        await _owned_site(session, account, body.site_id)
    if await session.scalar(select(NotificationChannel.id).where(NotificationChannel.account_id == account.id,
                                                                 NotificationChannel.name == body.name)):
        raise HTTPException(409, f"the account already has a notification channel named {body.name!r}")
    channel = NotificationChannel(account_id=account.id, site_id=body.site_id, name=body.name, kind=body.kind,
                                  enabled=body.enabled, events=list(body.events or SUBSCRIBABLE), emails=[])
    secret = None
    if body.kind == "email":
        if not body.emails:
            raise HTTPException(422, "an email channel needs emails")
        channel.emails = body.emails
    else:
        if not body.url:
            raise HTTPException(422, f"a {body.kind} channel needs a url")
        url = await _check_target(settings, body.url)
        if body.kind == "webhook":
            secret = new_signing_secret()
            channel.url, channel.secret_ciphertext = url, _encrypt(settings, secret)
        else:
            channel.url_ciphertext, channel.url = _encrypt(settings, url), _mask(url)
    session.add(channel)
    await session.commit()
    await session.refresh(channel)
    return ChannelCreated(**channel_out(channel, datetime.now(UTC)).model_dump(), secret=secret)


@router.get("/notification_channels/{channel_id}", response_model=ChannelOut, responses=NOT_FOUND)
async def get_channel(channel_id: ChannelId, account: AccountDep, session: SessionDep) -> ChannelOut:
    return channel_out(await owned_channel(session, account, channel_id), datetime.now(UTC))


@router.put("/notification_channels/{channel_id}", response_model=ChannelOut, responses=SAVE_ERRORS)
async def update_channel(channel_id: ChannelId, body: ChannelUpdate, request: Request, account: AccountDep,
                         session: SessionDep) -> ChannelOut:
    channel = await owned_channel(session, account, channel_id)
    settings = _settings(request)
    if body.name is not None and body.name != channel.name:
        if await session.scalar(select(NotificationChannel.id).where(
                NotificationChannel.account_id == account.id, NotificationChannel.name == body.name)):
            raise HTTPException(409, f"the account already has a notification channel named {body.name!r}")
        channel.name = body.name
    if body.events is not None:
        channel.events = list(body.events)
    if body.enabled is not None:
        channel.enabled = body.enabled
    if body.emails is not None:
        if channel.kind != "email":
            raise HTTPException(422, "only an email channel has emails")
        channel.emails = body.emails
    if body.url is not None:
        if channel.kind == "email":
            raise HTTPException(422, "an email channel has no url")
        url = await _check_target(settings, body.url)
        if channel.kind == "webhook":
            channel.url = url
        else:
            channel.url_ciphertext, channel.url = _encrypt(settings, url), _mask(url)
    await session.commit()
    return channel_out(channel, datetime.now(UTC))


@router.delete("/notification_channels/{channel_id}", status_code=204, responses=NOT_FOUND)
async def delete_channel(channel_id: ChannelId, account: AccountDep, session: SessionDep) -> None:
    await session.delete(await owned_channel(session, account, channel_id))
    await session.commit()


@router.post("/notification_channels/{channel_id}/rotate_secret", response_model=SecretRotated,
             responses=SAVE_ERRORS, summary="A new webhook signing secret (shown once); the old one keeps "
                                            "signing for the overlap")
async def rotate_secret(channel_id: ChannelId, request: Request, account: AccountDep, session: SessionDep,
                        body: Rotation | None = None) -> SecretRotated:
    channel = await owned_channel(session, account, channel_id)
    if channel.kind != "webhook":
        raise HTTPException(422, "only a webhook channel has a signing secret")
    settings, overlap = _settings(request), (body or Rotation()).overlap_minutes
    secret = new_signing_secret()
    now = datetime.now(UTC)
    if overlap:
        channel.previous_secret_ciphertext = channel.secret_ciphertext
        channel.previous_secret_expires_at = now + timedelta(minutes=overlap)
    else:
        channel.previous_secret_ciphertext, channel.previous_secret_expires_at = None, None
    channel.secret_ciphertext = _encrypt(settings, secret)
    channel.secret_rotated_at = now
    await session.commit()
    return SecretRotated(secret=secret, previous_secret_valid_until=channel.previous_secret_expires_at)


@router.post("/notification_channels/{channel_id}/test", response_model=DeliveryOut,
             responses={404: {"model": Refusal}, 503: {"model": Refusal}},
             summary="Send a test notification now (one attempt, no retry); the answer is its delivery log entry")
async def send_test(channel_id: ChannelId, request: Request, account: AccountDep, session: SessionDep
                    ) -> DeliveryOut:
    channel = await owned_channel(session, account, channel_id)
    settings = _settings(request)
    site = await session.get(Site, channel.site_id) if channel.site_id else None
    event_id = uuid.uuid4()
    body = Body(event_id=event_id, type="notification.test", occurred_at=datetime.now(UTC), account_id=account.id,
                site=SiteRef(id=site.id, name=site.name) if site else None,
                summary=f"A test notification for the channel \u201c{channel.name}\u201d: if you read this, it works.",
                url=settings.public_url.rstrip("/") + "/automation" if settings.public_url else None)
    try:
        target = target_of(settings, channel, datetime.now(UTC))
    except (SecretKeyMissing, SecretUnreadable) as error:
        raise HTTPException(503, str(error)) from None
    notification = Notification(event_id=str(event_id), dedupe_key=f"notification.test:{event_id}",
                                type=body.type, account_id=account.id, site_id=channel.site_id,
                                payload=body.model_dump(mode="json"))
    session.add(notification)
    await session.flush()
    delivery = NotificationDelivery(notification_id=notification.id, channel_id=channel.id, status="queued",
                                    attempts=1, last_attempt_at=func.now())
    session.add(delivery)
    await session.commit()  # the entry exists even if this request dies during the attempt
    attempt = await deliver(settings, target, body)
    delivery.status = "delivered" if attempt.ok else "failed"
    delivery.response_code, delivery.latency_ms = attempt.response_code, attempt.latency_ms
    delivery.response_excerpt, delivery.error = attempt.excerpt, attempt.error
    if attempt.ok:
        delivery.delivered_at = func.now()
    await session.commit()
    await session.refresh(delivery)
    return delivery_out(delivery, notification)


@router.get("/notification_channels/{channel_id}/deliveries", response_model=Deliveries, responses=NOT_FOUND,
            summary="The channel's delivery log, newest first")
async def list_deliveries(channel_id: ChannelId, account: AccountDep, session: SessionDep,
                          status: Annotated[Literal["queued", "retrying", "delivered", "failed"] | None,
                                            Query()] = None,
                          limit: Annotated[int, Query(ge=1, le=200)] = 50,
                          offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Deliveries:
    channel = await owned_channel(session, account, channel_id)
    where = [NotificationDelivery.channel_id == channel.id]
    if status is not None:
        where.append(NotificationDelivery.status == status)
    total = int(await session.scalar(select(func.count()).select_from(NotificationDelivery).where(*where)) or 0)
    rows = (await session.execute(
        select(NotificationDelivery, Notification)
        .join(Notification, Notification.id == NotificationDelivery.notification_id)
        .where(*where).order_by(NotificationDelivery.id.desc()).limit(limit).offset(offset))).all()
    return Deliveries(deliveries=[delivery_out(d, n) for d, n in rows], total=total)


@router.post("/notification_deliveries/{delivery_id}/redeliver", response_model=DeliveryOut, status_code=202,
             responses={404: {"model": Refusal}, 409: {"model": Refusal}},
             summary="Queue a failed (or delivered) notification again, with the same event_id")
async def redeliver(delivery_id: DeliveryId, account: AccountDep, session: SessionDep) -> DeliveryOut:
    row = (await session.execute(
        select(NotificationDelivery, Notification, NotificationChannel)
        .join(Notification, Notification.id == NotificationDelivery.notification_id)
        .join(NotificationChannel, NotificationChannel.id == NotificationDelivery.channel_id)
        .where(NotificationDelivery.id == delivery_id, NotificationChannel.account_id == account.id)
        .with_for_update(of=NotificationDelivery))).first()
    if row is None:
        raise HTTPException(404, f"delivery {delivery_id} not found")
    delivery, notification, channel = row
    if delivery.status in ("queued", "retrying"):
        raise HTTPException(409, f"delivery {delivery_id} is {delivery.status}: it is being delivered")
    if notification.type == "notification.test":
        raise HTTPException(409, "a test notification is not redelivered; send another test")
    delivery.status, delivery.error = "queued", None
    add_events(session, DeliverNotification(delivery_id=delivery.id, channel_id=channel.id,
                                            notification_event_id=uuid.UUID(notification.event_id)))
    await session.commit()
    return delivery_out(delivery, notification)


# --- the webhook, as the OpenAPI document's `webhooks` section shows it -------------------------

webhooks = APIRouter(tags=["notifications"])


@webhooks.post("notification", summary="A notification, POSTed to a webhook channel's URL",
               description="The body is the versioned `Notification` schema (fields are only added within a "
                           "version; ignore the ones you do not know). Verify `Automation-Signature` "
                           "(`t=<unix>,v1=<hex>`: HMAC-SHA256 of `<t>.<raw body>` with the channel's secret; two "
                           "`v1` during a rotation's overlap) and reject a `t` older than 5 minutes; dedupe on "
                           "`event_id`: a notification may arrive more than once. Answer 2xx within "
                           "AUTOMATION_NOTIFY_TIMEOUT_SECONDS; 5xx, 408, 429 and timeouts are retried with "
                           "backoff, other answers fail the delivery. See docs/notifications.md.")
async def notification_webhook(
        body: Body,
        signature: Annotated[str, Header(alias=SIGNATURE_HEADER, description="t=<unix>,v1=<hex>[,v1=<hex>]")],
        event_id: Annotated[str, Header(alias="Automation-Event-Id")],
        event_type: Annotated[NotificationType, Header(alias="Automation-Event-Type")]) -> None:
    """Documentation only: the receiver implements it."""
