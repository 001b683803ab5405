"""History, replay, Send Test Event and dead letters."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from meshes_gateway.clock import ManualClock
from meshes_gateway.config import Settings
from meshes_gateway.ids import rfc3339
from tests.conftest import Api, Receiver, make_settings


async def emit_all(api: Api, key: str, events: list[dict[str, Any]]) -> list[str]:
    ids = []
    for body in events:
        status, answer = await api.emit(key, body)
        assert status == 201
        ids.append(answer["event"]["id"])
    return ids


async def test_event_list_filters(api: Api, receiver: Receiver) -> None:
    ws, key, _, _ = await api.setup_route(receiver.url(), event="invoice.*")
    paid = await emit_all(
        api,
        key,
        [
            {"event": "invoice.paid", "payload": {}, "resource": "invoice", "resource_id": "1"},
            {"event": "invoice.paid", "payload": {}, "resource": "invoice", "resource_id": "2"},
        ],
    )
    (other,) = await emit_all(api, key, [{"event": "user.signup", "payload": {}}])
    await receiver.wait_for(2)
    for event_id in paid:
        await api.event_when(event_id, lambda e: e["status"] == "completed")

    def ids(page: dict[str, Any]) -> list[str]:
        return [r["id"] for r in page["records"]]

    base = f"/api/v1/workspaces/{ws}/events"
    assert ids(await api.call("GET", base, expect=200)) == [other, paid[1], paid[0]]
    assert ids(await api.call("GET", f"{base}?event=invoice.paid", expect=200)) == paid[::-1]
    assert ids(await api.call("GET", f"{base}?resource=invoice&resource_id=2", expect=200)) == [
        paid[1]
    ]
    completed = await api.call("GET", f"{base}?status=completed", expect=200)
    # An event no rule matched is settled at once: nothing is owed for it.
    assert set(ids(completed)) == {other, *paid}
    assert completed["records"][0]["total_rules"] == 0
    assert completed["records"][1]["completed_count"] == 1
    org_wide = await api.call("GET", f"/api/v1/events?workspace={ws}&limit=2", expect=200)
    assert ids(org_wide) == [other, paid[1]]
    assert org_wide["next_cursor"] is not None

    first = await api.call("GET", f"/api/v1/events/{paid[0]}", expect=200)
    created = first["created_at"]
    # `until` is inclusive to the millisecond; the second event may share it.
    until = ids(await api.call("GET", f"{base}?until={created}", expect=200))
    assert paid[0] in until
    assert set(until) <= set(paid)
    assert paid[0] not in ids(await api.call("GET", f"{base}?since={rfc3339(10**13)}", expect=200))
    await api.call("GET", f"{base}?since=yesterday", expect=400)
    await api.call("GET", f"{base}?status=lost", expect=400)

    payload = await api.call("GET", f"/api/v1/events/{paid[0]}/payload", expect=200)
    assert payload["payload"] == {}
    assert payload["rule_events"][0]["status"] == "completed"


async def test_pagination_under_concurrent_inserts_never_repeats_or_skips(
    api: Api, receiver: Receiver
) -> None:
    ws, key, _, _ = await api.setup_route(receiver.url(), event="nothing.matches")
    existing = set(await emit_all(api, key, [{"event": "e", "payload": {}}] * 40))

    async def keep_inserting() -> None:
        for _ in range(40):
            await api.emit(key, {"event": "e", "payload": {}})

    inserting = asyncio.create_task(keep_inserting())
    seen: list[str] = []
    cursor = None
    while True:
        query = f"?limit=7&cursor={cursor}" if cursor else "?limit=7"
        page = await api.call("GET", f"/api/v1/workspaces/{ws}/events{query}", expect=200)
        seen += [r["id"] for r in page["records"]]
        cursor = page["next_cursor"]
        await asyncio.sleep(0)
        if cursor is None:
            break
    await inserting
    assert len(seen) == len(set(seen))
    assert existing <= set(seen)


async def test_delivery_history_shows_every_attempt(api: Api, receiver: Receiver) -> None:
    receiver.responses = [503]
    _, key, conn, _ = await api.setup_route(receiver.url())
    (event_id,) = await emit_all(api, key, [{"event": "invoice.paid", "payload": {}}])
    history = await api.event_when(event_id, lambda e: e["status"] == "completed")
    rule_event = history["rule_events"][0]

    listed = await api.call("GET", f"/api/v1/deliveries?connection={conn}", expect=200)
    assert [d["id"] for d in listed["records"]] == [rule_event["id"]]
    detail = await api.call("GET", f"/api/v1/deliveries/{rule_event['id']}", expect=200)
    first, second = detail["attempts"]
    assert (first["status_code"], first["response_excerpt"], first["trigger"]) == (
        503,
        "nope",
        "scheduled",
    )
    assert second["status_code"] == 200
    assert first["duration_ms"] >= 0
    for name in ("pending", "processing", "completed", "failed"):
        await api.call("GET", f"/api/v1/deliveries?status={name}&connection={conn}", expect=200)
    await api.call("GET", "/api/v1/deliveries?connection=nope", expect=400)


async def test_replay_keeps_webhook_id_and_is_marked_manual(api: Api, receiver: Receiver) -> None:
    receiver.responses = [400]
    _, key, _, secret = await api.setup_route(receiver.url())
    (event_id,) = await emit_all(api, key, [{"event": "invoice.paid", "payload": {"a": 1}}])
    history = await api.event_when(event_id, lambda e: e["status"] == "failed")
    rule = history["rule_events"][0]

    retried = await api.call(
        "POST", f"/api/v1/events/{event_id}/rules/{rule['rule']}/retry", expect=200
    )
    assert retried["id"] == rule["id"]
    first, second = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == rule["id"]
    Webhook(secret).verify(second.body, second.headers)
    await api.event_when(event_id, lambda e: e["status"] == "completed")
    detail = await api.call("GET", f"/api/v1/deliveries/{rule['id']}", expect=200)
    assert [a["trigger"] for a in detail["attempts"]] == ["scheduled", "manual"]

    # Replaying the whole event re-sends what was delivered (a receiver lost it).
    replay = await api.call("POST", f"/api/v1/events/{event_id}/replay", expect=200)
    assert replay["queued"] == 1
    await receiver.wait_for(3)


async def test_replaying_something_queued_is_a_no_op(api: Api, receiver: Receiver) -> None:
    receiver.responses = [500]
    _, key, _, _ = await api.setup_route(receiver.url())
    # A long first retry delay keeps the delivery pending while we ask to replay it.
    api.gateway.scheduler._schedule_s = (3600.0,)
    (event_id,) = await emit_all(api, key, [{"event": "invoice.paid", "payload": {}}])
    history = await api.event_when(event_id, lambda e: e["rule_events"][0]["attempt_count"] == 1)
    rule = history["rule_events"][0]
    await api.call("POST", f"/api/v1/deliveries/{rule['id']}/retry", expect=425)
    replay = await api.call("POST", f"/api/v1/events/{event_id}/replay", expect=200)
    assert (replay["queued"], replay["skipped"]) == (0, 1)
    assert len(receiver.requests) == 1


async def test_bulk_retry_of_1000_failed_queues_exactly_those(
    api: Api, receiver: Receiver, receiver_factory: Any
) -> None:
    receiver.default_status = 400
    ws, key, conn, _ = await api.setup_route(receiver.url(), event="order.*")
    other_receiver = await receiver_factory()
    other_receiver.default_status = 400
    await api.add_connection(ws, other_receiver.url(), event="other.*")

    batch = [{"event": "order.created", "payload": {"i": i}} for i in range(1000)]
    status, _ = await api.emit(key, batch, path="/api/v1/events/bulk")
    assert status == 201
    status, _ = await api.emit(
        key, [{"event": "other.x", "payload": {}}], path="/api/v1/events/bulk"
    )
    assert status == 201

    async def all_failed() -> bool:
        return await api.count("failed") == 1001

    await api.until(all_failed)
    receiver.default_status = 200
    before = len(receiver.requests)
    answer = await api.call("POST", "/api/v1/deliveries/retry", {"connection": conn}, 200)
    assert answer == {"queued": 1000}
    await receiver.wait_for(before + 1000, timeout_s=30)

    async def settled() -> bool:
        return await api.count("completed") == 1000

    await api.until(settled)
    assert await api.count("failed") == 1  # the other connection's delivery stayed failed
    sent = [json.loads(r.body)["uuid"] for r in receiver.requests[before:]]
    assert len(sent) == len(set(sent)) == 1000
    again = await api.call("POST", "/api/v1/deliveries/retry", {"connection": conn}, 200)
    assert again == {"queued": 0}
    await api.call("POST", "/api/v1/deliveries/retry", {}, 400)


async def test_create_sends_a_signed_test_event(api: Api, receiver: Receiver) -> None:
    ws = (await api.call("POST", "/api/v1/workspaces", {"name": "t"}, 201))["workspace"]
    created = (
        await api.call(
            "POST",
            "/api/v1/connections",
            {
                "workspace": ws["id"],
                "type": "webhook",
                "name": "c",
                "metadata": {"url": receiver.url()},
            },
            201,
        )
    )["connection"]
    (got,) = await receiver.wait_for(1)
    body = Webhook(created["metadata"]["signing_secret"]).verify(got.body, got.headers)
    assert body["event"] == "meshes.test"
    assert body["payload"]["test"] is True


async def test_create_fails_with_the_attempt_when_the_endpoint_fails(
    api: Api, receiver: Receiver
) -> None:
    receiver.default_status = 500
    ws = (await api.call("POST", "/api/v1/workspaces", {"name": "t"}, 201))["workspace"]
    problem = await api.call(
        "POST",
        "/api/v1/connections",
        {
            "workspace": ws["id"],
            "type": "webhook",
            "name": "c",
            "metadata": {"url": receiver.url()},
        },
        422,
    )
    assert problem["attempt"]["status_code"] == 500
    assert problem["attempt"]["trigger"] == "test"
    listed = await api.call("GET", f"/api/v1/workspaces/{ws['id']}/connections", expect=200)
    assert listed["records"] == []


async def test_connection_and_rule_tests_are_recorded_as_tests(
    api: Api, receiver: Receiver
) -> None:
    ws, _, conn, secret = await api.setup_route(receiver.url(), event="invoice.*")
    answer = await api.call("POST", f"/api/v1/connections/{conn}/test", expect=200)
    assert answer["success"] is True
    assert answer["attempt"]["status_code"] == 200
    (rule,) = (await api.call("GET", f"/api/v1/workspaces/{ws}/rules", expect=200))["records"]
    receiver.responses = [500]
    answer = await api.call("POST", f"/api/v1/rules/{rule['id']}/test", expect=200)
    assert answer["success"] is False
    first, second = await receiver.wait_for(2)
    assert json.loads(second.body)["event"] == "invoice.test"
    Webhook(secret).verify(first.body, first.headers)

    delivery = await api.call("GET", f"/api/v1/deliveries/{answer['delivery_id']}", expect=200)
    assert delivery["status"] == "failed"  # a test is never retried
    assert [a["trigger"] for a in delivery["attempts"]] == ["test"]
    event = await api.call("GET", f"/api/v1/events/{answer['event_id']}", expect=200)
    assert event["created_by"] == "test"


class TestDeadLetters:
    """Auto-disable and re-enable, driven by the injected clock."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return make_settings(
            tmp_path / "data", retry_schedule_s=(3600.0,) * 7, poll_interval_s=3600.0
        )

    async def test_failing_for_five_days_disables_and_dead_letters(
        self, api: Api, receiver: Receiver, clock: ManualClock
    ) -> None:
        from meshes_gateway.engine.maintenance import Maintenance

        receiver.default_status = 503
        _, key, conn, _ = await api.setup_route(receiver.url())
        (event_id,) = await emit_all(api, key, [{"event": "invoice.paid", "payload": {}}])
        await api.event_when(event_id, lambda e: e["rule_events"][0]["attempt_count"] == 1)
        got = await api.call("GET", f"/api/v1/connections/{conn}", expect=200)
        assert got["failing_since"] is not None

        maintenance = Maintenance(
            api.gateway.store,
            clock,
            idempotency_ttl_s=86_400,
            retention_days=30,
            disable_after_s=5 * 86_400,
            on_disabled=api.gateway.directory.forget_connection,
        )
        clock.advance(4 * 86_400)
        assert await maintenance.disable_failing(clock.now_ms()) == []
        clock.advance(86_400 + 1)
        assert await maintenance.disable_failing(clock.now_ms()) == [conn]

        got = await api.call("GET", f"/api/v1/connections/{conn}", expect=200)
        assert (got["active"], got["inactive_reason"]) == (False, "failing")
        history = await api.call("GET", f"/api/v1/events/{event_id}", expect=200)
        assert history["rule_events"][0]["status"] == "failed"
        assert history["rule_events"][0]["last_error"] == "connection disabled (failing)"
        # New events for a disabled connection are dead-lettered, not sent.
        (later,) = await emit_all(api, key, [{"event": "invoice.paid", "payload": {}}])
        await api.event_when(later, lambda e: e["status"] == "failed")
        await api.call("POST", "/api/v1/deliveries/retry", {"connection": conn}, 409)
        assert len(receiver.requests) == 1

        receiver.default_status = 200
        on = await api.call(
            "PUT", f"/api/v1/connections/{conn}", {"name": "c", "active": True}, 200
        )
        assert (on["active"], on["failing_since"]) == (True, None)
        answer = await api.call("POST", "/api/v1/deliveries/retry", {"connection": conn}, 200)
        assert answer == {"queued": 2}
        await receiver.wait_for(3)
        await api.event_when(event_id, lambda e: e["status"] == "completed")

    async def test_manual_disable_dead_letters_pending(
        self, api: Api, receiver: Receiver, clock: ManualClock
    ) -> None:
        receiver.default_status = 503
        _, key, conn, _ = await api.setup_route(receiver.url())
        (event_id,) = await emit_all(api, key, [{"event": "invoice.paid", "payload": {}}])
        await api.event_when(event_id, lambda e: e["rule_events"][0]["attempt_count"] == 1)
        await api.call("PUT", f"/api/v1/connections/{conn}", {"name": "c", "active": False}, 200)
        history = await api.call("GET", f"/api/v1/events/{event_id}", expect=200)
        assert history["status"] == "failed"
        assert "manually_inactivated" in history["rule_events"][0]["last_error"]
