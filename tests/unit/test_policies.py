"""Pure policies, table-tested: retry schedule, outcome classification, routing."""

from __future__ import annotations

import random

import pytest

from meshes_gateway.config import DEFAULT_RETRY_SCHEDULE_S
from meshes_gateway.engine.outcome import Verdict, classify, decide
from meshes_gateway.engine.retry import next_delay_s, parse_retry_after
from meshes_gateway.engine.routing import pattern_matches

D = Verdict.DELIVERED
R = Verdict.RETRY
F = Verdict.FAIL


@pytest.mark.parametrize(
    ("status", "verdict", "disable"),
    [
        (200, D, None),
        (201, D, None),
        (204, D, None),
        (299, D, None),
        (None, R, None),
        (408, R, None),
        (425, R, None),
        (429, R, None),
        (500, R, None),
        (502, R, None),
        (503, R, None),
        (599, R, None),
        (301, F, None),
        (302, F, None),
        (304, F, None),
        (400, F, None),
        (401, F, None),
        (403, F, None),
        (404, F, None),
        (409, F, None),
        (422, F, None),
        (410, F, "endpoint_gone"),
        (100, F, None),
    ],
)
def test_classify(status: int | None, verdict: Verdict, disable: str | None) -> None:
    got = classify(status)
    assert got.verdict is verdict
    assert got.disable_reason == disable


def test_retry_after_only_honoured_for_429_and_503() -> None:
    assert classify(429).honour_retry_after
    assert classify(503).honour_retry_after
    assert not classify(500).honour_retry_after


@pytest.mark.parametrize("attempts", range(1, len(DEFAULT_RETRY_SCHEDULE_S) + 1))
def test_delays_follow_the_schedule_within_jitter(attempts: int) -> None:
    base = DEFAULT_RETRY_SCHEDULE_S[attempts - 1]
    rng = random.Random(attempts)
    for _ in range(200):
        delay = next_delay_s(attempts, DEFAULT_RETRY_SCHEDULE_S, rng)
        assert delay is not None
        assert base * 0.8 <= delay <= base * 1.2


def test_schedule_exhausted_after_last_delay() -> None:
    n = len(DEFAULT_RETRY_SCHEDULE_S)
    assert next_delay_s(n + 1, DEFAULT_RETRY_SCHEDULE_S, random.Random()) is None
    assert next_delay_s(0, DEFAULT_RETRY_SCHEDULE_S, random.Random()) is None


def test_default_schedule_is_the_documented_one() -> None:
    assert DEFAULT_RETRY_SCHEDULE_S == (5, 300, 1800, 7200, 18000, 36000, 36000)


def test_retry_after_replaces_the_delay_but_is_bounded() -> None:
    rng = random.Random()
    assert next_delay_s(1, (5.0,), rng, retry_after_s=42) == 42
    assert next_delay_s(1, (5.0,), rng, retry_after_s=10**9) == 3600
    assert next_delay_s(2, (5.0,), rng, retry_after_s=42) is None  # never adds attempts


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), (" 3 ", 3.0), ("0", 0.0), ("-1", None), ("soon", None), (None, None)],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_decide_paths() -> None:
    kw = {"now_ms": 1000, "schedule_s": (5.0,), "rng": random.Random(1), "retry_after_s": None}
    assert decide(attempts_before=0, status_code=200, error=None, refused=False, **kw)[0] == (
        "completed"
    )
    status, next_at, err, _ = decide(
        attempts_before=0, status_code=500, error=None, refused=False, **kw
    )
    assert (status, err) == ("pending", "HTTP 500")
    assert next_at is not None
    assert 1000 + 4000 <= next_at <= 1000 + 6000
    status, _, err, _ = decide(attempts_before=1, status_code=500, error=None, refused=False, **kw)
    assert status == "failed"
    assert "exhausted" in (err or "")
    status, _, err, _ = decide(
        attempts_before=0, status_code=None, error="refused: x", refused=True, **kw
    )
    assert (status, err) == ("failed", "refused: x")
    status, _, err, _ = decide(
        attempts_before=0, status_code=None, error="timeout", refused=False, **kw
    )
    assert (status, err) == ("pending", "timeout")


@pytest.mark.parametrize(
    ("pattern", "event", "matches"),
    [
        ("invoice.paid", "invoice.paid", True),
        ("invoice.paid", "invoice.paid.late", False),
        ("invoice.*", "invoice.paid", True),
        ("invoice.*", "invoice.a.b", True),
        ("invoice.*", "invoice", False),
        ("invoice.*", "invoices.paid", False),
        ("*", "anything", True),
    ],
)
def test_pattern_matches(pattern: str, event: str, matches: bool) -> None:
    assert pattern_matches(pattern, event) is matches
