"""Secret rotation, extra HMAC, rate limits, and canary secrets that must never leak."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks.webhooks import Webhook
from structlog.testing import capture_logs

from meshes_gateway.app import create_app
from meshes_gateway.clock import ManualClock, SystemClock
from meshes_gateway.config import Settings
from tests.conftest import Api, Receiver, make_settings


class TestRotation:
    @pytest.fixture
    def clock(self) -> ManualClock:
        # Real "now", so the official library's timestamp tolerance accepts it.
        return ManualClock(SystemClock().now_ms())

    async def test_both_secrets_verify_during_the_grace_period_only(
        self, api: Api, receiver: Receiver, clock: ManualClock
    ) -> None:
        _, key, conn, old = await api.setup_route(receiver.url())
        rotated = await api.call("POST", f"/api/v1/connections/{conn}/rotate-secret", expect=200)
        new = rotated["signing_secret"]
        assert new != old
        got = await api.call("GET", f"/api/v1/connections/{conn}", expect=200)
        assert new not in json.dumps(got)

        await api.emit(key, {"event": "invoice.paid", "payload": {}})
        (during,) = await receiver.wait_for(1)
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        Webhook(old).verify(during.body, during.headers)  # a receiver not yet updated
        Webhook(new).verify(during.body, during.headers)  # a receiver already updated

        clock.advance(24 * 3600 + 1)
        await api.emit(key, {"event": "invoice.paid", "payload": {}})
        _, after = await receiver.wait_for(2)
        (signature,) = after.headers["webhook-signature"].split(" ")
        msg = f"{after.headers['webhook-id']}.{after.headers['webhook-timestamp']}.".encode()
        mac = hmac.new(base64.b64decode(new[6:]), msg + after.body, hashlib.sha256)
        assert signature == "v1," + base64.b64encode(mac.digest()).decode()


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
async def test_meshes_style_hmac_over_the_exact_body(
    api: Api, receiver: Receiver, algorithm: str
) -> None:
    own = "whsec_" + base64.b64encode(b"k" * 32).decode()
    _, key, _, secret = await api.setup_route(
        receiver.url(),
        signing={"hmac": algorithm, "header": "X-Signature"},
        signing_secret=own,
    )
    assert secret == own
    await api.emit(key, {"event": "invoice.paid", "payload": {"a": 1}})
    (got,) = await receiver.wait_for(1)
    expected = hmac.new(b"k" * 32, got.body, getattr(hashlib, algorithm)).hexdigest()
    assert got.headers["X-Signature"] == f"{algorithm}={expected}"
    Webhook(own).verify(got.body, got.headers)


class TestRateLimit:
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return make_settings(tmp_path / "data", ingest_rate_per_s=10.0, ingest_burst=20.0)

    async def test_over_the_rate_is_429_with_retry_after_and_writes_nothing(
        self, api: Api, receiver: Receiver, clock: ManualClock
    ) -> None:
        _, key, _, _ = await api.setup_route(receiver.url(), event="nothing.*")
        batch = [{"event": "e", "payload": {}}] * 20
        status, _ = await api.emit(key, batch, path="/api/v1/events/bulk")
        assert status == 201
        resp = await api.client.post(
            "/api/v1/events",
            json={"event": "e", "payload": {}},
            headers={"X-Meshes-Publishable-Key": key},
        )
        assert resp.status == 429
        assert resp.content_type == "application/problem+json"
        assert int(resp.headers["Retry-After"]) >= 1
        page = await api.call("GET", "/api/v1/events?limit=100", expect=200)
        assert page["count"] == 20
        clock.advance(1)  # ten tokens back
        status, _ = await api.emit(key, {"event": "e", "payload": {}})
        assert status == 201
        # API credentials are not limited (operators, backfills).
        ws = page["records"][0]["workspace"]
        await api.call(
            "POST", "/api/v1/events", {"event": "e", "payload": {}, "workspace": ws}, 201
        )


SECRET_KEY_CANARY = "sk_CANARY_" + "q" * 40
SIGNING_CANARY = "whsec_CANARYCANARYCANARYCANARYCANARYCA"
PASSWORD_CANARY = "pw_CANARY_hunter2"
TOKEN_CANARY = "tok_CANARY_bearer"


@pytest.mark.sqlite_only
async def test_canary_secrets_never_leak(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path / "data", secret_key=SECRET_KEY_CANARY)
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    with capture_logs() as logs:
        client: TestClient[web.Request, web.Application] = TestClient(
            TestServer(create_app(settings), host="127.0.0.1")
        )
        await client.start_server()
        api = Api(client)
        token = base64.b64encode(f"{settings.access_key}:{SECRET_KEY_CANARY}".encode()).decode()
        api.auth = {"Authorization": f"Basic {token}"}
        ws = (await api.call("POST", "/api/v1/workspaces", {"name": "w"}, 201))["workspace"]
        receiver.responses = [500, 401]
        created = await api.call(
            "POST",
            "/api/v1/connections",
            {
                "workspace": ws["id"],
                "type": "webhook",
                "name": "basic",
                "metadata": {
                    "url": receiver.url(),
                    "skip_test": True,
                    "signing_secret": SIGNING_CANARY,
                    "auth": {"type": "basic", "username": "u", "password": PASSWORD_CANARY},
                },
            },
            201,
        )
        conn = created["connection"]["id"]
        bearer = await api.call(
            "POST",
            "/api/v1/connections",
            {
                "workspace": ws["id"],
                "type": "webhook",
                "name": "bearer",
                "metadata": {
                    "url": "http://10.0.0.1/",
                    "auth": {"type": "bearer", "token": TOKEN_CANARY},
                },
            },
            422,
        )
        answers.append(json.dumps(bearer))
        await api.call(
            "POST",
            "/api/v1/rules",
            {
                "workspace": ws["id"],
                "connection": conn,
                "event": "*",
                "metadata": {"action": "send_webhook"},
            },
            201,
        )
        key = ws["publishable_key"]["public_key"]
        _, event = await api.emit(key, {"event": "e", "payload": {}})
        history = await api.event_when(event["event"]["id"], lambda e: e["status"] == "failed")
        await api.call(
            "PUT",
            f"/api/v1/connections/{conn}",
            {"name": "basic", "metadata": {"url": receiver.url(), "auth": {"type": "basic"}}},
            422,
        )
        bad_auth = await client.get(
            "/api/v1/workspaces",
            headers={
                "Authorization": "Basic "
                + base64.b64encode(b"mk_x:" + SECRET_KEY_CANARY.encode()).decode()
            },
        )
        answers.append(await bad_auth.text())
        for path in (
            "/api/v1/connections",
            f"/api/v1/connections/{conn}",
            f"/api/v1/workspaces/{ws['id']}",
            f"/api/v1/deliveries/{history['rule_events'][0]['id']}",
            "/api/v1/deliveries",
            f"/api/v1/events/{event['event']['id']}",
        ):
            answers.append(json.dumps(await api.call("GET", path, expect=200)))
        await client.close()

    (first, second) = receiver.requests
    assert (
        first.headers["Authorization"]
        == "Basic " + base64.b64encode(f"u:{PASSWORD_CANARY}".encode()).decode()
    )
    Webhook(SIGNING_CANARY).verify(second.body, second.headers)
    texts = {
        "logs": json.dumps(logs, default=str),
        "stdlib logs": caplog.text,
        "answers": "\n".join(answers),
    }
    db = settings.data_dir
    files = b"".join(
        p.read_bytes() for p in db.iterdir() if p.is_file() and p.name != "credentials.json"
    )
    for canary in (SECRET_KEY_CANARY, SIGNING_CANARY, PASSWORD_CANARY, TOKEN_CANARY):
        for where, text in texts.items():
            assert canary not in text, (canary, where)
        assert canary.encode() not in files, canary
    assert b"CANARY" not in files
