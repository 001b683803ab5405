"""The benchmark harness keeps working: every scenario at a tiny size (no targets checked)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.run import SCENARIOS
from tests.pg import require_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
ROOT = Path(__file__).parents[2]


async def run_smoke(*argv: str) -> dict[str, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.run",
        "--smoke",
        *argv,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 170)
    assert proc.returncode == 0, err.decode()[-2000:]
    return {r["scenario"]: r for r in map(json.loads, out.decode().splitlines())}


async def test_every_scenario_prints_its_json() -> None:
    results = await run_smoke()
    assert set(results) == {"ceilings", *SCENARIOS}
    for name in SCENARIOS:
        assert "met" in results[name]
        assert results[name]["gateway_peak_rss_mb"] > 0
    assert results["ingest"]["events_per_s"] > 0
    assert results["drain"]["deliveries_per_s"] > 0
    assert results["latency"]["delivered"] == results["latency"]["sent"]


async def test_replicas_over_postgresql() -> None:
    url = require_server()
    results = await run_smoke("--only", "ingest,e2e", "--database-url", url, "--replicas", "2")
    for name in ("ingest", "e2e"):
        assert (results[name]["backend"], results[name]["replicas"]) == ("postgresql", 2)
    assert results["ingest"]["events_per_s"] > 0
    assert results["e2e"]["deliveries_per_s"] > 0
