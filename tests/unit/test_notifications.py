"""Notification signatures and address checks, without I/O: the signature a receiver verifies with the
documented recipe, both secrets during a rotation's overlap, and the addresses a webhook may not reach."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from shared.notifications import Notification, signature_header, slack_payload, verify_signature
from shared.notify_delivery import TargetRefused, resolve_target
from tests.notify_receivers import verify

BODY = b'{"version":1,"type":"run.completed"}'


def test_a_signature_verifies_over_the_timestamp_and_the_raw_body_only() -> None:
    header = signature_header(["whsec_a"], BODY)
    assert verify_signature("whsec_a", header, BODY) and verify(header, BODY, ["whsec_a"])
    assert not verify_signature("whsec_a", header, BODY + b" ")
    assert not verify_signature("whsec_b", header, BODY)
    assert not verify_signature("whsec_a", header, BODY, now=time.time() + 301)  # replayed too late
    old = signature_header(["whsec_a"], BODY, timestamp=int(time.time()) - 3600)
    assert not verify_signature("whsec_a", old, BODY) and not verify(old, BODY, ["whsec_a"])
    assert not verify_signature("whsec_a", header.replace("t=", "t=1"), BODY)
    assert not verify_signature("whsec_a", "v1=" + header.split("v1=")[1], BODY)  # no timestamp


def test_during_an_overlap_either_secret_verifies() -> None:
    header = signature_header(["whsec_new", "whsec_old"], BODY)
    assert header.count("v1=") == 2
    for secret in ("whsec_new", "whsec_old"):
        assert verify_signature(secret, header, BODY) and verify(header, BODY, [secret])
    assert not verify_signature("whsec_other", header, BODY)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://10.0.0.8/", "http://172.16.3.4/", "http://192.168.1.1/", "http://169.254.169.254/",
    "http://100.64.0.1/", "http://0.0.0.0/", "http://[::1]/", "http://[fd00::1]/", "http://[fe80::1]/",
    "http://[::ffff:10.0.0.1]/", "http://224.0.0.1/", "ftp://8.8.8.8/", "http://u:p@8.8.8.8/", "http://8.8.8.8/ x"])
async def test_private_link_local_and_odd_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        await resolve_target(url, allow_private=False)


async def test_public_addresses_pass_and_the_operator_can_allow_private_ones() -> None:
    assert await resolve_target("https://8.8.8.8/hook", allow_private=False) == ["8.8.8.8"]
    assert await resolve_target("http://127.0.0.1:8080/hook", allow_private=True) == ["127.0.0.1"]


def test_slack_messages_have_a_fallback_text_blocks_and_a_dashboard_button() -> None:
    note = Notification(event_id=uuid.uuid4(), type="notification.test", occurred_at=datetime.now(UTC),
                        account_id=1, summary="<b>hi</b> & bye", url="https://x.example/automation")
    payload = slack_payload(note)
    assert payload["text"].startswith("Test notification")
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "actions", "context"]
    assert payload["blocks"][1]["text"]["text"] == "&lt;b&gt;hi&lt;/b&gt; &amp; bye"
    assert payload["blocks"][2]["elements"][0]["url"] == "https://x.example/automation"
