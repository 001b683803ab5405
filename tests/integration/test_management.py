"""Management API: Meshes' shapes, status codes and the secrets it never shows twice."""

from __future__ import annotations

import base64
import sqlite3

import pytest

from tests.conftest import Api, Receiver


async def test_workspace_lifecycle_and_list_envelope(api: Api) -> None:
    created = (await api.call("POST", "/api/v1/workspaces", {"name": "a"}, 201))["workspace"]
    assert created["publishable_key"]["public_key"].startswith(f"mesh_pub_{created['id']}_")
    for name in ("b", "c"):
        await api.call("POST", "/api/v1/workspaces", {"name": name}, 201)
    await api.call("POST", "/api/v1/workspaces", {"name": "a"}, 409)

    first = await api.call("GET", "/api/v1/workspaces?limit=2", expect=200)
    assert set(first) == {"count", "limit", "next_cursor", "records"}
    assert (first["count"], first["limit"]) == (2, 2)
    rest = await api.call(
        "GET", f"/api/v1/workspaces?limit=2&cursor={first['next_cursor']}", expect=200
    )
    assert rest["next_cursor"] is None
    names = [w["name"] for w in first["records"] + rest["records"]]
    assert names == ["c", "b", "a"]

    got = await api.call("GET", f"/api/v1/workspaces/{created['id']}", expect=200)
    # Only a digest is stored: the key is identified, never shown again.
    assert got["publishable_key"]["public_key"].endswith("_…")
    updated = await api.call(
        "PUT", f"/api/v1/workspaces/{created['id']}", {"name": "a2", "description": None}, 200
    )
    assert updated["name"] == "a2"
    await api.call("DELETE", f"/api/v1/workspaces/{created['id']}", expect=200)
    await api.call("GET", f"/api/v1/workspaces/{created['id']}", expect=404)


@pytest.mark.sqlite_only
async def test_signing_secret_is_shown_once_and_encrypted_at_rest(
    api: Api, receiver: Receiver
) -> None:
    ws = (await api.call("POST", "/api/v1/workspaces", {"name": "w"}, 201))["workspace"]
    password = "CANARY-password-5d1f"
    created = (
        await api.call(
            "POST",
            "/api/v1/connections",
            {
                "workspace": ws["id"],
                "type": "webhook",
                "name": "c",
                "metadata": {
                    "url": receiver.url(),
                    "skip_test": True,
                    "auth": {"type": "basic", "username": "u", "password": password},
                },
            },
            201,
        )
    )["connection"]
    secret = created["metadata"]["signing_secret"]
    assert secret.startswith("whsec_")
    got = await api.call("GET", f"/api/v1/connections/{created['id']}", expect=200)
    listed = await api.call("GET", "/api/v1/connections", expect=200)
    for shown in (str(got), str(listed), str(created)):
        assert password not in shown
    for shown in (str(got), str(listed)):
        assert secret not in shown
    assert got["metadata"]["auth"] == {"type": "basic", "username": "u"}
    db = api.gateway.settings.sqlite_path
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(FULL)")
    raw = b"".join(p.read_bytes() for p in db.parent.glob("meshes.db*") if p.is_file())
    assert password.encode() not in raw
    assert secret.encode() not in raw
    assert base64.b64decode(secret[6:]) not in raw


async def test_basic_auth_reaches_the_receiver(api: Api, receiver: Receiver) -> None:
    _, key, _, _ = await api.setup_route(
        receiver.url(), auth={"type": "bearer", "token": "tok-123"}, headers={"X-Tenant": "t1"}
    )
    await api.emit(key, {"event": "invoice.paid", "payload": {}})
    (got,) = await receiver.wait_for(1)
    assert got.headers["Authorization"] == "Bearer tok-123"
    assert got.headers["X-Tenant"] == "t1"


@pytest.mark.parametrize(
    ("metadata", "pointer"),
    [
        ({"url": "ftp://127.0.0.1/x"}, "/metadata/url"),
        ({"url": "http://10.0.0.1/x"}, "/metadata/url"),
        ({"url": "http://169.254.169.254/latest"}, "/metadata/url"),
        ({"url": "http://[::ffff:10.0.0.1]/"}, "/metadata/url"),
        ({"url": "http://user:pw@127.0.0.1/"}, "/metadata/url"),
        ({"url": "http://127.0.0.1/", "method": "GET"}, "/metadata/method"),
        ({"url": "http://127.0.0.1/", "headers": {"Content-Type": "x"}}, "/metadata/headers/"),
        ({"url": "http://127.0.0.1/", "headers": {"webhook-id": "x"}}, "/metadata/headers/"),
        (
            {"url": "http://127.0.0.1/", "headers": {f"X-{i}": "v" for i in range(6)}},
            "/metadata/headers",
        ),
        ({"url": "http://127.0.0.1/", "auth": {"type": "basic"}}, "/metadata/auth/"),
        ({"url": "http://127.0.0.1/", "timeout_s": 31}, "/metadata/timeout_s"),
        ({"url": "http://127.0.0.1/", "colour": "red"}, "/metadata/colour"),
        (None, "/metadata"),
    ],
)
async def test_invalid_connections_are_422_with_a_pointer(
    api: Api, metadata: dict[str, object] | None, pointer: str
) -> None:
    ws = (await api.call("POST", "/api/v1/workspaces", {"name": "w"}, 201))["workspace"]
    problem = await api.call(
        "POST",
        "/api/v1/connections",
        {"workspace": ws["id"], "type": "webhook", "name": "c", "metadata": metadata},
        422,
    )
    assert problem["errors"][0]["pointer"].startswith(pointer)
    listed = await api.call("GET", f"/api/v1/workspaces/{ws['id']}/connections", expect=200)
    assert listed["records"] == []


