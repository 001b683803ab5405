"""Signatures are checked with the official `standardwebhooks` library."""

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from meshes_gateway.delivery.envelope import build_request
from meshes_gateway.delivery.signing import generate_secret, signature_header
from meshes_gateway.storage.records import Claimed
from meshes_gateway.webhooks import Target

NOW_MS = 1_767_225_600_000


def delivery() -> Claimed:
    return Claimed(
        rule_event_id="018f0000-0000-7000-8000-000000000001",
        event_id="018f0000-0000-7000-8000-000000000002",
        workspace_id="018f0000-0000-7000-8000-000000000003",
        rule_id="018f0000-0000-7000-8000-000000000004",
        connection_id="018f0000-0000-7000-8000-000000000005",
        attempt_count=0,
        schedule_attempts=0,
        trigger="scheduled",
        event="invoice.paid",
        resource=None,
        resource_id=None,
        payload=b'{"a":1}',
        event_created_at_ms=NOW_MS,
    )


def target(*secrets: str) -> Target:
    return Target(
        id="c",
        workspace_id="w",
        url="https://example.invalid/",
        method="POST",
        payload_format="wrapped",
        headers=(),
        signing_secrets=secrets,
        timeout_s=None,
        active=True,
        inactive_reason=None,
    )


def verify(secret: str, body: bytes, headers: list[tuple[str, str]]) -> object:
    # The library checks the timestamp against the real clock: sign with "now".
    return Webhook(secret).verify(body, dict(headers))


def test_secret_shape() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert secret != generate_secret()


def test_official_library_verifies() -> None:
    secret = generate_secret()
    now_ms = int(time.time() * 1000)
    body, headers = build_request(target(secret), delivery(), now_ms)
    assert verify(secret, body, headers) == {
        "uuid": delivery().event_id,
        "event": "invoice.paid",
        "resource": None,
        "resource_id": None,
        "payload": {"a": 1},
        "time_created": NOW_MS,
        "time_sent": now_ms,
    }
    assert dict(headers)["webhook-id"] == delivery().rule_event_id


def test_both_secrets_verify_during_rotation() -> None:
    old, new = generate_secret(), generate_secret()
    body, headers = build_request(target(new, old), delivery(), int(time.time() * 1000))
    assert len(dict(headers)["webhook-signature"].split(" ")) == 2
    verify(old, body, headers)
    verify(new, body, headers)
    with pytest.raises(WebhookVerificationError):
        verify(generate_secret(), body, headers)


def test_tampered_body_fails() -> None:
    secret = generate_secret()
    sig = signature_header([secret], "msg_1", 1_700_000_000, b"{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(
            b'{"x":1}',
            {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": sig},
        )
