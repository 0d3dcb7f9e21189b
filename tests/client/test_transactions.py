"""Login transactions in the real store (SQLite and PostgreSQL): single use, TTL, hashed keys."""

# ruff: noqa: F811 - the store fixtures are imported, then requested by name

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time

import pytest

from authbridge.client._flow import LoginClient, LoginOutcome
from authbridge.client._transactions import (
    LOGIN_KIND,
    LoginTransaction,
    LoginTransactions,
    browser_hash,
    new_secret_value,
    same_browser,
    transaction_key,
)
from authbridge.errors import LoginError
from authbridge.store import Conflict, SQLStore
from store_support import (  # noqa: F401 - fixtures
    postgres_database,
    postgres_store_url,
    sqlite_store_url,
    store,
    store_url,
)

from .test_id_token import Keys
from .test_oidc_login import CALLBACK, MockOP


def _transaction(now: float, **overrides: object) -> LoginTransaction:
    values: dict[str, object] = {
        "provider": "op",
        "redirect_uri": "https://app.example.test/oauth/callback",
        "browser": browser_hash("browser-cookie"),
        "purpose": "session",
        "created_at": now,
        "nonce": new_secret_value(),
        "code_verifier": new_secret_value(),
        "return_to": "/after",
    }
    values.update(overrides)
    return LoginTransaction(**values)  # type: ignore[arg-type]


def test_secret_values_are_256_bit_urlsafe_and_distinct() -> None:
    values = {new_secret_value() for _ in range(1000)}
    assert len(values) == 1000
    for value in values:
        assert len(value) == 43  # 32 bytes, base64url without padding
        assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_the_key_is_a_labelled_sha256_of_the_state() -> None:
    assert transaction_key("abc") == hashlib.sha256(b"login\0abc").hexdigest()
    assert transaction_key("abc") != hashlib.sha256(b"abc").hexdigest()
    assert browser_hash("abc") != transaction_key("abc")


def test_the_browser_binding_compares_hashes() -> None:
    stored = browser_hash("cookie-1")
    assert same_browser("cookie-1", stored)
    assert not same_browser("cookie-2", stored)
    assert not same_browser(None, stored)
    assert not same_browser("", stored)


def test_the_record_round_trips_and_hides_secrets_in_repr() -> None:
    tx = _transaction(
        1000.0, purpose="authorize", authorize={"client_id": "c", "scopes": ["a"]}, link_user=None
    )
    assert LoginTransaction.from_json(tx.to_json()) == tx
    shown = repr(tx)
    assert tx.nonce is not None
    assert tx.code_verifier is not None
    for secret in (tx.nonce, tx.code_verifier, tx.browser):
        assert secret not in shown


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"provider": "op"}',
        b'{"provider": 1, "redirect_uri": "x", "browser": "b", "purpose": "session", '
        b'"created_at": 1}',
        b'{"provider": "op", "redirect_uri": "x", "browser": "b", "purpose": "other", '
        b'"created_at": 1}',
        b'{"provider": "op", "redirect_uri": "x", "browser": "b", "purpose": "session", '
        b'"created_at": 1, "nonce": 5}',
    ],
)
def test_a_record_that_does_not_decode_is_an_unknown_state(raw: bytes) -> None:
    with pytest.raises(LoginError, match="state_unknown"):
        LoginTransaction.from_json(raw)


async def test_a_transaction_is_taken_once(store: SQLStore) -> None:
    clock = _Clock(1_000_000.0)
    transactions = LoginTransactions(store.one_time, clock=clock, ttl=600.0)
    state = new_secret_value()
    tx = _transaction(clock())
    await transactions.save(state, tx)
    assert await transactions.take(state) == tx
    assert await transactions.take(state) is None  # replayed


async def test_the_state_is_not_stored_plain(store: SQLStore) -> None:
    clock = _Clock(1_000_000.0)
    transactions = LoginTransactions(store.one_time, clock=clock)
    state = new_secret_value()
    await transactions.save(state, _transaction(clock()))
    # Only the hash finds it; the state itself is no key.
    assert await store.one_time.take(LOGIN_KIND, state, now=clock()) is None
    raw = await store.one_time.take(LOGIN_KIND, transaction_key(state), now=clock())
    assert raw is not None
    assert state.encode() not in raw


async def test_an_expired_transaction_is_gone(store: SQLStore) -> None:
    clock = _Clock(1_000_000.0)
    transactions = LoginTransactions(store.one_time, clock=clock, ttl=600.0)
    state = new_secret_value()
    await transactions.save(state, _transaction(clock()))
    clock.now += 600.5
    assert await transactions.take(state) is None


async def test_a_transaction_just_within_its_ttl_is_taken(store: SQLStore) -> None:
    clock = _Clock(1_000_000.0)
    transactions = LoginTransactions(store.one_time, clock=clock, ttl=600.0)
    state = new_secret_value()
    await transactions.save(state, _transaction(clock()))
    clock.now += 599.0
    assert await transactions.take(state) is not None


