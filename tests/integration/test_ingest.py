"""Ingest: validation, bulk, idempotency; bad input writes nothing."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from tests.conftest import Api, Receiver
from tests.pg import table_counts


async def row_counts(api: Api) -> dict[str, int]:
    tables = ("events", "rule_events", "idempotency_keys")
    settings = api.gateway.settings
    if settings.postgres:
        return await table_counts(settings.database_url, tables)
    with sqlite3.connect(settings.sqlite_path) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in tables
        }


@pytest.fixture
async def route(api: Api, receiver: Receiver) -> tuple[str, str]:
    ws, key, _, _ = await api.setup_route(receiver.url(), event="*")
    return ws, key


async def test_bulk_accepts_valid_records_and_reports_the_rest(
    api: Api, route: tuple[str, str], receiver: Receiver
) -> None:
    _, key = route
    batch = [
        {"event": "a.one", "payload": {"i": 0}},
        {"event": "bad name!", "payload": {}},
        {"event": "a.two", "payload": "not an object"},
        {"event": "a.three", "payload": {"i": 3}, "resource": "r", "resource_id": "1"},
        {"payload": {}},
    ]
    status, body = await api.emit(key, batch, path="/api/v1/events/bulk")
    assert status == 207
    assert body["count"] == 2
    assert body["error_count"] == 3
    records = body["records"]
    assert len(records) == 5
    assert records[0]["event"] == "a.one"
    assert records[3]["event"] == "a.three"
    assert records[1]["errors"][0]["pointer"] == "/1/event"
    assert records[2]["errors"][0]["pointer"] == "/2/payload"
    assert records[4]["errors"][0]["pointer"] == "/4/event"
    assert all(records[i]["status"] == 422 for i in (1, 2, 4))
    await receiver.wait_for(2)
    assert (await row_counts(api))["events"] == 2


async def test_bulk_of_all_valid_is_201(api: Api, route: tuple[str, str]) -> None:
    _, key = route
    batch = [{"event": "e.n", "payload": {"i": i}} for i in range(1000)]
    status, body = await api.emit(key, batch, path="/api/v1/events/bulk")
    assert status == 201
    assert body["count"] == 1000
    assert body["error_count"] == 0
    assert [r["event"] for r in body["records"]] == ["e.n"] * 1000
    assert len({r["id"] for r in body["records"]}) == 1000
    assert (await row_counts(api))["rule_events"] == 1000


async def test_idempotency_key_replays_the_first_answer(
    api: Api, route: tuple[str, str], receiver: Receiver
) -> None:
    _, key = route
    body = {"event": "invoice.paid", "payload": {"n": 1}}
    s1, first = await api.emit(key, body, **{"Idempotency-Key": "k-1"})
    s2, second = await api.emit(key, body, **{"Idempotency-Key": "k-1"})
    assert (s1, s2) == (201, 201)
    assert first == second
    await receiver.wait_for(1)
    assert (await row_counts(api))["events"] == 1

    s3, problem = await api.emit(
        key, {"event": "invoice.paid", "payload": {"n": 2}}, **{"Idempotency-Key": "k-1"}
    )
    assert s3 == 422
    assert "different request body" in problem["detail"]
    assert (await row_counts(api))["events"] == 1


async def test_concurrent_requests_with_one_idempotency_key_create_one_event(
    api: Api, route: tuple[str, str]
) -> None:
    import asyncio

    _, key = route
    body = {"event": "invoice.paid", "payload": {"n": 1}}
    answers = await asyncio.gather(
        *(api.emit(key, body, **{"Idempotency-Key": "same"}) for _ in range(10))
    )
    assert {json.dumps(a, sort_keys=True) for a in answers} == {
        json.dumps(answers[0], sort_keys=True)
    }
    assert (await row_counts(api))["events"] == 1


BAD_INPUT: list[tuple[str, dict[str, Any], bytes, int]] = [
    ("malformed json", {}, b'{"event": "x", "payload": {', 400),
    ("not an object", {}, b"[1, 2]", 422),
    ("missing event", {}, b'{"payload": {}}', 422),
    ("missing payload", {}, b'{"event": "x"}', 422),
    ("event wrong type", {}, b'{"event": 5, "payload": {}}', 422),
    ("event bad pattern", {}, b'{"event": "-x", "payload": {}}', 422),
    ("event too long", {}, json.dumps({"event": "e" * 129, "payload": {}}).encode(), 422),
    ("payload array", {}, b'{"event": "x", "payload": [1]}', 422),
    ("payload null", {}, b'{"event": "x", "payload": null}', 422),
    ("unknown member", {}, b'{"event": "x", "payload": {}, "paylod": {}}', 422),
    ("resource wrong type", {}, b'{"event": "x", "payload": {}, "resource": 1}', 422),
    ("bad workspace", {}, b'{"event": "x", "payload": {}, "workspace": "nope"}', 422),
    (
        "oversized",
        {},
        json.dumps({"event": "x", "payload": {"p": "x" * 300_000}}).encode(),
        413,
    ),
    ("wrong content type", {"Content-Type": "text/plain"}, b'{"event":"x","payload":{}}', 415),
    ("unknown key", {"X-Meshes-Publishable-Key": "mesh_pub_a_b_c"}, b"{}", 401),
    (
        "garbage key",
        {"X-Meshes-Publishable-Key": "not-a-key"},
        b'{"event":"x","payload":{}}',
        401,
    ),
    ("no credentials", {"X-Meshes-Publishable-Key": ""}, b'{"event":"x","payload":{}}', 401),
]


@pytest.mark.parametrize(
    ("headers", "raw", "status"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
async def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    api: Api, route: tuple[str, str], headers: dict[str, str], raw: bytes, status: int
) -> None:
    _, key = route
    sent = {"X-Meshes-Publishable-Key": key, "Content-Type": "application/json"} | headers
    if sent["X-Meshes-Publishable-Key"] == "":
        del sent["X-Meshes-Publishable-Key"]
    before = await row_counts(api)
    resp = await api.client.post("/api/v1/events", data=raw, headers=sent)
    assert resp.status == status
    assert resp.content_type == "application/problem+json"
    problem = await resp.json(content_type=None)
    assert problem["status"] == status
    assert problem["message"]
    assert await row_counts(api) == before


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"[]", 422),
        (json.dumps([{"event": "x", "payload": {}}] * 1001).encode(), 422),
        (b'{"event": "x", "payload": {}}', 422),
        (b"[{]", 400),
        (json.dumps([{"event": "bad name", "payload": {}}]).encode(), 422),
    ],
    ids=["empty", "over 1000", "object not array", "malformed", "all invalid"],
)
async def test_bad_bulk_writes_nothing(
    api: Api, route: tuple[str, str], raw: bytes, status: int
) -> None:
    _, key = route
    before = await row_counts(api)
    resp = await api.client.post(
        "/api/v1/events/bulk",
        data=raw,
        headers={"X-Meshes-Publishable-Key": key, "Content-Type": "application/json"},
    )
    assert resp.status == status
    assert resp.content_type == "application/problem+json"
    assert await row_counts(api) == before


async def test_revoked_key_is_refused(api: Api, route: tuple[str, str]) -> None:
    ws, key = route
    key_id = key.split("_")[3]
    await api.call("DELETE", f"/api/v1/workspaces/{ws}/publishable-keys/{key_id}", expect=200)
    status, problem = await api.emit(key, {"event": "x", "payload": {}})
    assert status == 401
    assert "revoked" in problem["detail"]


async def test_key_cannot_emit_into_another_workspace(api: Api, route: tuple[str, str]) -> None:
    _, key = route
    other = (await api.call("POST", "/api/v1/workspaces", {"name": "other"}, 201))["workspace"]
    status, _ = await api.emit(key, {"event": "x", "payload": {}, "workspace": other["id"]})
    assert status == 403


async def test_publishable_key_cannot_use_management_api(api: Api, route: tuple[str, str]) -> None:
    _, key = route
    resp = await api.client.get("/api/v1/workspaces", headers={"X-Meshes-Publishable-Key": key})
    assert resp.status == 403


async def test_management_credentials_can_emit_with_workspace(
    api: Api, route: tuple[str, str]
) -> None:
    ws, _ = route
    body = await api.call(
        "POST", "/api/v1/events", {"event": "x", "payload": {}, "workspace": ws}, 201
    )
    assert body["event"]["workspace"] == ws
    assert body["event"]["created_by"].startswith("mk_")
