"""One HTTP attempt against an endpoint, with hard limits on time and bytes read."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import aiohttp
import certifi
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict
from yarl import URL

from meshes_gateway.delivery.envelope import build_request
from meshes_gateway.delivery.ssrf import (
    AddressPolicy,
    GuardedResolver,
    UrlRefused,
    denial_in,
    ip_literal,
)
from meshes_gateway.engine.retry import parse_retry_after
from meshes_gateway.storage.records import Claimed
from meshes_gateway.webhooks import Target


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one request came to: a status code, or an error class and message."""

    status_code: int | None
    error: str | None
    duration_ms: int
    excerpt: bytes | None
    retry_after_s: float | None = None
    refused: bool = False


class Sender:
    """Sends deliveries over one shared `aiohttp.ClientSession`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: AddressPolicy,
        *,
        connect_timeout_s: float,
        request_timeout_s: float,
        excerpt_bytes: int,
        max_timeout_s: float = 30.0,
    ) -> None:
        self._session = session
        self._policy = policy
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        # No request may outlive its claim's lease, or another replica could take
        # the delivery over and send it while this request is still running.
        self._max_timeout_s = max_timeout_s
        self._excerpt_bytes = excerpt_bytes
        self._vetted: dict[str, URL | str] = {}
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}

    async def send(self, target: Target, delivery: Claimed, now_ms: int) -> AttemptResult:
        """Make one attempt; never raises for anything the endpoint or network does."""
        started = time.perf_counter()
        url = self._vetted.get(target.url) or self._vet(target.url)
        if isinstance(url, str):
            return AttemptResult(None, url, 0, None, refused=True)
        body, headers = build_request(target, delivery, now_ms)
        timeout = self._timeouts.get(target.timeout_s)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=min(target.timeout_s or self._request_timeout_s, self._max_timeout_s),
                sock_connect=self._connect_timeout_s,
            )
            self._timeouts[target.timeout_s] = timeout
        try:
            async with self._session.request(
                target.method,
                url,
                data=body,
                headers=CIMultiDict(headers),
                allow_redirects=False,
                timeout=timeout,
            ) as resp:
                excerpt = await self._read_capped(resp)
                return AttemptResult(
                    resp.status,
                    None,
                    _elapsed_ms(started),
                    excerpt,
                    retry_after_s=parse_retry_after(resp.headers.get("Retry-After")),
                )
        except TimeoutError:
            return AttemptResult(None, "timeout", _elapsed_ms(started), None)
        except aiohttp.ClientError as exc:
            if denial_in(exc):
                return AttemptResult(None, "refused: denied address", 0, None, refused=True)
            kind = type(exc).__name__
            return AttemptResult(None, f"{kind}: {exc}"[:500], _elapsed_ms(started), None)
        except OSError as exc:
            return AttemptResult(None, f"network: {exc}"[:500], _elapsed_ms(started), None)

    def _vet(self, raw: str) -> URL | str:
        """The parsed URL, or why it is refused; remembered, as the policy never changes."""
        try:
            url = self._policy.check_url(raw)
        except UrlRefused as exc:
            verdict: URL | str = f"refused: {exc}"
        else:
            literal = ip_literal(url.raw_host or "")
            # IP literals never reach the resolver, so they are checked here.
            denied = literal is not None and self._policy.is_denied(literal)
            verdict = "refused: denied address" if denied else url
        if len(self._vetted) > 10_000:
            self._vetted.clear()
        self._vetted[raw] = verdict
        return verdict

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """Up to `excerpt_bytes` of the body, raw (the session never decompresses)."""
        parts: list[bytes] = []
        remaining = self._excerpt_bytes
        while remaining > 0:
            chunk = await resp.content.read(remaining)
            if not chunk:
                break
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def make_session(
    policy: AddressPolicy, max_connections: int, resolver: AbstractResolver
) -> aiohttp.ClientSession:
    """The one client session: guarded resolver, no decompression, no cookies.

    The DNS cache holds only answers that already passed the guard, so caching
    them for a few seconds saves lookups without opening a rebinding window.
    """
    # certifi's CA bundle travels with the package, so TLS verification does not
    # depend on the host (or container image) having a CA store installed.
    tls = ssl.create_default_context(cafile=certifi.where())
    connector = aiohttp.TCPConnector(
        ssl=tls,
        resolver=GuardedResolver(policy, resolver),
        limit=max_connections,
        ttl_dns_cache=10,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
    )
