"""HTTP plumbing shared by every handler: JSON answers, problem+json errors, body decoding."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import structlog
from aiohttp import web

from meshes_gateway.errors import (
    BadRequest,
    FieldError,
    PayloadTooLarge,
    ProblemError,
    Unavailable,
    Unprocessable,
    UnsupportedMediaType,
)
from meshes_gateway.storage.base import StoreError

log = structlog.get_logger(__name__)
T = TypeVar("T")

_encode = msgspec.json.Encoder().encode
PROBLEM_TYPE = "urn:meshes-gateway:problem:"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def raw_json_response(body: bytes, status: int) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def problem_body(err: ProblemError) -> dict[str, Any]:
    """Meshes' `{message, error}` and RFC 9457's members in one object."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + err.slug,
        "title": err.title,
        "status": err.status,
        "detail": err.detail,
        "message": err.detail,
        "error": err.slug,
    }
    if err.errors:
        body["errors"] = [{"pointer": e.pointer, "reason": e.reason} for e in err.errors]
    return body | err.extra


def problem_response(err: ProblemError) -> web.Response:
    return web.Response(
        body=_encode(problem_body(err)),
        status=err.status,
        content_type="application/problem+json",
        headers=err.headers,
    )


_HTTP_STATUS_PROBLEMS: dict[int, type[ProblemError]] = {
    400: BadRequest,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into problem+json; an unexpected exception is a logged, opaque 500."""
    try:
        return await handler(request)
    except ProblemError as err:
        return problem_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        cls = _HTTP_STATUS_PROBLEMS.get(exc.status)
        if cls is not None:
            return problem_response(cls(exc.reason))
        generic = ProblemError(exc.reason, headers=_allow_header(exc))
        generic.status = exc.status
        generic.title = exc.reason
        generic.slug = re.sub(r"[^a-z]+", "-", exc.reason.lower()).strip("-")
        return problem_response(generic)
    except StoreError as exc:
        # Storage unreachable (a database restart, a dropped connection): the
        # client should retry, and nothing was half-written (every write is
        # one transaction), so this is a 503, not a 500.
        log.warning("storage_unavailable", path=request.path, error=str(exc))
        return problem_response(
            Unavailable("storage is unavailable; retry shortly", headers={"Retry-After": "1"})
        )
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return problem_response(ProblemError("an unexpected error occurred"))


def _allow_header(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def read_json_body(request: web.Request, max_bytes: int) -> bytes:
    """The raw body of a JSON request, refusing other media types and oversized bodies."""
    if not _is_json(request.content_type):
        raise UnsupportedMediaType("Content-Type must be application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"the body is over {max_bytes} bytes")
    # Read at most one byte past the limit so a lying or absent Content-Length
    # cannot make us buffer more than the limit.
    body = await request.content.read(max_bytes + 1)
    while len(body) <= max_bytes:
        more = await request.content.read(max_bytes + 1 - len(body))
        if not more:
            break
        body += more
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the body is over {max_bytes} bytes")
    return body


_AT_PATH = re.compile(r"^(?P<msg>.*?) - at `(?P<path>\$[^`]*)`$")
_FIELD = re.compile(r"field `(?P<name>[^`]+)`")


def pointer_of(path: str) -> str:
    """msgspec's `$.a[0].b` as the JSON Pointer `/a/0/b`."""
    parts = re.findall(r"\.([^.\[]+)|\[(\d+)\]", path[1:])
    tokens = [name or index for name, index in parts]
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def field_error(exc: msgspec.ValidationError, prefix: str = "") -> FieldError:
    """A msgspec validation error as a located field error."""
    text = str(exc)
    match = _AT_PATH.match(text)
    message, pointer = (match["msg"], pointer_of(match["path"])) if match else (text, "")
    if "missing required field" in message or "unknown field" in message:
        named = _FIELD.search(message)
        if named:
            pointer += "/" + named["name"]
    return FieldError(pointer=prefix + pointer, reason=message)


def decode(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode a body; malformed JSON is a 400, a valid JSON of the wrong shape a 422."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        err = field_error(exc)
        raise Unprocessable(f"invalid request body: {err.reason}", errors=[err]) from None
    except msgspec.DecodeError:
        raise BadRequest("the body is not valid JSON") from None


async def json_body(request: web.Request, decoder: msgspec.json.Decoder[T]) -> T:
    """Read and decode a management request body (small: 64 KiB at most)."""
    return decode(await read_json_body(request, 64 * 1024), decoder)


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"`{name}` must be an integer") from None
    if not lo <= value <= hi:
        raise BadRequest(f"`{name}` must be between {lo} and {hi}")
    return value
