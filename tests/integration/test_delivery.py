"""Emit -> receive, over real loopback sockets, signatures checked by `standardwebhooks`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
from standardwebhooks.webhooks import Webhook

from meshes_gateway.clock import ManualClock
from tests.conftest import Api, Receiver


async def test_emitted_event_arrives_signed_and_wrapped(api: Api, receiver: Receiver) -> None:
    _, key, _, secret = await api.setup_route(receiver.url())
    status, body = await api.emit(
        key, {"event": "invoice.paid", "payload": {"amount": 42}, "resource": "invoice"}
    )
    assert status == 201
    event = body["event"]

    (got,) = await receiver.wait_for(1)
    # The official library verifies the Standard Webhooks signature.
    verified = Webhook(secret).verify(got.body, got.headers)
    assert verified["uuid"] == event["id"]
    assert verified["event"] == "invoice.paid"
    assert verified["resource"] == "invoice"
    assert verified["payload"] == {"amount": 42}
    assert isinstance(verified["time_created"], int)
    assert isinstance(verified["time_sent"], int)
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith("meshes-gateway/")

    history = await api.event_when(event["id"], lambda e: e["status"] == "completed")
    (rule_event,) = history["rule_events"]
    assert got.headers["webhook-id"] == rule_event["id"]
    assert rule_event["attempt_count"] == 1


async def test_raw_format_sends_payload_bytes_as_received(api: Api, receiver: Receiver) -> None:
    _, key, _, secret = await api.setup_route(receiver.url(), payload_format="raw")
    raw = b'{"event":"invoice.paid","payload":{"b": 1,  "a": [1, 2]}}'
    resp = await api.client.post(
        "/api/v1/events",
        data=raw,
        headers={"X-Meshes-Publishable-Key": key, "Content-Type": "application/json"},
    )
    assert resp.status == 201
    (got,) = await receiver.wait_for(1)
    assert got.body == b'{"b": 1,  "a": [1, 2]}'  # not re-encoded
    assert got.headers["X-Meshes-Event"] == "invoice.paid"
    Webhook(secret).verify(got.body, got.headers)


async def test_server_error_is_retried_with_same_webhook_id(api: Api, receiver: Receiver) -> None:
    receiver.responses = [500]
    _, key, _, secret = await api.setup_route(receiver.url())
    _, body = await api.emit(key, {"event": "invoice.paid", "payload": {}})

    first, second = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    Webhook(secret).verify(second.body, second.headers)
    history = await api.event_when(body["event"]["id"], lambda e: e["status"] == "completed")
    assert history["rule_events"][0]["attempt_count"] == 2


async def test_client_error_fails_at_once_without_retry(api: Api, receiver: Receiver) -> None:
    receiver.responses = [400]
    _, key, _, _ = await api.setup_route(receiver.url())
    _, body = await api.emit(key, {"event": "invoice.paid", "payload": {}})

    history = await api.event_when(body["event"]["id"], lambda e: e["status"] == "failed")
    (rule_event,) = history["rule_events"]
    assert rule_event["attempt_count"] == 1
    assert rule_event["last_error"] == "HTTP 400"
    assert len(receiver.requests) == 1


async def test_retries_exhausted_becomes_failed(api: Api, receiver: Receiver) -> None:
    receiver.responses = [503, 503, 503, 503]
    _, key, _, _ = await api.setup_route(receiver.url())
    _, body = await api.emit(key, {"event": "invoice.paid", "payload": {}})
    history = await api.event_when(body["event"]["id"], lambda e: e["status"] == "failed")
    rule_event = history["rule_events"][0]
    # The test schedule has three delays: one first attempt plus three retries.
    assert rule_event["attempt_count"] == 4
    assert "retries exhausted" in rule_event["last_error"]


async def test_gone_disables_the_connection(api: Api, receiver: Receiver) -> None:
    receiver.responses = [410]
    _, key, conn_id, _ = await api.setup_route(receiver.url())
    _, body = await api.emit(key, {"event": "invoice.paid", "payload": {}})
    await api.event_when(body["event"]["id"], lambda e: e["status"] == "failed")
    conn = await api.call("GET", f"/api/v1/connections/{conn_id}", expect=200)
    assert conn["active"] is False
    assert conn["inactive_reason"] == "endpoint_gone"


async def test_fan_out_to_three_connections(
    api: Api, receiver_factory: Callable[[], Awaitable[Receiver]]
) -> None:
    receivers = [await receiver_factory() for _ in range(3)]
    ws, key, _, _ = await api.setup_route(receivers[0].url(), event="invoice.paid")
    await api.add_connection(ws, receivers[1].url(), event="invoice.*")
    await api.add_connection(ws, receivers[2].url(), event="*")
    # A rule for another event must not match.
    await api.add_connection(ws, receivers[0].url("/other"), event="user.signup")

    _, body = await api.emit(key, {"event": "invoice.paid", "payload": {"n": 1}})
    for r in receivers:
        (got,) = await r.wait_for(1)
        assert json.loads(got.body)["uuid"] == body["event"]["id"]
    history = await api.event_when(body["event"]["id"], lambda e: e["status"] == "completed")
    assert history["total_rules"] == 3
    assert len({r["id"] for r in history["rule_events"]}) == 3


async def test_resource_filter_narrows_a_rule(api: Api, receiver: Receiver) -> None:
    ws, key, conn_id, _ = await api.setup_route(receiver.url(), event="never.matches")
    await api.call(
        "POST",
        "/api/v1/rules",
        {
            "workspace": ws,
            "connection": conn_id,
            "event": "*",
            "resource": "invoice",
            "resource_id": "inv_1",
            "metadata": {"action": "send_webhook"},
        },
        201,
    )
    _, other = await api.emit(key, {"event": "x", "payload": {}, "resource": "invoice"})
    _, match = await api.emit(
        key, {"event": "x", "payload": {}, "resource": "invoice", "resource_id": "inv_1"}
    )
    (got,) = await receiver.wait_for(1)
    assert json.loads(got.body)["uuid"] == match["event"]["id"]
    history = await api.call("GET", f"/api/v1/events/{other['event']['id']}", expect=200)
    assert history["total_rules"] == 0


class TestDrivenClock:
    """Retries wait for the injected clock, not for wall time."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def settings(self, tmp_path):  # type: ignore[no-untyped-def]
        from tests.conftest import make_settings

        return make_settings(tmp_path / "data", retry_schedule_s=(300.0,), poll_interval_s=3600.0)

    async def test_retry_waits_for_its_schedule(
        self, api: Api, receiver: Receiver, clock: ManualClock
    ) -> None:
        receiver.responses = [500]
        _, key, _, _ = await api.setup_route(receiver.url())
        _, body = await api.emit(key, {"event": "invoice.paid", "payload": {}})
        history = await api.event_when(
            body["event"]["id"], lambda e: e["rule_events"][0]["attempt_count"] == 1
        )
        assert history["rule_events"][0]["status"] == "pending"
        assert history["rule_events"][0]["next_attempt_at"] is not None

        clock.advance(200)  # before the earliest jittered retry (300 s - 20 %)
        assert await api.gateway.scheduler.tick() == 0

        clock.advance(200)  # past the latest (300 s + 20 %)
        assert await api.gateway.scheduler.tick() == 1
        await receiver.wait_for(2)
        await api.event_when(body["event"]["id"], lambda e: e["status"] == "completed")
