"""``authbridge db upgrade|current`` on real stores; exit codes; never a URL password."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from authbridge.store import _migrate
from authbridge.store._models import VERSION_TABLE
from cli_support import run
from store_support import fresh_postgres_database

from ._support import PASSWORD, closed_port, run_sql


def test_upgrade_then_current_on_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    url = f"sqlite+aiosqlite:///{path}"
    missing = run("db", "current", "--store", url)
    assert missing.code == 1
    assert "(none)" in missing.out
    assert "run `authbridge db upgrade`" in missing.out
    assert not path.exists()  # asking does not create the file

    upgraded = run("db", "upgrade", "--store", url)
    assert upgraded.code == 0, upgraded.text
    assert f"upgraded from (none) to {_migrate.head()}" in upgraded.out
    again = run("db", "upgrade", "--store", url)
    assert again.code == 0
    assert f"schema {_migrate.head()} is current" in again.out
    current = run("db", "current", "--store", url)
    assert current.code == 0
    assert f"schema {_migrate.head()} (current)" in current.out


def test_store_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("AUTHBRIDGE_STORE", url)
    assert run("db", "upgrade").code == 0
    assert (tmp_path / "env.db").exists()
    assert run("db", "current").code == 0


def test_default_store_is_authbridge_db_in_the_working_directory(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "AUTHBRIDGE_STORE"}
    process = subprocess.run(
        [sys.executable, "-m", "authbridge", "db", "upgrade"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert process.returncode == 0, process.stderr
    assert "sqlite+aiosqlite:///authbridge.db: schema upgraded" in process.stdout
    assert (tmp_path / "authbridge.db").exists()


def test_unreachable_store_exits_2_without_the_password() -> None:
    url = f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/db"
    for command in ("upgrade", "current"):
        result = run("db", command, "--store", url)
        assert result.code == 2
        assert "unavailable" in result.err
        assert "postgres:***@127.0.0.1" in result.err
        assert PASSWORD not in result.text


def test_unsupported_url_exits_2_without_the_password() -> None:
    result = run("db", "upgrade", "--store", f"mysql://root:{PASSWORD}@127.0.0.1/db")
    assert result.code == 2
    assert "unsupported_store_url" in result.err
    assert PASSWORD not in result.text


def test_a_newer_schema_is_reported(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'newer.db'}"
    assert run("db", "upgrade", "--store", url).code == 0
    asyncio.run(run_sql(url, f"UPDATE {VERSION_TABLE} SET version_num = 'f00d'"))
    current = run("db", "current", "--store", url)
    assert current.code == 1
    assert "newer than this authbridge's" in current.out
    upgrade = run("db", "upgrade", "--store", url)
    assert upgrade.code == 2
    assert "store_schema_newer" in upgrade.err


def test_upgrade_on_postgres() -> None:
    with fresh_postgres_database("authbridge_cli") as url:
        assert run("db", "current", "--store", url).code == 1
        assert run("db", "upgrade", "--store", url).code == 0
        assert run("db", "current", "--store", url).code == 0


def test_db_help_lists_its_commands() -> None:
    result = run("db", "--help")
    assert result.code == 0
    assert result.out.index("  upgrade ") < result.out.index("  current ")
    assert "db " in run("--help").out
