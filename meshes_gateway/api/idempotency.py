"""`Idempotency-Key`: the same key within its lifetime replays the first answer.

The first answer is written in the same transaction as the events it created,
so a replay after a crash can never disagree with what was stored. Requests
with the same key that arrive while the first is still being committed wait
for it instead of creating a second copy.

Replicas sharing a database cannot see each other's requests in memory, so
there the key is first reserved in the database (a row with status 0); a
request finding someone else's reservation waits for its answer, and a
reservation whose replica died is taken over once it is `STALE_S` old.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass

from meshes_gateway.clock import Clock
from meshes_gateway.errors import BadRequest, Conflict, Unprocessable
from meshes_gateway.storage.base import Store
from meshes_gateway.storage.records import IdempotencyRecord

MAX_KEY_LENGTH = 255
# Longer than any ingest can take (admission wait + commit) before it answers.
STALE_S = 30
# How long a request waits for another replica's first answer, and how often it looks.
WAIT_S = 10.0
POLL_S = 0.05


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
        self._background: set[asyncio.Task[None]] = set()
        # When this process reserved a key in the shared database, to drop
        # exactly that reservation (not a later holder's) if the request fails.
        self._reserved_at: dict[tuple[str, str], int] = {}

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
            if self._store.shared:
                future = self._reserve_locally(scope, key, digest)
                try:
                    answer = await self._reserve_shared(scope, key, digest)
                except BaseException:
                    # Nothing was reserved in the database: only local waiters to free.
                    self._inflight.pop((scope, key))
                    future.set_result(None)
                    raise
                if answer is not None:
                    self._inflight.pop((scope, key))
                    future.set_result(answer)
                return answer
            stored = await self._store.get_idempotency(scope, key)
            if stored is not None and stored.created_at_ms > self._clock.now_ms() - self._ttl_ms:
                self._same_body(stored.request_digest, digest)
                return Answer(stored.status, stored.body)
            if (scope, key) in self._inflight:
                continue  # another request reserved it while we read storage
            self._reserve_locally(scope, key, digest)
            return None

    def _reserve_locally(
        self, scope: str, key: str, digest: bytes
    ) -> asyncio.Future[Answer | None]:
        future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        self._inflight[(scope, key)] = (digest, future)
        return future

    async def _reserve_shared(self, scope: str, key: str, digest: bytes) -> Answer | None:
        """Reserve the key in the shared database, or wait for the answer of whoever holds it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while True:
            now = self._clock.now_ms()
            held = await self._store.reserve_idempotency(
                IdempotencyRecord(
                    workspace_id=scope,
                    key=key,
                    request_digest=digest,
                    status=0,
                    body=b"",
                    created_at_ms=now,
                ),
                expired_before_ms=now - self._ttl_ms,
                stale_before_ms=now - STALE_S * 1000,
            )
            if held is None:
                self._reserved_at[(scope, key)] = now
                return None
            self._same_body(held.request_digest, digest)
            if held.status != 0:
                return Answer(held.status, held.body)
            if loop.time() >= deadline:
                raise Conflict(
                    "a request with this Idempotency-Key is still being processed; retry later",
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(POLL_S)

    def finish(self, scope: str, key: str, answer: Answer) -> None:
        _, future = self._inflight.pop((scope, key))
        future.set_result(answer)
        self._reserved_at.pop((scope, key), None)

    def abort(self, scope: str, key: str) -> None:
        _, future = self._inflight.pop((scope, key))
        future.set_result(None)
        reserved_at = self._reserved_at.pop((scope, key), None)
        if reserved_at is not None:
            # Free the key for a retry now rather than after `STALE_S`.
            drop = self._store.drop_reservation(scope, key, reserved_at)
            task = asyncio.ensure_future(drop)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    @staticmethod
    def _same_body(first: bytes, this: bytes) -> None:
        if not hmac.compare_digest(first, this):
            raise Unprocessable(
                "this Idempotency-Key was already used with a different request body"
            )
