"""The configuration the hot paths read on every request, cached in memory.

Ingest needs a workspace's publishable keys and rules for every event, and the
sender a connection's decrypted target for every delivery; reading them from
storage each time would cost a round trip per event. The management API
invalidates the affected entry whenever it changes one, so the cache is exact
for a single process.
"""

from __future__ import annotations

from meshes_gateway.clock import Clock
from meshes_gateway.secretbox import SecretBox
from meshes_gateway.storage.base import Store
from meshes_gateway.storage.records import PublishableKey, Rule
from meshes_gateway.webhooks import Target, build_target


class Directory:
    """Cached publishable keys, rules per workspace and connection targets."""

    def __init__(self, store: Store, box: SecretBox, clock: Clock) -> None:
        self._store = store
        self._box = box
        self._clock = clock
        # Only keys that exist are cached: random key ids must not grow memory.
        self._keys: dict[str, PublishableKey] = {}
        # Full key strings already verified against their digest (valid keys only).
        self._verified: dict[str, PublishableKey] = {}
        self._rules: dict[str, list[Rule]] = {}
        self._targets: dict[str, Target | None] = {}

    async def publishable_key(self, key_id: str) -> PublishableKey | None:
        key = self._keys.get(key_id)
        if key is None:
            key = await self._store.get_publishable_key(key_id)
            if key is not None:
                self._keys[key_id] = key
        return key

    async def rules(self, workspace_id: str) -> list[Rule]:
        rules = self._rules.get(workspace_id)
        if rules is None:
            rules = await self._store.rules_of_workspace(workspace_id)
            self._rules[workspace_id] = rules
        return rules

    async def target(self, connection_id: str) -> Target | None:
        cached = self._targets.get(connection_id)
        expires_at_ms = cached.expires_at_ms if cached is not None else None
        if expires_at_ms is not None and self._clock.now_ms() >= expires_at_ms:
            del self._targets[connection_id]  # the old signing secret's grace is over
        if connection_id not in self._targets:
            connection = await self._store.get_connection(connection_id)
            self._targets[connection_id] = (
                None
                if connection is None
                else build_target(connection, self._box, self._clock.now_ms())
            )
        return self._targets[connection_id]

    def verified_key(self, key: str) -> PublishableKey | None:
        return self._verified.get(key)

    def remember_verified(self, key: str, record: PublishableKey) -> None:
        self._verified[key] = record

    def forget_keys(self) -> None:
        """Drop cached keys (after a key is issued or revoked)."""
        self._keys.clear()
        self._verified.clear()

    def forget_rules(self, workspace_id: str) -> None:
        self._rules.pop(workspace_id, None)

    def forget_connection(self, connection_id: str) -> None:
        self._targets.pop(connection_id, None)

    def forget_all(self) -> None:
        self._keys.clear()
        self._verified.clear()
        self._rules.clear()
        self._targets.clear()
