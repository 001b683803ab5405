"""Webhook connection configuration: what is public, what is sealed, what the sender uses."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import msgspec

from meshes_gateway.models import SigningOptions, WebhookAuth, WebhookMetadata
from meshes_gateway.secretbox import SecretBox
from meshes_gateway.storage.records import Connection

ROTATION_GRACE_MS = 24 * 3600 * 1000


class ConnectionSecrets(msgspec.Struct, kw_only=True):
    """The parts of a connection that are encrypted at rest and never returned after creation."""

    signing_secret: str
    previous_signing_secret: str | None = None
    previous_expires_at_ms: int | None = None
    auth: WebhookAuth | None = None


_secrets_encode = msgspec.json.Encoder().encode
_secrets_decode = msgspec.json.Decoder(ConnectionSecrets).decode


def seal(box: SecretBox, secrets: ConnectionSecrets) -> bytes:
    return box.seal(_secrets_encode(secrets))


def unseal(box: SecretBox, token: bytes) -> ConnectionSecrets:
    return _secrets_decode(box.open(token))


def public_metadata(metadata: WebhookMetadata) -> dict[str, Any]:
    """The metadata as stored and shown: credentials reduced to what identifies them."""
    shown: dict[str, Any] = msgspec.to_builtins(metadata)
    shown.pop("signing_secret", None)
    auth = metadata.auth or WebhookAuth()
    shown["auth"] = {"type": auth.type}
    if auth.type == "basic" and auth.username is not None:
        shown["auth"]["username"] = auth.username
    if auth.type == "header" and auth.header is not None:
        shown["auth"]["header"] = auth.header
    return shown


def parse_metadata(raw: dict[str, Any]) -> WebhookMetadata:
    """Validate a webhook `metadata` object (raises `msgspec.ValidationError`)."""
    return msgspec.convert(raw, WebhookMetadata)


@dataclass(frozen=True, slots=True)
class Target:
    """Everything the sender needs to deliver to one connection, secrets decrypted."""

    id: str
    workspace_id: str
    url: str
    method: str
    payload_format: str
    headers: tuple[tuple[str, str], ...]
    signing_secrets: tuple[str, ...]
    timeout_s: float | None
    active: bool
    inactive_reason: str | None
    hmac_algorithm: str | None = None
    hmac_header: str = "X-Meshes-Signature"
    # When the previous signing secret stops signing: the cached target is rebuilt then.
    expires_at_ms: int | None = None


def _auth_headers(auth: WebhookAuth | None) -> list[tuple[str, str]]:
    if auth is None or auth.type == "none":
        return []
    if auth.type == "basic":
        pair = f"{auth.username or ''}:{auth.password or ''}".encode()
        return [("Authorization", "Basic " + base64.b64encode(pair).decode())]
    if auth.type == "bearer":
        return [("Authorization", f"Bearer {auth.token or ''}")]
    return [(auth.header or "Authorization", auth.value or "")]


def build_target(connection: Connection, box: SecretBox, now_ms: int) -> Target:
    """The sender's view of a stored connection."""
    return make_target(
        connection.id,
        connection.workspace_id,
        msgspec.convert(connection.metadata, _StoredMetadata),
        unseal(box, connection.secrets_enc),
        now_ms,
        active=connection.active,
        inactive_reason=connection.inactive_reason,
    )


def make_target(
    connection_id: str,
    workspace_id: str,
    metadata: WebhookMetadata | _StoredMetadata,
    secrets: ConnectionSecrets,
    now_ms: int,
    *,
    active: bool = True,
    inactive_reason: str | None = None,
) -> Target:
    """A target from metadata and secrets (also for a connection not saved yet)."""
    signing = [secrets.signing_secret]
    expires_at_ms = None
    if (
        secrets.previous_signing_secret
        and secrets.previous_expires_at_ms is not None
        and secrets.previous_expires_at_ms > now_ms
    ):
        signing.append(secrets.previous_signing_secret)
        expires_at_ms = secrets.previous_expires_at_ms
    options = metadata.signing or SigningOptions()
    headers = list(metadata.headers.items()) + _auth_headers(secrets.auth)
    return Target(
        id=connection_id,
        workspace_id=workspace_id,
        url=metadata.url,
        method=metadata.method,
        payload_format=metadata.payload_format,
        headers=tuple(headers),
        signing_secrets=tuple(signing),
        timeout_s=metadata.timeout_s,
        active=active,
        inactive_reason=inactive_reason,
        hmac_algorithm=options.hmac,
        hmac_header=options.header,
        expires_at_ms=expires_at_ms,
    )


class _StoredMetadata(msgspec.Struct, kw_only=True):
    """The stored (public) metadata, read back leniently."""

    url: str
    method: str = "POST"
    payload_format: str = "wrapped"
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeout_s: float | None = None
    signing: SigningOptions | None = None
