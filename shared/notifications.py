"""Notifications: the versioned body every channel receives, its signature, and how it is shown.

The body (`Notification`, schema version 1) is what a webhook receives as JSON, and what the email and
Slack messages are rendered from. Fields are only ever added within a version; receivers should ignore
fields they do not know. A webhook request is signed as Stripe signs its events:

    Automation-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>[,v1=<...>]

with the channel's secret (the whole `whsec_...` string as the key). During a rotation's overlap there
are two `v1` values, the new secret's first; a receiver accepts the request when any `v1` matches one of
its secrets and `t` is recent (`verify_signature`, the recipe in docs/notifications.md).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import time
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SIGNATURE_HEADER = "Automation-Signature"
EVENT_ID_HEADER = "Automation-Event-Id"
EVENT_TYPE_HEADER = "Automation-Event-Type"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300

NotificationType = Literal["run.completed", "run.failed", "run.paused", "content.ready_for_review",
                           "content.publish_failed", "credits.low", "notification.test"]
# The types a channel can subscribe to (the test event goes to the channel it is sent from only).
SUBSCRIBABLE: tuple[str, ...] = ("run.completed", "run.failed", "run.paused", "content.ready_for_review",
                                 "content.publish_failed", "credits.low")


class SiteRef(BaseModel):
    id: int
    name: str


class RunInfo(BaseModel):
    run_id: str
    status: str = Field(description="running, paused, completed or failed.")
    trigger: str = Field(description="manual or scheduled.")
    current_stage: int
    started_at: datetime | None = None
    completed_at: datetime | None = None
    credits_used: int = 0
    estimated_credits: int = 0


class Counts(BaseModel):
    """What the run made so far (each stage's outputs); `in_review` is the articles waiting for a person."""

    keywords: int = 0
    clusters: int = 0
    ideas: int = 0
    tasks: int = 0
    content: int = 0
    images: int = 0
    in_review: int = 0


class Credits(BaseModel):
    balance: int = Field(description="The account's balance when the notification was made.")
    required: int | None = Field(None, description="What the next run needs to start (estimate x buffer).")
    estimate: int | None = Field(None, description="The next run's estimated credits.")
    next_run_at: datetime | None = Field(None, description="The site's next scheduled run (UTC).")


class ContentRef(BaseModel):
    id: int
    title: str
    target: str | None = Field(None, description="The publish target's name.")
    error: str | None = None


class Notification(BaseModel):
    """The body of every notification (schema version 1): what a webhook receives as JSON."""

    model_config = ConfigDict(extra="ignore")

    version: Literal[1] = Field(1, description="Schema version; fields are only added within a version.")
    event_id: uuid.UUID = Field(description="Unique per notification, the same on every retry: dedupe on it.")
    type: NotificationType
    occurred_at: datetime = Field(description="When the notification was made (UTC).")
    account_id: int
    site: SiteRef | None = None
    run: RunInfo | None = None
    counts: Counts | None = None
    credits: Credits | None = None
    content: ContentRef | None = None
    reason: str | None = Field(None, description="Why a run paused or failed, or a publication failed.")
    reason_kind: Literal["credits", "manual", "error"] | None = Field(
        None, description="credits: paused for credits (add credits, then resume); manual: paused by a person; "
                          "error: failed.")
    summary: str = Field(description="One line for people.")
    url: str | None = Field(None, description="The dashboard (AUTOMATION_PUBLIC_URL), when set.")

    def body(self) -> bytes:
        """The JSON a webhook receives (the signature covers exactly these bytes)."""
        return self.model_dump_json().encode()


# --- webhook secrets and signatures ------------------------------------------------------------


def new_signing_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `"<timestamp>." + body` with `secret`."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(signing_secrets: list[str], body: bytes, timestamp: int | None = None) -> str:
    """`t=<unix>,v1=<hex>` with one `v1` per secret (the current one first, then one in its overlap)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={stamp}", *(f"v1={signature(s, stamp, body)}" for s in signing_secrets)])


def verify_signature(secret: str, header: str, body: bytes, *, tolerance: int = DEFAULT_TOLERANCE_SECONDS,
                     now: float | None = None) -> bool:
    """The receiver's check: a `v1` matches `secret` over the raw body, and `t` is within `tolerance` seconds."""
    parts = [item.split("=", 1) for item in header.split(",") if "=" in item]
    stamps = [value for key, value in parts if key.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit():
        return False
    stamp = int(stamps[0])
    if abs((time.time() if now is None else now) - stamp) > tolerance:
        return False
    expected = signature(secret, stamp, body)
    return any(key.strip() == "v1" and hmac.compare_digest(value.strip(), expected) for key, value in parts)


# --- how a notification reads -----------------------------------------------------------------


TITLES = {
    "run.completed": "Run completed", "run.failed": "Run failed", "run.paused": "Run paused",
    "content.ready_for_review": "Content ready for review", "content.publish_failed": "Publishing failed",
    "credits.low": "Credits low", "notification.test": "Test notification",
}


def title(note: Notification) -> str:
    where = f" on {note.site.name}" if note.site else ""
    if note.type == "content.ready_for_review" and note.counts is not None:
        return f"{note.counts.in_review} articles ready for review{where}"
    if note.type == "run.paused" and note.reason_kind == "credits":
        return f"Run paused{where}: insufficient credits"
    if note.type == "credits.low":
        return f"Credits low{' for ' + note.site.name if note.site else ''}"
    return f"{TITLES[note.type]}{where}"


def facts(note: Notification) -> list[tuple[str, str]]:
    """(label, value) lines shared by the email and Slack renderings."""
    rows: list[tuple[str, str]] = []
    if note.site:
        rows.append(("Site", f"{note.site.name} (#{note.site.id})"))
    if note.run:
        run = note.run
        rows.append(("Run", f"{run.run_id} ({run.status}, {run.trigger}, stage {run.current_stage})"))
        rows.append(("Credits used", f"{note.run.credits_used} (estimate {note.run.estimated_credits})"))
    if note.reason:
        rows.append(("Reason", note.reason))
    if note.counts:
        c = note.counts
        rows.append(("Made", f"{c.clusters} clusters, {c.ideas} ideas, {c.tasks} tasks, {c.content} articles, "
                             f"{c.images} images; {c.in_review} in review"))
    if note.credits:
        line = f"balance {note.credits.balance}"
        if note.credits.required is not None:
            line += f", the next run needs {note.credits.required}"
        if note.credits.next_run_at is not None:
            line += f" (due {note.credits.next_run_at:%Y-%m-%d %H:%M} UTC)"
        rows.append(("Credits", line))
    if note.content:
        rows.append(("Article", f"{note.content.title} (#{note.content.id})"
                                + (f" on {note.content.target}" if note.content.target else "")))
        if note.content.error:
            rows.append(("Error", note.content.error))
    return rows


def email_text(note: Notification) -> str:
    lines = [title(note), "", note.summary, ""]
    lines += [f"{label}: {value}" for label, value in facts(note)]
    if note.url:
        lines += ["", f"Dashboard: {note.url}"]
    lines += ["", f"Event {note.event_id} ({note.type}) at {note.occurred_at:%Y-%m-%d %H:%M:%S} UTC"]
    return "\n".join(lines) + "\n"


def email_html(note: Notification) -> str:
    esc = html.escape
    rows = "".join(f"<tr><th align='left' style='padding-right:12px'>{esc(label)}</th><td>{esc(value)}</td></tr>"
                   for label, value in facts(note))
    link = f"<p><a href=\"{esc(note.url, quote=True)}\">Open the dashboard</a></p>" if note.url else ""
    return (f"<!doctype html><html><body><h2>{esc(title(note))}</h2><p>{esc(note.summary)}</p>"
            f"<table>{rows}</table>{link}<p style='color:#777;font-size:12px'>Event {note.event_id} "
            f"({esc(note.type)})</p></body></html>")


def slack_payload(note: Notification) -> dict[str, Any]:
    """An incoming-webhook message: a header, the summary, the facts as fields, a link to the dashboard."""
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(value)}"} for label, value in facts(note)][:10]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(note)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(note.summary)[:3000]}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if note.url:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open the dashboard"}, "url": note.url}]})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"{note.type} · event {note.event_id}"}]})
    return {"text": f"{title(note)}: {note.summary}"[:3000], "blocks": blocks}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
