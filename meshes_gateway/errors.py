"""The errors the API answers with, each rendered as one problem+json body.

Every body carries Meshes' `{"message", "error"?}` members next to the RFC 9457
ones (`type`, `title`, `status`, `detail`, `errors`), so Meshes clients and
generic problem+json clients both understand it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid member of a request body, located by a JSON Pointer."""

    pointer: str
    reason: str


@dataclass
class ProblemError(Exception):
    """Base of every error that becomes an HTTP answer."""

    detail: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    # Extra members of the problem body (e.g. the failed test attempt).
    extra: dict[str, Any] = field(default_factory=dict)
    status = 500
    title = "Internal Server Error"
    slug = "internal"

    def __str__(self) -> str:
        return self.detail


class BadRequest(ProblemError):
    """The request cannot be parsed (malformed JSON, bad query parameter)."""

    status = 400
    title = "Bad Request"
    slug = "bad-request"


class Unauthorized(ProblemError):
    """No credentials, unknown credentials or revoked credentials."""

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(ProblemError):
    """Valid credentials that may not do this (e.g. a publishable key on the management API)."""

    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(ProblemError):
    """The addressed resource does not exist (or belongs to no one the caller can see)."""

    status = 404
    title = "Not Found"
    slug = "not-found"


class Conflict(ProblemError):
    """The request conflicts with the current state (duplicate name, resource in use)."""

    status = 409
    title = "Conflict"
    slug = "conflict"


class PayloadTooLarge(ProblemError):
    """The body is over the size limit."""

    status = 413
    title = "Payload Too Large"
    slug = "payload-too-large"


class UnsupportedMediaType(ProblemError):
    """The body is not JSON."""

    status = 415
    title = "Unsupported Media Type"
    slug = "unsupported-media-type"


class Unprocessable(ProblemError):
    """Well-formed JSON that breaks a rule (wrong type, missing member, bad value)."""

    status = 422
    title = "Unprocessable Content"
    slug = "validation"


class TooManyRequests(ProblemError):
    """Over a rate limit; `Retry-After` says when to come back."""

    status = 429
    title = "Too Many Requests"
    slug = "rate-limited"


class Unavailable(ProblemError):
    """The pipeline is full or shutting down; retry after `Retry-After`."""

    status = 503
    title = "Service Unavailable"
    slug = "unavailable"
