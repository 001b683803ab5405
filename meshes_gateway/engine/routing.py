"""Rule matching: which rules an event fans out to. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from meshes_gateway.storage.records import Rule


def pattern_matches(pattern: str, event: str) -> bool:
    """`*` matches everything, `invoice.*` every name under `invoice.`, else exact."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event.startswith(pattern[:-1])
    return pattern == event


def matching_rules(
    rules: Iterable[Rule], event: str, resource: str | None, resource_id: str | None
) -> list[Rule]:
    """The active rules whose event pattern and optional resource filters match."""
    return [
        rule
        for rule in rules
        if rule.active
        and pattern_matches(rule.event, event)
        and (rule.resource is None or rule.resource == resource)
        and (rule.resource_id is None or rule.resource_id == resource_id)
    ]
