"""First start: organization and API key made once, written 0600, the secret never logged."""

from __future__ import annotations

import base64
import json
import stat
import uuid
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from meshes_gateway.app import create_app
from meshes_gateway.storage.base import StoreError
from tests.conftest import make_settings


async def test_first_start_creates_credentials_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", access_key="", secret_key="")
    with capture_logs() as logs:
        client: TestClient[web.Request, web.Application] = TestClient(
            TestServer(create_app(settings), host="127.0.0.1")
        )
        await client.start_server()
        path = settings.data_dir / "credentials.json"
        creds = json.loads(path.read_text())
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert uuid.UUID(creds["org_id"]).version == 4
        assert creds["access_key"].startswith("mk_")
        assert len(creds["access_key"]) >= 25
        assert len(creds["secret_key"]) >= 43
        token = base64.b64encode(f"{creds['access_key']}:{creds['secret_key']}".encode())
        resp = await client.get(
            "/api/v1/workspaces", headers={"Authorization": f"Basic {token.decode()}"}
        )
        assert resp.status == 200
        await client.close()

    assert any(e["event"] == "credentials_created" and "path" in e for e in logs)
    assert creds["secret_key"] not in json.dumps(logs, default=str)

    # A second start keeps the organization and does not rewrite the key.
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    await client.close()
    assert json.loads(path.read_text()) == creds


@pytest.mark.sqlite_only
async def test_second_process_on_same_database_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    first: TestClient[web.Request, web.Application] = TestClient(
        TestServer(create_app(settings), host="127.0.0.1")
    )
    await first.start_server()
    second: TestClient[web.Request, web.Application] = TestClient(
        TestServer(create_app(settings), host="127.0.0.1")
    )
    try:
        with pytest.raises(StoreError, match="in use by another gateway"):
            await second.start_server()
    finally:
        await second.close()
        await first.close()


async def test_a_different_encryption_key_is_refused_at_start(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from meshes_gateway.secretbox import SecretBoxError

    first = make_settings(tmp_path / "data", encryption_key=Fernet.generate_key().decode())
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(create_app(first), host="127.0.0.1")
    )
    await client.start_server()
    await client.close()
    other = make_settings(
        tmp_path / "data",
        encryption_key=Fernet.generate_key().decode(),
        database_url=first.database_url,
    )
    client = TestClient(TestServer(create_app(other), host="127.0.0.1"))
    with pytest.raises(SecretBoxError, match="encryption key differs"):
        await client.start_server()
    await client.close()
