"""Real local receivers for the notification tests: an HTTP server (plain asyncio) that verifies webhook
signatures with the recipe of docs/notifications.md and checks Slack's incoming-webhook format, and an SMTP
server (aiosmtpd) that keeps every message."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


def verify(header: str, body: bytes, secrets: list[str], tolerance: int = 300, now: float | None = None) -> bool:
    """The documented recipe, written out as a receiver in any language would: split the header on commas into
    key=value pairs, take `t`, refuse a timestamp more than `tolerance` seconds away, compute
    HMAC-SHA256(secret, f"{t}." + raw body) in hex and compare it in constant time with every `v1`."""
    pairs = [part.split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for key, value in pairs if key == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamps[0])) > tolerance:
        return False
    signed = stamps[0].encode() + b"." + body
    expected = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets]
    return any(hmac.compare_digest(value, e) for key, value in pairs if key == "v1" for e in expected)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Receiver:
    """An HTTP/1.1 server on 127.0.0.1 that records every POST. Webhook paths (`/hook/...`) need a valid
    signature for one of `secrets` (else 400); Slack paths (`/slack/...`) need Slack's JSON (text and blocks).
    `delay` holds each answer; `stop()` and `start()` simulate an outage on the same port."""

    port: int = field(default_factory=free_port)
    secrets: list[str] = field(default_factory=list)
    delay: float = 0.0
    answer_size: int = 2
    requests: list[Request] = field(default_factory=list)
    accepted: list[Request] = field(default_factory=list)
    refused: list[tuple[Request, str]] = field(default_factory=list)
    _server: asyncio.Server | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def check(self, request: Request) -> str | None:
        """Why the request is refused, or None."""
        if request.path.startswith("/hook"):
            if not verify(request.headers.get("automation-signature", ""), request.body, self.secrets):
                return "bad signature"
            if request.headers.get("automation-event-id") != request.json()["event_id"]:
                return "event id header differs from the body"
        elif request.path.startswith("/slack"):
            payload = request.json()
            if not isinstance(payload.get("text"), str) or not isinstance(payload.get("blocks"), list):
                return "not a Slack message"
            known = {"header", "section", "actions", "context", "divider"}
            if any(block.get("type") not in known for block in payload["blocks"]):
                return "unknown block type"
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _, path, _ = lines[0].split(" ", 2)
            pairs = (line.split(":", 1) for line in lines[1:] if ":" in line)
            headers = {k.strip().lower(): v.strip() for k, v in pairs}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Request(path, headers, body)
            self.requests.append(request)
            if self.delay:
                await asyncio.sleep(self.delay)
            problem = self.check(request)
            if problem is None:
                self.accepted.append(request)
                status, text = "200 OK", ("ok" if path.startswith("/slack") else "x" * self.answer_size)
            else:
                self.refused.append((request, problem))
                status, text = "400 Bad Request", problem
            data = text.encode()
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(data)}\r\nContent-Type: text/plain\r\n"
                         f"Connection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def bodies(self, prefix: str) -> list[dict[str, Any]]:
        return [r.json() for r in self.accepted if r.path.startswith(prefix)]


class Mailbox:
    """aiosmtpd's handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server on 127.0.0.1 (plain, no TLS: AUTOMATION_SMTP_TLS=none) in its own thread."""
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()
