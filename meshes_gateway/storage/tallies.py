"""What a batch of outcomes changes besides the deliveries themselves (both backends).

Pure arithmetic over the batch, so each backend only turns the results into
its own statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def within_room(
    candidates: Iterable[tuple[str, str]], room: Mapping[str, int], per_connection: int, limit: int
) -> list[str]:
    """Of (id, connection id) candidates in due order, the ids that fit each connection's room.

    A connection's room is what it has left under its in-flight cap: `room`
    for those with sends in flight, `per_connection` for the rest. Claiming
    only what fits (rather than claiming and releasing the rest) keeps one
    busy endpoint's backlog from costing a write per freed slot.
    """
    left = dict(room)
    chosen = []
    for rule_event_id, connection_id in candidates:
        free = left.get(connection_id, per_connection)
        if free <= 0:
            continue
        left[connection_id] = free - 1
        chosen.append(rule_event_id)
        if len(chosen) >= limit:
            break
    return chosen
