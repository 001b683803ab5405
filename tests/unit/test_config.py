"""Settings come from flags, then `MESHES_*` variables, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshes_gateway.config import OPTIONS, ConfigError, load_settings


def test_defaults() -> None:
    s = load_settings({})
    assert (s.host, s.port, s.sqlite_synchronous) == ("127.0.0.1", 8080, "FULL")
    assert s.sqlite_path == Path("data/meshes.db")
    assert not s.allow_http


def test_environment_and_flags() -> None:
    env = {
        "MESHES_PORT": "9000",
        "MESHES_RETRY_SCHEDULE": "1, 2.5,10",
        "MESHES_ALLOW_HTTP": "1",
        "MESHES_ALLOW_NETWORKS": "10.0.0.0/8, fd00::/8",
        "MESHES_DATABASE_URL": "sqlite:////tmp/x.db",
    }
    s = load_settings(env, {"port": "9100"})
    assert s.port == 9100  # the flag wins
    assert s.retry_schedule_s == (1.0, 2.5, 10.0)
    assert s.allow_http
    assert s.allow_networks == ("10.0.0.0/8", "fd00::/8")
    assert s.sqlite_path == Path("/tmp/x.db")  # noqa: S108


@pytest.mark.parametrize(
    "env",
    [
        {"MESHES_PORT": "http"},
        {"MESHES_RETRY_SCHEDULE": "5,soon"},
        {"MESHES_RETRY_SCHEDULE": "-1"},
        {"MESHES_ALLOW_HTTP": "maybe"},
        {"MESHES_ALLOW_NETWORKS": "10.0.0.0/33"},
        {"MESHES_ACCESS_KEY": "mk_x"},
        {"MESHES_DATABASE_URL": "mysql://x"},
        {"MESHES_SQLITE_SYNCHRONOUS": "OFF"},
    ],
)
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(env)


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for option in OPTIONS:
        assert f"`{option.env}`" in readme, option.env
        assert f"`{option.flag}`" in readme, option.flag
