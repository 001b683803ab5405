"""`Idempotency-Key`: the same key within its lifetime replays the first answer.

The first answer is written in the same transaction as the events it created,
so a replay after a crash can never disagree with what was stored. Requests
with the same key that arrive while the first is still being committed wait
for it instead of creating a second copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass

from meshes_gateway.clock import Clock
from meshes_gateway.errors import BadRequest, Unprocessable
from meshes_gateway.storage.base import Store

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


def request_digest(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


class IdempotencyGate:
    """Finds earlier answers and serialises concurrent requests with the same key."""

    def __init__(self, store: Store, clock: Clock, ttl_s: int) -> None:
        self._store = store
        self._clock = clock
        self._ttl_ms = ttl_s * 1000
        self._inflight: dict[tuple[str, str], tuple[bytes, asyncio.Future[Answer | None]]] = {}

    @staticmethod
    def check_key(key: str) -> None:
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")

    async def claim(self, scope: str, key: str, digest: bytes) -> Answer | None:
        """The earlier answer for this key, or None after reserving the key for this request.

        After None the caller must call `finish` or `abort`.
        """
        while True:
            pending = self._inflight.get((scope, key))
            if pending is not None:
                first_digest, first = pending
                self._same_body(first_digest, digest)
                answer = await asyncio.shield(first)
                if answer is not None:
                    return answer
                continue  # the first request failed: this one may try
            stored = await self._store.get_idempotency(scope, key)
            if stored is not None and stored.created_at_ms > self._clock.now_ms() - self._ttl_ms:
                self._same_body(stored.request_digest, digest)
                return Answer(stored.status, stored.body)
            if (scope, key) in self._inflight:
                continue  # another request reserved it while we read storage
            future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
            self._inflight[(scope, key)] = (digest, future)
            return None

    def finish(self, scope: str, key: str, answer: Answer) -> None:
        _, future = self._inflight.pop((scope, key))
        future.set_result(answer)

    def abort(self, scope: str, key: str) -> None:
        _, future = self._inflight.pop((scope, key))
        future.set_result(None)

    @staticmethod
    def _same_body(first: bytes, this: bytes) -> None:
        if not hmac.compare_digest(first, this):
            raise Unprocessable(
                "this Idempotency-Key was already used with a different request body"
            )
