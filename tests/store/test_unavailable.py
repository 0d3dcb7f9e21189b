"""An unreachable store raises StoreUnavailable, never a driver error, never its password."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from sqlalchemy import text

from authbridge.errors import ConfigurationError, StoreUnavailable
from authbridge.store import SQLStore, UserRecord, open_store
from authbridge.store import _sql_db as sql_db
from store_support import require_postgres

from ._support import PASSWORD, closed_port


def assert_no_password(error: BaseException) -> None:
    text_ = "".join(traceback.format_exception(error))
    assert PASSWORD not in text_
    assert PASSWORD not in repr(error)


async def test_postgres_on_a_closed_port(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/authbridge"
    store = SQLStore(url)
    assert PASSWORD not in repr(store)
    for call in (store.start, store.ping, lambda: store.users.get("u")):
        with pytest.raises(StoreUnavailable) as failed:
            await call()
        assert failed.value.reason.startswith("unreachable")
        assert str(failed.value).startswith("store_unavailable: ")
        assert_no_password(failed.value)
    await store.aclose()


async def test_postgres_database_that_does_not_exist() -> None:
    require_postgres()
    store = SQLStore(f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:5432/no_such_db_ab")
    with pytest.raises(StoreUnavailable) as failed:
        await store.ping()
    assert_no_password(failed.value)
    await store.aclose()


async def test_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    store = SQLStore(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'a.db'}")
    with pytest.raises(StoreUnavailable):
        await store.start()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.aclose()


async def test_ping_answers_on_a_live_store(store: SQLStore) -> None:
    await store.ping()


async def test_postgres_connections_killed_under_the_pool_are_replaced(
    postgres_store: SQLStore,
) -> None:
    await postgres_store.users.add(UserRecord(id="u", username="u"))
    killer = sql_db.Database(postgres_store._db.url.render_as_string(hide_password=False))
    try:
        async with killer.write() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        await killer.dispose()
    # the pooled connections are dead: checked before use, replaced
    assert await postgres_store.users.get("u") is not None
    await postgres_store.ping()


@pytest.mark.parametrize(
    "url",
    [
        f"mysql+aiomysql://root:{PASSWORD}@127.0.0.1/db",
        f"postgresql+psycopg2://postgres:{PASSWORD}@127.0.0.1/db",
        "not a url",
    ],
)
def test_unsupported_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        open_store(url)
    assert refused.value.reason in ("unsupported_store_url", "invalid_store_url")
    assert_no_password(refused.value)


def test_postgres_without_asyncpg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sql_db.importlib.util.find_spec
    monkeypatch.setattr(
        sql_db.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "asyncpg" else real(name, *a),
    )
    with pytest.raises(ConfigurationError) as refused:
        SQLStore(f"postgresql://postgres:{PASSWORD}@127.0.0.1/db")
    assert refused.value.reason == "store_needs_postgres_extra"
    assert "authbridge[postgres]" in str(refused.value)
    assert_no_password(refused.value)


def test_open_store_passes_a_store_through_and_builds_one_from_a_url(tmp_path: Path) -> None:
    built = open_store(f"postgres://postgres:{PASSWORD}@127.0.0.1/db")
    assert isinstance(built, SQLStore)
    assert built.dialect == "postgresql"
    assert PASSWORD not in repr(built)
    assert open_store(built) is built
    lazy = open_store(f"sqlite:///{tmp_path / 'x.db'}", migrate=False)
    assert isinstance(lazy, SQLStore)
    assert lazy.migrate is False
    assert not (tmp_path / "x.db").exists()  # nothing connects before start()
