"""The HTTP request a delivery sends: body (Meshes envelope or raw payload) and headers."""

from __future__ import annotations

import msgspec

from meshes_gateway import __version__
from meshes_gateway.delivery.signing import body_hmac, signature_header
from meshes_gateway.storage.records import Claimed
from meshes_gateway.webhooks import Target

USER_AGENT = f"meshes-gateway/{__version__}"


class _Envelope(msgspec.Struct):
    """Meshes' wrapped body; times in milliseconds."""

    uuid: str
    event: str
    resource: str | None
    resource_id: str | None
    payload: msgspec.Raw
    time_created: int
    time_sent: int


_encode = msgspec.json.Encoder().encode


def build_request(
    target: Target, delivery: Claimed, now_ms: int
) -> tuple[bytes, list[tuple[str, str]]]:
    """The body and headers for one attempt, signed with every active secret.

    `webhook-id` is the rule event id, so it stays the same across retries and
    replays and a receiver can de-duplicate on it.
    """
    headers: list[tuple[str, str]] = list(target.headers)
    if target.payload_format == "raw":
        body = delivery.payload
        headers.append(("X-Meshes-Event", delivery.event))
        headers.append(("X-Meshes-Event-Id", delivery.event_id))
        if delivery.resource is not None:
            headers.append(("X-Meshes-Resource", delivery.resource))
        if delivery.resource_id is not None:
            headers.append(("X-Meshes-Resource-Id", delivery.resource_id))
        headers.append(("X-Meshes-Time-Created", str(delivery.event_created_at_ms)))
    else:
        body = _encode(
            _Envelope(
                uuid=delivery.event_id,
                event=delivery.event,
                resource=delivery.resource,
                resource_id=delivery.resource_id,
                payload=msgspec.Raw(delivery.payload),
                time_created=delivery.event_created_at_ms,
                time_sent=now_ms,
            )
        )
    if target.hmac_algorithm is not None:
        headers.append(
            (target.hmac_header, body_hmac(target.signing_secrets[0], target.hmac_algorithm, body))
        )
    timestamp_s = now_ms // 1000
    headers += [
        ("Content-Type", "application/json"),
        ("User-Agent", USER_AGENT),
        ("Accept-Encoding", "identity"),
        ("webhook-id", delivery.rule_event_id),
        ("webhook-timestamp", str(timestamp_s)),
        (
            "webhook-signature",
            signature_header(target.signing_secrets, delivery.rule_event_id, timestamp_s, body),
        ),
    ]
    return body, headers
