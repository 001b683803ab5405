"""Times and ids: RFC 3339 round trips to the millisecond; time bounds as id bounds."""

from __future__ import annotations

import pytest

from meshes_gateway.ids import is_uuid, new_id, parse_rfc3339, rfc3339, uuid7_floor


@pytest.mark.parametrize("ms", [0, 1, 999, 1_795_927_113_404, 1_795_927_113_403, 4_102_444_800_000])
def test_rfc3339_round_trips(ms: int) -> None:
    assert parse_rfc3339(rfc3339(ms)) == ms


def test_offsets_and_zones() -> None:
    assert parse_rfc3339("2026-01-01T01:00:00+01:00") == parse_rfc3339("2026-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="zone"):
        parse_rfc3339("2026-01-01T00:00:00")


def test_ids_sort_by_time_and_floor_bounds_them() -> None:
    first, second = new_id(), new_id()
    assert is_uuid(first)
    assert first < second
    ms = int(first[:8] + first[9:13], 16)
    assert uuid7_floor(ms) <= first < uuid7_floor(ms + 1)


def test_ids_in_one_millisecond_keep_their_order() -> None:
    ids = [new_id(1_795_927_113_404) for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5000
    # A full counter borrows the next millisecond instead of breaking the order.
    stamps = {int(i[:8] + i[9:13], 16) for i in ids}
    assert min(stamps) == 1_795_927_113_404
    assert max(stamps) <= 1_795_927_113_404 + 3
