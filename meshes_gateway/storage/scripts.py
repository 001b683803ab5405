"""Numbered migration scripts shipped inside a backend's package."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations(package: str) -> list[tuple[int, str]]:
    """Every `NNNN_name.sql` in `<package>/migrations` as (version, SQL), in version order."""
    found = []
    for entry in resources.files(package).joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)
