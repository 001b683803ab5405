"""The official Meshes clients' wire behaviour, sent by a Node script using `jose`."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ACCESS_KEY, SECRET_KEY, Api, Receiver

HERE = Path(__file__).parent
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (HERE / "node_modules" / "jose").exists(),
    reason="needs node and `npm install` in tests/compat (make test does it)",
)


async def test_meshes_clients_work_with_only_the_base_url_changed(
    api: Api, receiver: Receiver
) -> None:
    base = str(api.client.make_url("/api/v1"))
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(HERE / "meshes_clients.mjs"),
        base,
        api.gateway.org_id,
        ACCESS_KEY,
        SECRET_KEY,
        receiver.url(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert (result["workspace_status"], result["connection_status"], result["rule_status"]) == (
        201,
        201,
        201,
    )
    assert result["emit_status"] == 201
    assert result["same_answer"] is True
    assert (result["batch_status"], result["batch_count"]) == (201, 100)
    assert result["listed_keys"] == ["count", "limit", "next_cursor", "records"]
    assert result["listed_count"] == 5
    assert result["payload_email"] == "ada@example.com"
    assert result["deleted"] == {"id": result["spare_id"], "type": "webhook"}
    # The connection test event, then one signup and 100 updates.
    await receiver.wait_for(102)
