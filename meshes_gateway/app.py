"""The aiohttp application: routes, middlewares and the background services' lifecycle."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from meshes_gateway.api import connections, health, history, rules, workspaces
from meshes_gateway.api.auth import auth_middleware
from meshes_gateway.api.http import problem_middleware
from meshes_gateway.api.idempotency import IdempotencyGate
from meshes_gateway.api.ingest import create_bulk, create_event
from meshes_gateway.api.ratelimit import RateLimiter, SharedBuckets, TokenBuckets
from meshes_gateway.api.state import GATEWAY, Gateway
from meshes_gateway.clock import Clock, SystemClock
from meshes_gateway.config import LEASE_MARGIN_S, Settings
from meshes_gateway.credentials import ensure_organization
from meshes_gateway.delivery.ssrf import AddressPolicy
from meshes_gateway.engine.directory import Directory
from meshes_gateway.engine.maintenance import Maintenance
from meshes_gateway.engine.scheduler import Scheduler
from meshes_gateway.engine.sender import Sender, make_session
from meshes_gateway.engine.writer import Writer
from meshes_gateway.secretbox import SecretBox, check_key
from meshes_gateway.storage.base import Store, StoreError
from meshes_gateway.storage.sqlite import SqliteStore

log = structlog.get_logger(__name__)


def open_store(settings: Settings) -> Store:
    """The backend named by `MESHES_DATABASE_URL` (SQLite in the data dir by default)."""
    if settings.postgres:
        try:
            from meshes_gateway.storage.postgres import PostgresStore
        except ImportError as exc:  # the optional extra is not installed
            raise StoreError(
                "PostgreSQL needs asyncpg: pip install 'meshes-gateway[postgres]'"
            ) from exc
        return PostgresStore(settings.database_url, settings.database_pool_size)
    return SqliteStore(settings.sqlite_path, settings.sqlite_synchronous)


def database_label(settings: Settings) -> str:
    """Where the data lives, for logs: never the URL itself, which may hold a password."""
    if settings.postgres:
        return "postgresql"
    return str(settings.sqlite_path)


def create_app(
    settings: Settings,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    resolver: AbstractResolver | None = None,
) -> web.Application:
    """The gateway as an aiohttp app; services start and stop with it.

    `clock`, `rng` and `resolver` are for tests (time, jitter, DNS answers).
    """
    app = web.Application(middlewares=[problem_middleware, auth_middleware])
    app.router.add_post("/api/v1/events", create_event)
    app.router.add_post("/api/v1/events/bulk", create_bulk)
    for module in (health, workspaces, connections, rules, history):
        app.add_routes(module.routes)

    async def services(app: web.Application) -> AsyncIterator[None]:
        async for _ in _run_services(app, settings, clock or SystemClock(), rng, resolver):
            yield

    app.cleanup_ctx.append(services)
    return app


async def _run_services(
    app: web.Application,
    settings: Settings,
    clock: Clock,
    rng: random.Random | None,
    resolver: AbstractResolver | None,
) -> AsyncIterator[None]:
    resolver = resolver or DefaultResolver()
    store = open_store(settings)
    await store.open()
    try:
        box = SecretBox.load(settings.data_dir, settings.encryption_key)
        await check_key(store, box)
        org_id = await ensure_organization(store, box, settings, clock)
    except BaseException:
        await store.close()  # e.g. the wrong key: nothing may stay open behind the error
        raise
    policy = AddressPolicy(settings.allow_networks, settings.allow_http)
    directory = Directory(store, box, clock)
    session = make_session(policy, settings.max_inflight, resolver)
    sender = Sender(
        session,
        policy,
        connect_timeout_s=settings.connect_timeout_s,
        request_timeout_s=settings.request_timeout_s,
        excerpt_bytes=settings.response_excerpt_bytes,
        max_timeout_s=settings.lease_s - LEASE_MARGIN_S,
    )

    def on_commit(new_deliveries: bool) -> None:
        if new_deliveries:
            scheduler.wake()

    writer = Writer(
        store,
        clock,
        max_rows=settings.batch_max_rows,
        max_wait_ms=settings.batch_max_wait_ms,
        queue_max=settings.writer_queue_max,
        on_commit=on_commit,
    )
    scheduler = Scheduler(
        store,
        writer,
        sender,
        directory,
        clock,
        max_inflight=settings.max_inflight,
        per_connection_inflight=settings.per_connection_inflight,
        lease_s=settings.lease_s,
        poll_interval_s=settings.poll_interval_s,
        retry_schedule_s=settings.retry_schedule_s,
        rng=rng,
    )
    writer.handoff = scheduler
    # Other replicas' commits and configuration changes (PostgreSQL only).
    store.subscribe(on_work=scheduler.wake, on_config=directory.forget_all)
    maintenance = Maintenance(
        store,
        clock,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        retention_days=settings.retention_days,
        disable_after_s=settings.disable_after_s,
        on_disabled=directory.forget_connection,
    )
    app[GATEWAY] = Gateway(
        settings=settings,
        store=store,
        clock=clock,
        box=box,
        directory=directory,
        writer=writer,
        scheduler=scheduler,
        sender=sender,
        policy=policy,
        resolver=resolver,
        org_id=org_id,
        idempotency=IdempotencyGate(store, clock, settings.idempotency_ttl_s),
        rate_limit=rate_limiter(store, clock, settings),
    )
    writer_task = asyncio.create_task(writer.run(), name="writer")
    scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")
    maintenance_task = asyncio.create_task(maintenance.run(), name="maintenance")
    log.info("gateway_started", org_id=org_id, database=database_label(settings))
    try:
        yield
    finally:
        maintenance_task.cancel()
        # Sends in flight get a grace period; what is still running after it is
        # released (after the writer has committed every finished outcome) so
        # the next start delivers it again.
        unfinished = await scheduler.stop(settings.shutdown_grace_s)
        scheduler_task.cancel()
        await writer.stop()
        await writer_task
        await store.release(unfinished + scheduler.late_handoffs, clock.now_ms())
        await asyncio.gather(scheduler_task, maintenance_task, return_exceptions=True)
        await session.close()
        await store.close()
        log.info("gateway_stopped", released=len(unfinished))


def rate_limiter(store: Store, clock: Clock, settings: Settings) -> RateLimiter:
    """Buckets in memory for one process; in the database when replicas share it."""
    if store.shared:
        return SharedBuckets(store, clock, settings.ingest_rate_per_s, settings.ingest_burst)
    return TokenBuckets(clock, settings.ingest_rate_per_s, settings.ingest_burst)