async def test_a_state_cannot_be_stored_twice(store: SQLStore) -> None:
    clock = _Clock(1_000_000.0)
    transactions = LoginTransactions(store.one_time, clock=clock)
    await transactions.save("same-state", _transaction(clock()))
    with pytest.raises(Conflict):
        await transactions.save("same-state", _transaction(clock(), provider="other"))
    taken = await transactions.take("same-state")
    assert taken is not None
    assert taken.provider == "op"  # the first record, untouched


async def test_concurrent_takes_of_one_state_give_it_to_exactly_one(store: SQLStore) -> None:
    clock = _Clock(1_000_000.0)
    transactions = LoginTransactions(store.one_time, clock=clock)
    state = new_secret_value()
    await transactions.save(state, _transaction(clock()))
    results = await asyncio.gather(*(transactions.take(state) for _ in range(10)))
    assert sum(r is not None for r in results) == 1


@pytest.mark.parametrize("state", ["", "x" * 513, "with space", "caf\u00e9", "a\nb"])
async def test_impossible_states_are_unknown_without_a_lookup(state: str) -> None:
    class Refusing:
        async def take(self, kind: str, key: str, *, now: float) -> bytes | None:
            raise AssertionError("no lookup for an impossible state")

    transactions = LoginTransactions(Refusing(), clock=lambda: 0.0)  # type: ignore[arg-type]
    assert await transactions.take(state) is None


def test_the_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl"):
        LoginTransactions(None, clock=lambda: 0.0, ttl=0)  # type: ignore[arg-type]


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- concurrent logins (fastapi-sso #186: one user received another's token under load) ------
# Each login is its own record: against an OP whose every answer takes real time.


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


BROWSER = "browser-cookie-" + secrets.token_urlsafe(32)


async def _concurrent_logins(store: SQLStore, keys: Keys, count: int) -> None:
    op = MockOP(keys, latency=0.05)  # every OP request takes real time
    clock = time.time
    client = LoginClient(
        {"op": op.login(clock=clock)}, store.one_time, clock=clock, callback_url=CALLBACK
    )
    browsers = [f"browser-{i}-{secrets.token_urlsafe(8)}" for i in range(count)]
    urls = await asyncio.gather(
        *(client.start("op", browser=b, purpose="session") for b in browsers)
    )
    callbacks = [op.authorize(url, sub=f"person-{i}") for i, url in enumerate(urls)]
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(client.finish(p, browser=b) for p, b in zip(callbacks, browsers, strict=True))
    )
    elapsed = time.monotonic() - started
    assert [o.identity.subject for o in outcomes] == [f"person-{i}" for i in range(count)]
    assert [o.identity.email for o in outcomes] == [
        f"person-{i}@example.test" for i in range(count)
    ]
    assert op.requests["/token"] == count
    # They overlapped: serially, count x (token + userinfo) x 50 ms would take far longer.
    assert elapsed < count * 2 * 0.05 / 2


async def test_fifty_concurrent_logins_each_end_in_their_own_identity(
    store: SQLStore, keys: Keys
) -> None:
    await _concurrent_logins(store, keys, 50)


async def test_two_tabs_of_one_browser_log_in_at_once(store: SQLStore, keys: Keys) -> None:
    op = MockOP(keys, latency=0.05)
    clock = time.time
    client = LoginClient(
        {"op": op.login(clock=clock)}, store.one_time, clock=clock, callback_url=CALLBACK
    )
    first = await client.start("op", browser=BROWSER, purpose="session", return_to="/tab-1")
    second = await client.start("op", browser=BROWSER, purpose="session", return_to="/tab-2")
    outcomes = await asyncio.gather(
        client.finish(op.authorize(second, sub="in-tab-2"), browser=BROWSER),
        client.finish(op.authorize(first, sub="in-tab-1"), browser=BROWSER),
    )
    assert [(o.identity.subject, o.transaction.return_to) for o in outcomes] == [
        ("in-tab-2", "/tab-2"),
        ("in-tab-1", "/tab-1"),
    ]


async def test_a_concurrent_double_finish_succeeds_once(store: SQLStore, keys: Keys) -> None:
    op = MockOP(keys, latency=0.05)
    clock = time.time
    client = LoginClient(
        {"op": op.login(clock=clock)}, store.one_time, clock=clock, callback_url=CALLBACK
    )
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = op.authorize(url)
    results = await asyncio.gather(
        *(client.finish(params, browser=BROWSER) for _ in range(8)), return_exceptions=True
    )
    successes = [r for r in results if isinstance(r, LoginOutcome)]
    failures = [r for r in results if isinstance(r, LoginError)]
    assert len(successes) == 1
    assert len(failures) == 7
    assert {f.reason for f in failures} == {"state_unknown"}
    assert op.requests["/token"] == 1
