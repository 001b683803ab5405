"""The organization and its API key, made on first start.

The organization id is a UUIDv4 because the official node client refuses other
versions. Access keys are `mk_` + 24 URL-safe characters and secret keys 43
(32 random bytes), the shapes the official clients check for.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog

from meshes_gateway.clock import Clock
from meshes_gateway.config import Settings
from meshes_gateway.secretbox import SecretBox
from meshes_gateway.storage.base import Store
from meshes_gateway.storage.records import ApiKey

log = structlog.get_logger(__name__)
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class Credentials:
    org_id: str
    access_key: str
    secret_key: str


def new_access_key() -> str:
    return "mk_" + secrets.token_urlsafe(18)


def new_secret_key() -> str:
    return secrets.token_urlsafe(32)


async def ensure_organization(
    store: Store, box: SecretBox, settings: Settings, clock: Clock
) -> str:
    """The organization id; on an empty database also the first API key.

    Pre-seeded keys (`MESHES_ACCESS_KEY`/`MESHES_SECRET_KEY`) are stored on every
    start so a container's environment stays the source of truth.
    """
    org_id = await store.get_meta("org_id")
    if org_id is None:
        proposed = settings.org_id or str(uuid.uuid4())
        # Replicas starting together on an empty database: the first one's id wins.
        org_id = await store.claim_meta("org_id", proposed)
        if org_id == proposed and not settings.access_key:
            creds = Credentials(org_id, new_access_key(), new_secret_key())
            await _store_key(store, box, creds.access_key, creds.secret_key, clock)
            path = _write_credentials(settings.data_dir, creds)
            log.info("credentials_created", path=str(path), access_key=creds.access_key)
    elif settings.org_id and settings.org_id != org_id:
        log.warning("org_id_mismatch_ignored", stored=org_id)
    if settings.access_key:
        await _store_key(store, box, settings.access_key, settings.secret_key, clock)
    return org_id


async def _store_key(store: Store, box: SecretBox, access: str, secret: str, clock: Clock) -> None:
    await store.put_api_key(
        ApiKey(
            access_key=access, secret_enc=box.seal(secret.encode()), created_at_ms=clock.now_ms()
        )
    )


def _write_credentials(data_dir: Path, creds: Credentials) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CREDENTIALS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(
            {
                "org_id": creds.org_id,
                "access_key": creds.access_key,
                "secret_key": creds.secret_key,
            },
            f,
            indent=2,
        )
    os.chmod(path, 0o600)
    return path
