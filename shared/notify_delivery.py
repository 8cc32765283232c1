"""Delivering one notification to one channel: a signed webhook POST, a Slack incoming-webhook POST, or an
email over SMTP. Used by the notify consumer (every delivery) and the API ("send test event").

Safety: a webhook or Slack URL must resolve only to public addresses (no loopback, private, link-local,
shared, multicast or reserved ones) unless `AUTOMATION_NOTIFY_ALLOW_PRIVATE_TARGETS` is set; it is checked
when a channel is saved and again at every delivery, and the request goes to the address that was checked
(the name is not resolved a second time), with redirects not followed. Of a response only the status,
the latency and its first 500 characters are kept; secrets are never logged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
import httpx

from shared.models import NotificationChannel
from shared.notifications import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    Notification,
    email_html,
    email_text,
    signature_header,
    slack_payload,
    title,
)
from shared.secrets import decrypt
from shared.settings import Settings

EXCERPT_CHARS = 500
READ_LIMIT = 4096  # bytes of a response body read at most, for the excerpt
USER_AGENT = "automation-notify/1"
# Answers worth retrying; any other 4xx (the URL is gone, the payload refused) fails at once.
RETRYABLE_STATUS = {408, 409, 425, 429}
DNS_TIMEOUT_SECONDS = 5.0


class TargetRefused(Exception):
    """The URL is not acceptable (scheme, or it resolves to an address notifications may not reach)."""

    retryable = False


class DeliveryError(Exception):
    """A delivery attempt failed; `retryable` says whether another attempt can help (the failure routing reads it)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Attempt:
    """The outcome of one attempt, as the delivery log keeps it."""

    ok: bool
    response_code: int | None = None
    latency_ms: int | None = None
    excerpt: str | None = None
    error: str | None = None
    retryable: bool = False


@dataclass(frozen=True)
class Target:
    """A channel with its secrets decrypted, for one delivery."""

    channel_id: int
    kind: str
    url: str | None = None
    emails: list[str] = field(default_factory=list)
    signing_secrets: list[str] = field(default_factory=list)


def target_of(settings: Settings, channel: NotificationChannel, now: datetime) -> Target:
    """Decrypt what the channel needs; the previous webhook secret signs too while its overlap lasts."""
    if channel.kind == "webhook":
        assert channel.secret_ciphertext is not None
        signing = [decrypt(settings, channel.secret_ciphertext)]
        if channel.previous_secret_ciphertext and channel.previous_secret_expires_at \
                and channel.previous_secret_expires_at > now:
            signing.append(decrypt(settings, channel.previous_secret_ciphertext))
        return Target(channel.id, "webhook", url=channel.url, signing_secrets=signing)
    if channel.kind == "slack":
        assert channel.url_ciphertext is not None
        return Target(channel.id, "slack", url=decrypt(settings, channel.url_ciphertext))
    return Target(channel.id, "email", emails=[str(e) for e in channel.emails])


# --- where a URL may go -----------------------------------------------------------------------


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def resolve_target(url: str, allow_private: bool) -> list[str]:
    """The addresses `url`'s host resolves to, all of them public (or any, when allowed); raises
    `TargetRefused` for a bad URL or a non-public address, `DeliveryError` (retryable) when DNS fails."""
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise TargetRefused("the URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        raise TargetRefused("the URL is not valid") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("the URL must be http:// or https:// with a host name")
    if parts.username or parts.password:
        raise TargetRefused("the URL must not carry a user name or password")
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host)
        addresses = [str(literal)]
    except ValueError:
        try:
            infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
                host, port or 443, type=socket.SOCK_STREAM), timeout=DNS_TIMEOUT_SECONDS)
        except (OSError, TimeoutError) as error:
            raise DeliveryError(f"cannot resolve {host}: {error or 'timed out'}", retryable=True) from None
        except (UnicodeError, ValueError):
            raise TargetRefused(f"{host[:100]!r} is not a valid host name") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise DeliveryError(f"{host} resolves to no address", retryable=True)
    if not allow_private:
        refused = [a for a in addresses if not _allowed(ipaddress.ip_address(a.split("%")[0]))]
        if refused:
            raise TargetRefused(f"{host} resolves to {refused[0]}, a loopback, private, link-local or reserved "
                                "address; notifications only go to public addresses "
                                "(AUTOMATION_NOTIFY_ALLOW_PRIVATE_TARGETS allows others)")
    return addresses


async def check_url(settings: Settings, url: str) -> None:
    """At save time: the URL is acceptable now (`TargetRefused` or `DeliveryError` otherwise)."""
    await resolve_target(url, settings.notify_allow_private_targets)


# --- sending ------------------------------------------------------------------------------------


def _excerpt(data: bytes) -> str:
    return data.decode("utf-8", "replace")[:EXCERPT_CHARS]


