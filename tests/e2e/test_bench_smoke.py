"""The benchmark harness keeps working: every scenario at a tiny size (no targets checked)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from bench.run import SCENARIOS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
ROOT = Path(__file__).parents[2]


async def test_every_scenario_prints_its_json() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.run",
        "--smoke",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 170)
    assert proc.returncode == 0, err.decode()[-2000:]
    results = {r["scenario"]: r for r in map(json.loads, out.decode().splitlines())}
    assert set(results) == {"ceilings", *SCENARIOS}
    for name in SCENARIOS:
        assert "met" in results[name]
        assert results[name]["gateway_peak_rss_mb"] > 0
    assert results["ingest"]["events_per_s"] > 0
    assert results["drain"]["deliveries_per_s"] > 0
    assert results["latency"]["delivered"] == results["latency"]["sent"]
