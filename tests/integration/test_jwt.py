"""Meshes machine tokens (HS256 JWT) on the management API."""

from __future__ import annotations

import time
from typing import Any

import jwt
import jwt.warnings
import pytest

from tests.conftest import ACCESS_KEY, SECRET_KEY, Api


def token(api: Api, **changes: Any) -> str:
    """A token as the official clients mint it, with `changes` applied."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": ACCESS_KEY}
    claims = {
        "iss": f"urn:meshes:m2m:{ACCESS_KEY}",
        "aud": "meshes-api",
        "org": api.gateway.org_id,
        "iat": now,
        "exp": now + 30,
    }
    secret = SECRET_KEY
    header |= changes.pop("header", {})
    secret = changes.pop("secret", secret)
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    if header["alg"] == "none":
        return jwt.encode(claims, None, algorithm="none", headers=header)
    return jwt.encode(claims, secret.encode(), algorithm="HS256", headers=header)


async def status_with(api: Api, bearer: str) -> int:
    resp = await api.client.get("/api/v1/workspaces", headers={"Authorization": f"Bearer {bearer}"})
    return resp.status


async def test_client_token_is_accepted(api: Api) -> None:
    assert await status_with(api, token(api)) == 200


CASES: list[tuple[str, dict[str, Any]]] = [
    ("expired", {"iat": int(time.time()) - 120, "exp": int(time.time()) - 60}),
    ("lifetime over 60 s", {"exp": int(time.time()) + 300}),
    ("no exp", {"exp": None}),
    ("wrong audience", {"aud": "someone-else"}),
    ("no audience", {"aud": None}),
    ("wrong issuer", {"iss": "urn:meshes:m2m:mk_other"}),
    ("unknown kid", {"header": {"kid": "mk_unknownAccessKey00000000"}}),
    ("wrong secret", {"secret": "x" * 43}),
    ("wrong org", {"org": "00000000-0000-4000-8000-000000000000"}),
    ("no org", {"org": None}),
    ("alg none", {"header": {"alg": "none"}}),
    ("issued in the future", {"iat": int(time.time()) + 120, "exp": int(time.time()) + 150}),
]


@pytest.mark.parametrize("changes", [c[1] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_tokens_are_401(api: Api, changes: dict[str, Any]) -> None:
    assert await status_with(api, token(api, **changes)) == 401


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30."])
async def test_malformed_tokens_are_401(api: Api, garbage: str) -> None:
    assert await status_with(api, garbage) == 401


async def test_hs512_with_the_right_secret_is_refused(api: Api) -> None:
    claims = {
        "iss": f"urn:meshes:m2m:{ACCESS_KEY}",
        "aud": "meshes-api",
        "org": api.gateway.org_id,
        "exp": int(time.time()) + 30,
    }
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        forged = jwt.encode(
            claims, SECRET_KEY.encode(), algorithm="HS512", headers={"kid": ACCESS_KEY}
        )
    assert await status_with(api, forged) == 401