async def _post(settings: Settings, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
    """POST `body` to the address `url` resolved to (checked), keeping the status and a short excerpt."""
    started = time.monotonic()
    try:
        addresses = await resolve_target(url, settings.notify_allow_private_targets)
    except DeliveryError as error:
        return Attempt(ok=False, error=str(error), retryable=True)
    except TargetRefused as error:
        return Attempt(ok=False, error=str(error), retryable=False)
    parts = urlsplit(url)
    pinned = httpx.URL(url).copy_with(host=addresses[0])
    port = f":{parts.port}" if parts.port else ""
    request_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                       "Host": f"{parts.hostname}{port}", **headers}
    try:
        async with httpx.AsyncClient(timeout=settings.notify_timeout_seconds, follow_redirects=False,
                                     trust_env=False) as http:
            request = http.build_request("POST", pinned, content=body, headers=request_headers,
                                         extensions={"sni_hostname": parts.hostname})
            response = await http.send(request, stream=True)
            try:
                data = b""
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) >= READ_LIMIT:
                        break
            finally:
                await response.aclose()
    except httpx.HTTPError as error:
        latency = int((time.monotonic() - started) * 1000)
        return Attempt(ok=False, latency_ms=latency, error=f"{type(error).__name__}: {error}"[:1000], retryable=True)
    latency = int((time.monotonic() - started) * 1000)
    code = response.status_code
    if 200 <= code < 300:
        return Attempt(ok=True, response_code=code, latency_ms=latency, excerpt=_excerpt(data))
    retryable = code >= 500 or code in RETRYABLE_STATUS
    reason = "redirects are not followed" if 300 <= code < 400 else f"the receiver answered {code}"
    return Attempt(ok=False, response_code=code, latency_ms=latency, excerpt=_excerpt(data), error=reason,
                   retryable=retryable)


async def send_webhook(settings: Settings, target: Target, note: Notification) -> Attempt:
    assert target.url is not None
    body = note.body()
    return await _post(settings, target.url, body, {
        SIGNATURE_HEADER: signature_header(target.signing_secrets, body),
        EVENT_ID_HEADER: str(note.event_id), EVENT_TYPE_HEADER: note.type})


async def send_slack(settings: Settings, target: Target, note: Notification) -> Attempt:
    assert target.url is not None
    return await _post(settings, target.url, json.dumps(slack_payload(note)).encode(), {})


def email_message(settings: Settings, target: Target, note: Notification) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(target.emails)
    message["Subject"] = title(note)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{note.event_id}.{target.channel_id}@automation>"
    message[EVENT_ID_HEADER] = str(note.event_id)
    message[EVENT_TYPE_HEADER] = note.type
    message.set_content(email_text(note))
    message.add_alternative(email_html(note), subtype="html")
    return message


async def send_email(settings: Settings, target: Target, note: Notification) -> Attempt:
    if not settings.smtp_host:
        return Attempt(ok=False, error="AUTOMATION_SMTP_HOST is not set: email notifications cannot be sent")
    if not target.emails:
        return Attempt(ok=False, error="the channel has no email address")
    started = time.monotonic()
    options: dict[str, Any] = {
        "hostname": settings.smtp_host, "port": settings.smtp_port, "timeout": settings.notify_timeout_seconds,
        "use_tls": settings.smtp_tls == "tls", "start_tls": settings.smtp_tls == "starttls"}
    if settings.smtp_username:
        options.update(username=settings.smtp_username, password=settings.smtp_password.get_secret_value())
    try:
        refused, reply = await aiosmtplib.send(email_message(settings, target, note), **options)
    except aiosmtplib.SMTPResponseException as error:
        latency = int((time.monotonic() - started) * 1000)
        return Attempt(ok=False, response_code=error.code, latency_ms=latency, excerpt=_excerpt(error.message.encode()),
                       error=f"the SMTP server answered {error.code}", retryable=400 <= error.code < 500)
    except aiosmtplib.SMTPRecipientsRefused as error:
        latency = int((time.monotonic() - started) * 1000)
        return Attempt(ok=False, latency_ms=latency, error=f"every recipient was refused: {error}"[:1000])
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        latency = int((time.monotonic() - started) * 1000)
        return Attempt(ok=False, latency_ms=latency, error=f"{type(error).__name__}: {error}"[:1000], retryable=True)
    latency = int((time.monotonic() - started) * 1000)
    note_refused = f"; refused: {', '.join(sorted(refused))}" if refused else ""
    return Attempt(ok=True, response_code=250, latency_ms=latency, excerpt=_excerpt((reply + note_refused).encode()))


async def deliver(settings: Settings, target: Target, note: Notification) -> Attempt:
    """One attempt to deliver `note` to `target`; never raises for the receiver's failures."""
    if target.kind == "webhook":
        return await send_webhook(settings, target, note)
    if target.kind == "slack":
        return await send_slack(settings, target, note)
    return await send_email(settings, target, note)
