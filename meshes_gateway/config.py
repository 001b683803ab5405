"""Settings: the only module that reads flags and `MESHES_*` environment variables.

One table (`OPTIONS`) drives both the command-line flags and the environment
variables, so every setting is reachable both ways and the README's table can
be checked against it.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# How much longer a claim's lease is than the longest request it may make.
LEASE_MARGIN_S = 5.0
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
DEFAULT_RETRY_SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class ConfigError(ValueError):
    """A flag or environment variable has a value that cannot be used."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"not a boolean: {raw!r}")


def _schedule(raw: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"retry schedule must be comma-separated seconds: {raw!r}") from exc
    if any(delay < 0 for delay in delays):
        raise ConfigError("retry delays must not be negative")
    return delays


def _networks(raw: str) -> tuple[str, ...]:
    nets = []
    for part in raw.split(","):
        if part.strip():
            try:
                nets.append(str(ipaddress.ip_network(part.strip(), strict=False)))
            except ValueError as exc:
                raise ConfigError(f"not a CIDR: {part.strip()!r}") from exc
    return tuple(nets)


def _synchronous(raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"FULL", "NORMAL", "EXTRA"}:
        raise ConfigError("MESHES_SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the gateway can be told; defaults are the embedded single-box setup."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    # May carry a database password: kept out of reprs (and so out of logs).
    database_url: str = field(default="", repr=False)
    org_id: str = ""
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    encryption_key: str = field(default="", repr=False)
    retry_schedule_s: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE_S
    allow_http: bool = False
    allow_networks: tuple[str, ...] = ()
    retention_days: int = 30
    log_level: str = "info"
    sqlite_synchronous: str = "FULL"
    max_inflight: int = 256
    per_connection_inflight: int = 32
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 15.0
    response_excerpt_bytes: int = 4096
    batch_max_rows: int = 2000
    batch_max_wait_ms: float = 0.0
    writer_queue_max: int = 2_000
    poll_interval_s: float = 1.0
    idempotency_ttl_s: int = 86_400
    shutdown_grace_s: float = 10.0
    disable_after_s: float = 5 * 86_400.0
    ingest_rate_per_s: float = 1000.0
    ingest_burst: float = 5000.0
    lease_s: float = 60.0
    database_pool_size: int = 10

    @property
    def postgres(self) -> bool:
        """Whether `MESHES_DATABASE_URL` names PostgreSQL (the scale-out backend)."""
        return self.database_url.startswith(POSTGRES_SCHEMES)

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file: `MESHES_DATABASE_URL=sqlite:///path` or `<data dir>/meshes.db`."""
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///"))
        return self.data_dir / "meshes.db"


@dataclass(frozen=True)
class Option:
    """One setting: its field, flag, environment variable, parser and help text."""

    name: str
    env: str
    parse: Callable[[str], Any]
    help: str

    @property
    def flag(self) -> str:
        base = self.name.removesuffix("_s").removesuffix("_ms").removesuffix("_per")
        return "--" + base.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("host", "MESHES_HOST", str, "address to listen on"),
    Option("port", "MESHES_PORT", int, "port to listen on"),
    Option("data_dir", "MESHES_DATA_DIR", Path, "directory for the database, keys, credentials"),
    Option(
        "database_url",
        "MESHES_DATABASE_URL",
        str,
        "sqlite:///path (default: <data dir>/meshes.db) or postgresql://... for replicas",
    ),
    Option(
        "database_pool_size", "MESHES_DATABASE_POOL_SIZE", int, "PostgreSQL connections per replica"
    ),
    Option("org_id", "MESHES_ORG_ID", str, "organization id (UUID; default: made on first start)"),
    Option("access_key", "MESHES_ACCESS_KEY", str, "pre-seed the API access key (mk_...)"),
    Option("secret_key", "MESHES_SECRET_KEY", str, "pre-seed the API secret key"),
    Option(
        "encryption_key", "MESHES_ENCRYPTION_KEY", str, "key for secrets at rest (default: file)"
    ),
    Option(
        "retry_schedule_s", "MESHES_RETRY_SCHEDULE", _schedule, "retry delays, comma-separated s"
    ),
    Option("allow_http", "MESHES_ALLOW_HTTP", _bool, "allow plain http:// endpoints"),
    Option(
        "allow_networks",
        "MESHES_ALLOW_NETWORKS",
        _networks,
        "CIDRs exempt from the SSRF deny table",
    ),
    Option("retention_days", "MESHES_RETENTION_DAYS", int, "days of history kept"),
    Option("log_level", "MESHES_LOG_LEVEL", str, "debug, info, warning or error"),
    Option(
        "sqlite_synchronous", "MESHES_SQLITE_SYNCHRONOUS", _synchronous, "FULL, NORMAL or EXTRA"
    ),
    Option("max_inflight", "MESHES_MAX_INFLIGHT", int, "deliveries in flight at once"),
    Option(
        "per_connection_inflight", "MESHES_PER_CONNECTION_INFLIGHT", int, "in flight per connection"
    ),
    Option("connect_timeout_s", "MESHES_CONNECT_TIMEOUT", float, "connect timeout, seconds"),
    Option("request_timeout_s", "MESHES_REQUEST_TIMEOUT", float, "default total timeout, seconds"),
    Option("response_excerpt_bytes", "MESHES_RESPONSE_EXCERPT_BYTES", int, "response bytes kept"),
    Option("batch_max_rows", "MESHES_BATCH_MAX_ROWS", int, "rows per group commit at most"),
    Option("batch_max_wait_ms", "MESHES_BATCH_MAX_WAIT_MS", float, "wait for more rows, ms"),
    Option("writer_queue_max", "MESHES_WRITER_QUEUE_MAX", int, "requests waiting on the writer"),
    Option("poll_interval_s", "MESHES_POLL_INTERVAL", float, "scheduler fallback poll, seconds"),
    Option("idempotency_ttl_s", "MESHES_IDEMPOTENCY_TTL", int, "Idempotency-Key lifetime, seconds"),
    Option(
        "shutdown_grace_s", "MESHES_SHUTDOWN_GRACE", float, "wait for in-flight sends on stop, s"
    ),
    Option("disable_after_s", "MESHES_DISABLE_AFTER", float, "disable after failing this long, s"),
    Option(
        "ingest_rate_per_s", "MESHES_INGEST_RATE", float, "events/s per publishable key (0: off)"
    ),
    Option("ingest_burst", "MESHES_INGEST_BURST", float, "burst per publishable key, events"),
    Option(
        "lease_s", "MESHES_LEASE", float, "claim lease, s: a dead replica's sends restart after it"
    ),
)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; unset flags stay `None` so the environment can fill them."""
    for option in OPTIONS:
        parser.add_argument(option.flag, dest=option.name, default=None, help=option.help)


def load_settings(
    environ: Mapping[str, str], flags: Mapping[str, str | None] | None = None
) -> Settings:
    """Settings from flags first, then `MESHES_*` variables, then defaults."""
    values: dict[str, Any] = {}
    flags = flags or {}
    for option in OPTIONS:
        raw = flags.get(option.name)
        if raw is None:
            raw = environ.get(option.env)
        if raw is None:
            continue
        try:
            values[option.name] = option.parse(raw)
        except (ValueError, ConfigError) as exc:
            raise ConfigError(f"{option.env} / {option.flag}: {exc}") from exc
    settings = Settings(**values)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    url = settings.database_url
    if url and not url.startswith("sqlite:///") and not settings.postgres:
        raise ConfigError(
            "MESHES_DATABASE_URL must start with sqlite:///, postgresql:// or postgres://"
        )
    if settings.postgres and not settings.encryption_key:
        raise ConfigError(
            "MESHES_ENCRYPTION_KEY is required with PostgreSQL: every replica must decrypt"
            " the same stored secrets"
        )
    if settings.lease_s < settings.request_timeout_s + LEASE_MARGIN_S:
        # Requests are cut off before their lease runs out (per-connection
        # timeouts too), so a lease never expires under a request in flight.
        raise ConfigError(
            f"MESHES_LEASE must exceed MESHES_REQUEST_TIMEOUT by {LEASE_MARGIN_S:g} s or more"
        )
    if bool(settings.access_key) != bool(settings.secret_key):
        raise ConfigError("MESHES_ACCESS_KEY and MESHES_SECRET_KEY must be set together")
    positive = (
        "port",
        "max_inflight",
        "per_connection_inflight",
        "batch_max_rows",
        "database_pool_size",
    )
    for name in positive:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{name} must be positive")
