"""The store fixtures without PostgreSQL: skipped with a message, or failed when required.

A small test module runs in a pytest subprocess whose PostgreSQL server is a
closed loopback port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ._support import closed_port

TESTS = Path(__file__).resolve().parents[1]

MODULE = textwrap.dedent(
    """
    from store_support import store, store_url, sqlite_store_url, postgres_store_url
    from store_support import postgres_database

    async def test_uses_the_store(store):
        await store.ping()
    """
)


def run_pytest(tmp_path: Path, *, require: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_uses_store.py").write_text(MODULE)
    env = {
        **os.environ,
        "AUTHBRIDGE_TEST_POSTGRES_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/x",
        "AUTHBRIDGE_REQUIRE_POSTGRES": "1" if require else "",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_uses_store.py"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("require", [False, True])
def test_postgres_params_without_a_server(tmp_path: Path, require: bool) -> None:
    process = run_pytest(tmp_path, require=require)
    out = process.stdout
    assert "PostgreSQL is not reachable at 127.0.0.1:" in out, out + process.stderr
    if require:
        assert process.returncode == 1, out
        assert "1 passed" in out
        assert "AUTHBRIDGE_REQUIRE_POSTGRES=1" in out
        assert "error" in out  # the postgres parameter errors in its fixture
    else:
        assert process.returncode == 0, out
        assert "1 passed, 1 skipped" in out
