"""The command line: migrate and backup against a real data dir."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ACCESS_KEY, SECRET_KEY


def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"MESHES_ACCESS_KEY": ACCESS_KEY, "MESHES_SECRET_KEY": SECRET_KEY, "PATH": ""}
    return subprocess.run(
        [sys.executable, "-m", "meshes_gateway", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_migrate_then_backup_writes_a_checked_copy(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert cli("migrate", data_dir=data).returncode == 0
    with sqlite3.connect(data / "meshes.db") as conn:
        conn.execute(
            "INSERT INTO workspaces (id, name, description, created_at_ms, updated_at_ms)"
            " VALUES ('01930000-0000-7000-8000-000000000001', 'w', NULL, 1, 1)"
        )
    copy = tmp_path / "backup.db"
    done = cli("backup", str(copy), data_dir=data)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT name FROM workspaces").fetchall() == [("w",)]
    again = cli("backup", str(copy), data_dir=data)
    assert again.returncode == 2  # never overwrites
    assert "exists" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(("serve", "--port", "http"), "MESHES_PORT"), (("serve", "--retry-schedule", "x"), "retry")],
)
def test_bad_settings_exit_2_with_a_clear_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = cli(*args, data_dir=tmp_path / "data")
    assert done.returncode == 2
    assert message in done.stderr
