"""Who is calling: management credentials (API key) or a workspace's publishable key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import jwt
from aiohttp import web

from meshes_gateway.api.http import Handler
from meshes_gateway.api.state import GATEWAY, Gateway
from meshes_gateway.errors import Forbidden, Unauthorized
from meshes_gateway.ids import is_uuid
from meshes_gateway.secretbox import SecretBoxError

PUBLISHABLE_HEADER = "X-Meshes-Publishable-Key"
# The official @mesheshq/events client refuses keys that do not match this.
PUBLISHABLE_KEY = re.compile(r"^mesh_pub_([A-Za-z0-9\-.]+)_([A-Za-z0-9\-.]+)_([^_]+)$")


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller; `workspace_id` is set for publishable keys only."""

    created_by: str
    workspace_id: str | None = None
    key_id: str | None = None


CALLER = web.RequestKey("caller", Caller)


def make_publishable_key(workspace_id: str, key_id: str) -> tuple[str, bytes]:
    """A new publishable key and the digest that is stored instead of it."""
    key = f"mesh_pub_{workspace_id}_{key_id}_{secrets.token_hex(32)}"
    return key, digest(key)


def digest(key: str) -> bytes:
    # The key carries 256 random bits, so a fast hash is enough: there is
    # nothing to brute-force that a slow hash would protect.
    return hashlib.sha256(key.encode()).digest()


def key_prefix(workspace_id: str, key_id: str) -> str:
    """What identifies a key without revealing it (shown in listings)."""
    return f"mesh_pub_{workspace_id}_{key_id}_…"


async def publishable_caller(gateway: Gateway, key: str) -> Caller:
    # A key seen valid before skips parsing and hashing; revocation clears this.
    known = gateway.directory.verified_key(key)
    if known is not None:
        return Caller(created_by="pub_key", workspace_id=known.workspace_id, key_id=known.id)
    match = PUBLISHABLE_KEY.match(key)
    if match is None:
        raise Unauthorized("invalid publishable key")
    workspace_id, key_id = match.group(1), match.group(2)
    if not is_uuid(key_id):
        raise Unauthorized("invalid publishable key")
    stored = await gateway.directory.publishable_key(key_id)
    if (
        stored is None
        or stored.workspace_id != workspace_id
        or not hmac.compare_digest(stored.digest, digest(key))
    ):
        raise Unauthorized("invalid publishable key")
    if stored.revoked_at_ms is not None:
        raise Unauthorized("this publishable key has been revoked")
    gateway.directory.remember_verified(key, stored)
    return Caller(created_by="pub_key", workspace_id=workspace_id, key_id=key_id)


JWT_AUDIENCE = "meshes-api"
JWT_MAX_LIFETIME_S = 60
# Tolerated clock difference between the client and this server.
JWT_LEEWAY_S = 5


async def machine_token_caller(gateway: Gateway, token: str) -> Caller:
    """Verify a Meshes machine token: HS256, `kid` = access key, signed with its secret key.

    Expiry is checked against the injected clock (not PyJWT's), and a token
    may live at most 60 s, as Meshes' own clients mint them per request.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("malformed bearer token") from None
    access_key = header.get("kid")
    if header.get("alg") != "HS256" or not isinstance(access_key, str):
        raise Unauthorized("bearer token must be HS256 with the access key as `kid`")
    secret = await _secret_of(gateway, access_key)
    if secret is None:
        raise Unauthorized("invalid bearer token")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=JWT_AUDIENCE,
            issuer=f"urn:meshes:m2m:{access_key}",
            options={"require": ["exp", "iss", "aud"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        raise Unauthorized("invalid bearer token") from None
    now_s = gateway.clock.now_ms() / 1000
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp <= now_s - JWT_LEEWAY_S:
        raise Unauthorized("bearer token expired")
    if exp > now_s + JWT_MAX_LIFETIME_S + JWT_LEEWAY_S:
        raise Unauthorized(f"bearer token lives longer than {JWT_MAX_LIFETIME_S} s")
    iat = claims.get("iat")
    if iat is not None and (not isinstance(iat, int | float) or iat > now_s + JWT_LEEWAY_S):
        raise Unauthorized("bearer token issued in the future")
    if claims.get("org") != gateway.org_id:
        raise Unauthorized("bearer token is for another organization")
    return Caller(created_by=access_key)


async def management_caller(gateway: Gateway, authorization: str) -> Caller:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return await machine_token_caller(gateway, credentials.strip())
    if scheme.lower() != "basic":
        raise Unauthorized("use a Meshes machine token (Bearer) or Basic auth")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed Basic credentials") from None
    access_key, _, secret_key = decoded.partition(":")
    expected = await _secret_of(gateway, access_key)
    if expected is None or not hmac.compare_digest(expected, secret_key.encode()):
        raise Unauthorized("invalid API credentials")
    return Caller(created_by=access_key)


async def _secret_of(gateway: Gateway, access_key: str) -> bytes | None:
    cached = gateway.api_secrets.get(access_key)
    if cached is not None:
        return cached
    stored = await gateway.store.get_api_key(access_key)
    if stored is None:
        return None
    try:
        secret = gateway.box.open(stored.secret_enc)
    except SecretBoxError:
        return None
    gateway.api_secrets[access_key] = secret
    return secret


def _is_ingest(request: web.Request) -> bool:
    return request.method == "POST" and request.path in {"/api/v1/events", "/api/v1/events/bulk"}


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every `/api/v1` call is authenticated; only ingest accepts a publishable key."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    gateway = request.app[GATEWAY]
    publishable = request.headers.get(PUBLISHABLE_HEADER)
    authorization = request.headers.get("Authorization")
    if publishable is not None and authorization is None:
        if not _is_ingest(request):
            raise Forbidden("a publishable key may only emit events")
        caller = await publishable_caller(gateway, publishable)
    elif authorization is not None:
        caller = await management_caller(gateway, authorization)
    else:
        raise Unauthorized(
            "missing credentials", headers={"WWW-Authenticate": 'Basic realm="meshes"'}
        )
    request[CALLER] = caller
    return await handler(request)


def caller_of(request: web.Request) -> Caller:
    caller: Caller = request[CALLER]
    return caller