async def test_connection_in_use_needs_force_delete(api: Api, receiver: Receiver) -> None:
    ws, _, conn_id, _ = await api.setup_route(receiver.url())
    await api.call("DELETE", f"/api/v1/connections/{conn_id}", {}, 409)
    deleted = await api.call(
        "DELETE", f"/api/v1/connections/{conn_id}", {"force_delete": True}, 200
    )
    assert deleted == {"id": conn_id, "type": "webhook"}
    rules = await api.call("GET", f"/api/v1/workspaces/{ws}/rules", expect=200)
    assert rules["records"] == []


async def test_disable_and_reenable_a_connection(api: Api, receiver: Receiver) -> None:
    _, _, conn_id, _ = await api.setup_route(receiver.url())
    off = await api.call(
        "PUT", f"/api/v1/connections/{conn_id}", {"name": "c", "active": False}, 200
    )
    assert (off["active"], off["inactive_reason"]) == (False, "manually_inactivated")
    on = await api.call("PUT", f"/api/v1/connections/{conn_id}", {"name": "c", "active": True}, 200)
    assert (on["active"], on["inactive_reason"]) == (True, None)


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"event": "bad pattern"}, 422),
        ({"event": "invoice.*.x"}, 422),
        ({"metadata": {"action": "add_contact"}}, 422),
        ({"metadata": {"action": "send_webhook", "id": 5}}, 422),
        ({"connection": "00000000-0000-4000-8000-000000000000"}, 404),
        ({"workspace": "not-a-uuid"}, 422),
    ],
)
async def test_invalid_rules(
    api: Api, receiver: Receiver, change: dict[str, object], status: int
) -> None:
    ws, _, conn_id, _ = await api.setup_route(receiver.url())
    body = {
        "workspace": ws,
        "connection": conn_id,
        "event": "x",
        "metadata": {"action": "send_webhook"},
    } | change
    await api.call("POST", "/api/v1/rules", body, status)


async def test_rule_get_and_delete_shapes(api: Api, receiver: Receiver) -> None:
    ws, _, conn_id, _ = await api.setup_route(receiver.url())
    (rule,) = (await api.call("GET", f"/api/v1/workspaces/{ws}/rules", expect=200))["records"]
    assert (await api.call("GET", f"/api/v1/rules/{rule['id']}", expect=200)) == rule
    deleted = await api.call("DELETE", f"/api/v1/rules/{rule['id']}", expect=200)
    assert deleted["id"] == rule["id"]
    assert deleted["connection"] == conn_id
    await api.call("GET", f"/api/v1/rules/{rule['id']}", expect=404)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/nowhere", 404),
        ("PATCH", "/api/v1/workspaces", 405),
        ("GET", "/api/v1/workspaces/not-a-uuid", 404),
        ("GET", "/api/v1/events/00000000-0000-4000-8000-000000000000", 404),
        ("GET", "/api/v1/workspaces?limit=0", 400),
        ("GET", "/api/v1/workspaces?cursor=%%%", 400),
    ],
)
async def test_errors_are_problem_json(api: Api, method: str, path: str, status: int) -> None:
    resp = await api.client.request(method, path, headers=api.auth)
    assert resp.status == status
    assert resp.content_type == "application/problem+json"
    body = await resp.json(content_type=None)
    assert body["status"] == status
    assert body["message"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + base64.b64encode(b"mk_testAccessKey0123456789ab:wrong").decode(),
        "Basic " + base64.b64encode(b"mk_unknown:whatever").decode(),
        "Basic !!!",
        "Bearer x.y.z",
    ],
)
async def test_bad_credentials_are_401(api: Api, authorization: str) -> None:
    resp = await api.client.get("/api/v1/workspaces", headers={"Authorization": authorization})
    assert resp.status == 401
    assert resp.content_type == "application/problem+json"


async def test_health_probes(api: Api) -> None:
    assert (await api.client.get("/healthz")).status == 200
    assert (await api.client.get("/readyz")).status == 200


async def test_rule_listing_filters_page_in_storage(api: Api, receiver: Receiver) -> None:
    ws, _, conn_id, _ = await api.setup_route(receiver.url(), event="invoice.*")
    for event, resource in (("user.signup", None), ("user.signup", "user"), ("order.*", None)):
        body = {
            "workspace": ws,
            "connection": conn_id,
            "event": event,
            "metadata": {"action": "send_webhook"},
        }
        if resource:
            body["resource"] = resource
        await api.call("POST", "/api/v1/rules", body, 201)
    signups = await api.call("GET", f"/api/v1/workspaces/{ws}/rules?event=user.signup", expect=200)
    assert [r["event"] for r in signups["records"]] == ["user.signup", "user.signup"]
    first = await api.call("GET", "/api/v1/rules?event=user.signup&limit=1", expect=200)
    assert first["count"] == 1
    assert first["next_cursor"] is not None  # a full page, not a filtered-down one
    narrowed = await api.call("GET", "/api/v1/rules?event=user.signup&resource=user", expect=200)
    assert [r["resource"] for r in narrowed["records"]] == ["user"]
