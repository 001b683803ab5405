"""What a batch of outcomes changes besides the deliveries themselves (both backends).

Pure arithmetic over the batch, so each backend only turns the results into
its own statements.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshes_gateway.storage.records import Outcome


def failing_streaks(outcomes: Iterable[Outcome]) -> dict[str, int | None]:
    """Per connection: when its failing streak started (first failure), or None (a success).

    Refusals (`endpoint_ok` None: no request was made) neither start nor end one.
    """
    streaks: dict[str, int | None] = {}
    for o in outcomes:
        if o.endpoint_ok is True:
            streaks[o.connection_id] = None
        elif o.endpoint_ok is False and o.connection_id not in streaks:
            streaks[o.connection_id] = o.attempt.attempted_at_ms
    return streaks


def event_deltas(
    applied: Iterable[tuple[str, str]], outcomes: Iterable[Outcome]
) -> list[tuple[str, int, int, int | None]]:
    """(event id, newly completed, newly failed, settled at) per event, sorted by id.

    `applied` holds (event id, new status) of the outcomes that did move a
    delivery (stale ones are not in it). Sorted so that two replicas' commits
    lock shared event rows in the same order.
    """
    settled_at: dict[str, int] = {}
    for o in outcomes:
        if o.completed_at_ms is not None:
            settled_at[o.event_id] = max(settled_at.get(o.event_id, 0), o.completed_at_ms)
    deltas: dict[str, list[int]] = {}
    for event_id, status in applied:
        delta = deltas.setdefault(event_id, [0, 0])
        if status == "completed":
            delta[0] += 1
        elif status == "failed":
            delta[1] += 1
    return [(e, c, f, settled_at.get(e)) for e, (c, f) in sorted(deltas.items())]
