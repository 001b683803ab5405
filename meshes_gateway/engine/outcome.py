"""Outcome classification: what an HTTP answer (or its absence) means for a delivery."""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

from meshes_gateway.engine.retry import next_delay_s
from meshes_gateway.storage.records import RuleEventStatus


class Verdict(enum.Enum):
    """What to do with a delivery after one attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    disable_reason: str | None = None
    honour_retry_after: bool = False


# Statuses a receiver uses to say "not now" rather than "never".
_TRANSIENT_4XX = frozenset({408, 425, 429})


def classify(status_code: int | None) -> Classification:
    """Classify an attempt by its status code; `None` means no answer (network, timeout).

    2xx delivers. No answer, 408, 425, 429 and 5xx are transient and retried.
    Redirects are not followed and count as permanent failures, like other 4xx:
    the endpoint is misconfigured and retrying will not fix it. 410 Gone also
    disables the connection, as the receiver said the endpoint is gone for good.
    """
    if status_code is None:
        return Classification(Verdict.RETRY)
    if 200 <= status_code < 300:
        return Classification(Verdict.DELIVERED)
    if status_code in _TRANSIENT_4XX or status_code >= 500:
        return Classification(Verdict.RETRY, honour_retry_after=status_code in {429, 503})
    if status_code == 410:
        return Classification(Verdict.FAIL, disable_reason="endpoint_gone")
    return Classification(Verdict.FAIL)


def decide(
    *,
    attempts_before: int,
    status_code: int | None,
    error: str | None,
    refused: bool,
    retry_after_s: float | None,
    now_ms: int,
    schedule_s: Sequence[float],
    rng: random.Random,
) -> tuple[RuleEventStatus, int | None, str | None, str | None]:
    """A delivery's next state after an attempt.

    Returns (status, next attempt time, last error, reason to disable the connection).
    """
    attempts_made = attempts_before + 1
    if refused:
        # An address the policy refuses will not become acceptable by waiting.
        return "failed", None, error, None
    verdict = classify(status_code)
    if verdict.verdict is Verdict.DELIVERED:
        return "completed", None, None, None
    last_error = error if status_code is None else f"HTTP {status_code}"
    if verdict.verdict is Verdict.FAIL:
        return "failed", None, last_error, verdict.disable_reason
    delay_s = next_delay_s(
        attempts_made,
        schedule_s,
        rng,
        retry_after_s if verdict.honour_retry_after else None,
    )
    if delay_s is None:
        return "failed", None, f"{last_error} (retries exhausted)", None
    return "pending", now_ms + int(delay_s * 1000), last_error, None
