"""Standard Webhooks signatures (https://www.standardwebhooks.com/)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def generate_secret() -> str:
    """A new signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


@functools.lru_cache(maxsize=1024)
def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """One `v1,<base64 HMAC-SHA256>` signature over `id.timestamp.body`."""
    mac = hmac.new(_key(secret), digestmod=hashlib.sha256)
    mac.update(f"{msg_id}.{timestamp_s}.".encode())
    mac.update(body)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per active secret, space-separated.

    During a rotation grace period both the new and the old secret sign, so a
    receiver holding either one verifies.
    """
    return " ".join(sign(s, msg_id, timestamp_s, body) for s in secrets_)


def body_hmac(secret: str, algorithm: str, body: bytes) -> str:
    """Meshes-style signature: `<algorithm>=<hex HMAC of the exact body>`."""
    digest = hmac.new(
        _key(secret), body, hashlib.sha512 if algorithm == "sha512" else hashlib.sha256
    )
    return f"{algorithm}={digest.hexdigest()}"
