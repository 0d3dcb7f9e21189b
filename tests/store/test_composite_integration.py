"""The issuer's and the login's own suites once more, on CompositeStore (PostgreSQL + Redis).

The tests of tests/issuer/test_code_grant.py, tests/client/test_transactions.py and
tests/issuer/test_password_grant.py that run on each store there (codes: single use,
replays revoking, 20 concurrent redemptions on one and on two instances; login
transactions: taken once, expiry, 50 concurrent logins; rate limits shared by two
instances, concurrent guesses bounded exactly), and two that depend on the code's
expiry, are collected here too, unchanged, with the store fixtures replaced: every
``IssuerRuntime`` opens its store through ``open_store(url, redis=...)`` (a
CompositeStore on the test's PostgreSQL database and its own Redis key prefix; two
runtimes are two instances, each with its own pools), and the ``store`` fixture is a
started CompositeStore. After each test, the SQL tables of the short-lived state are
checked empty: the one-time values and counters were in Redis.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from authbridge.issuer import IssuerRuntime
from authbridge.issuer import _runtime as issuer_runtime
from authbridge.store._composite import CompositeStore, open_store
from client import test_transactions as transactions
from issuer import test_code_grant as code_grant
from issuer import test_password_grant as password_grant
from issuer.code_support import clock, runtime
from store_support import REDIS_URL, run_async

from ._support import run_sql

__all__ = ["clock", "keys", "runtime", "runtimes"]

keys = transactions.keys
runtimes = password_grant.runtimes


BACKEND_PARAMETERS = ("store_url", "any_store")

ALSO = frozenset({"test_an_expired_code", "test_a_replay_long_after_revokes_nothing_more"})
"""Tests their module runs on SQLite only that depend on the store's expiry: rerun too."""


def _copies(module: types.ModuleType, uses: set[str]) -> Iterator[tuple[str, Callable[..., Any]]]:
    """The module's tests that request one of ``uses`` and run on every backend there (or
    are in `ALSO`), without their backend parameters."""
    for name, test in vars(module).items():
        if not name.startswith("test_") or not inspect.isfunction(test):
            continue
        if not uses & set(inspect.signature(test).parameters):
            continue
        marks = getattr(test, "pytestmark", [])
        one_backend = any(
            mark.name == "parametrize" and mark.args[0] in BACKEND_PARAMETERS for mark in marks
        )
        if one_backend and name not in ALSO:
            continue
        copy = types.FunctionType(
            test.__code__, test.__globals__, name, test.__defaults__, test.__closure__
        )
        copy.__dict__.update(test.__dict__)
        copy.__kwdefaults__ = test.__kwdefaults__
        copy.__annotations__ = test.__annotations__
        copy.__doc__ = test.__doc__
        copy.pytestmark = [  # type: ignore[attr-defined]
            mark
            for mark in marks
            if not (mark.name == "parametrize" and mark.args[0] in BACKEND_PARAMETERS)
        ]
        yield f"{name}__{module.__name__.rsplit('.', 1)[-1].removeprefix('test_')}", copy


RERUN = {
    **dict(_copies(code_grant, {"runtime", "store_url"})),
    **dict(_copies(transactions, {"store"})),
    **dict(_copies(password_grant, {"any_store"})),
}
globals().update(RERUN)


@pytest.fixture(autouse=True)
def _runtimes_open_composite_stores(
    monkeypatch: pytest.MonkeyPatch, redis_prefix: str, postgres_store_url: str
) -> Iterator[None]:
    monkeypatch.setattr(
        issuer_runtime,
        "open_store",
        functools.partial(open_store, redis=REDIS_URL, redis_prefix=redis_prefix),
    )
    yield

    async def ephemeral_rows() -> list[Any]:
        return await run_sql(
            postgres_store_url,
            "SELECT count(*) FROM authbridge_one_time",
            "SELECT count(*) FROM authbridge_rate_limits",
            "SELECT key FROM authbridge_replay",
        )

    one_time, rate_limits, replay = run_async(ephemeral_rows)
    assert (one_time[0][0], rate_limits[0][0]) == (0, 0)
    assert all(key.startswith(("at:", "dg:")) for (key,) in replay), replay


@pytest.fixture
def store_url(postgres_store_url: str) -> str:
    """Whatever backend a test asked for: the PostgreSQL database (Redis comes with it)."""
    return postgres_store_url


@pytest.fixture
def any_store(postgres_store_url: str) -> str:
    return postgres_store_url


@pytest.fixture
def store(composite_store: CompositeStore) -> CompositeStore:
    return composite_store


async def test_the_runtimes_here_run_on_composite_stores(
    runtime: IssuerRuntime, redis_prefix: str
) -> None:
    assert isinstance(runtime.store, CompositeStore)
    assert runtime.store.ephemeral.prefix == redis_prefix
    assert len(RERUN) == 4 + len(ALSO) + 9 + 3, sorted(RERUN)
