"""Encryption of secrets at rest (API secret keys, signing secrets, endpoint credentials).

Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`. The key comes from
`MESHES_ENCRYPTION_KEY` or from `<data dir>/encryption.key`, made on first
start with mode 0600. Losing the key makes stored secrets unreadable, which
is the point: a copied database file alone reveals none of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken

if TYPE_CHECKING:
    from meshes_gateway.storage.base import Store

KEY_FILE = "encryption.key"
_CHECK = b"meshes-gateway key check"


class SecretBoxError(Exception):
    """A stored secret cannot be decrypted with the configured key."""


class SecretBox:
    """Encrypts and decrypts small secrets."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def load(cls, data_dir: Path, configured_key: str) -> SecretBox:
        """The configured key, else the key file in the data dir (created if missing)."""
        if configured_key:
            return cls(configured_key.encode())
        path = data_dir / KEY_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting at once must not write two different keys.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def seal(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def open(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise SecretBoxError("stored secret cannot be decrypted with this key") from exc


async def check_key(store: Store, box: SecretBox) -> None:
    """Refuse to start with a key other than the one the stored secrets were sealed with.

    The first start stores a sealed check value; later starts (and every other
    replica) must open it. A wrong key would otherwise only show up later, as
    deliveries that cannot be signed.
    """
    sealed = await store.claim_meta("key_check", box.seal(_CHECK).decode())
    try:
        ok = box.open(sealed.encode()) == _CHECK
    except SecretBoxError:
        ok = False
    if not ok:
        raise SecretBoxError(
            "the encryption key differs from the one this database's secrets were sealed with"
        )
