"""The password grant through ``IssuerRuntime.token``: answers, rate limits, hashing bounds, logs.

Every test runs on a real store: a SQLite file, and for the limits that must
hold across instances also PostgreSQL (skipped with a message when no server
answers on 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pwdlib.hashers.argon2 import Argon2Hasher

from authbridge.errors import StoreUnavailable
from authbridge.issuer import AppIssuer, IssuerRuntime, OAuthError, TokenRequest, _ratelimit
from authbridge.issuer._passwords import PasswordHasher, hash_password
from authbridge.jose import parse_compact
from authbridge.store import ClientRecord, UserRecord

ISSUER = "http://127.0.0.1:8000"
OTHER_RESOURCE = "https://reports.example.test"
SCOPES = ("items:read", "items:write", "admin")
CHEAP = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
PASSWORD = "correct horse battery staple"
ADDRESS = "127.0.0.1"
MAX_TOKEN = 16384

APP = ClientRecord(
    client_id="app",
    auth_method="none",
    grant_types=frozenset({"password", "refresh_token"}),
    scopes=frozenset(SCOPES),
)
NO_REFRESH = ClientRecord(
    client_id="no-refresh",
    auth_method="none",
    grant_types=frozenset({"password"}),
    scopes=frozenset(SCOPES),
)
READER = ClientRecord(
    client_id="reader",
    auth_method="none",
    grant_types=frozenset({"password", "refresh_token"}),
    scopes=frozenset({"items:read"}),
)
CLIENTS = (APP, NO_REFRESH, READER)


def cheap() -> Argon2Hasher:
    return Argon2Hasher(**CHEAP)


CHEAP_HASH = hash_password(PASSWORD, hasher=cheap())


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- stores ---------------------------------------------------------------------------------

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _postgres(statement: str) -> None:
    import asyncpg  # noqa: PLC0415 - only where PostgreSQL tests run

    connection = await asyncpg.connect(POSTGRES_ADMIN, timeout=3)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    name = "authbridge_pw_" + secrets.token_hex(6)
    try:
        await _postgres(f"CREATE DATABASE {name}")
    except (OSError, ImportError) as exc:
        pytest.skip(f"PostgreSQL is not available on 127.0.0.1:5432 ({exc.__class__.__name__})")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await _postgres(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'authbridge.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
def sqlite_store(tmp_path: Any) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'authbridge.db'}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def start_runtime(
    url: str, clock: Clock, *, hasher: Any = None, **options: Any
) -> IssuerRuntime:
    options.setdefault("scopes", list(SCOPES))
    config = AppIssuer(ISSUER, store=url, development=True, **options)
    runtime = IssuerRuntime(config, clock)
    runtime.passwords = PasswordHasher(
        max_concurrent=config.max_concurrent_hashes,
        max_waiting=config.max_waiting_hashes,
        hasher=hasher or cheap(),
    )
    await runtime.start()
    for client in CLIENTS:
        runtime.add_builtin_client(client)
    return runtime


@pytest.fixture
async def runtimes() -> AsyncIterator[list[IssuerRuntime]]:
    started: list[IssuerRuntime] = []
    yield started
    for runtime in started:
        runtime.passwords.close()
        await runtime.aclose()


@pytest.fixture
async def runtime(sqlite_store: str, clock: Clock, runtimes: list[IssuerRuntime]) -> IssuerRuntime:
    started = await start_runtime(sqlite_store, clock, resources=[OTHER_RESOURCE])
    runtimes.append(started)
    await add_user(started, "alice")
    return started


async def add_user(
    runtime: IssuerRuntime,
    username: str,
    *,
    password_hash: str | None = CHEAP_HASH,
    scopes: tuple[str, ...] = ("items:read", "items:write"),
    disabled: bool = False,
) -> UserRecord:
    user = UserRecord(
        id="id-" + secrets.token_urlsafe(8),
        username=username,
        password_hash=password_hash,
        scopes=frozenset(scopes),
        disabled=disabled,
    )
    return await runtime.store.users.add(user)


def request(
    username: str = "alice",
    password: str = PASSWORD,
    *,
    client_id: str = "app",
    address: str | None = ADDRESS,
    **form: str,
) -> TokenRequest:
    return TokenRequest(
        form={
            "grant_type": "password",
            "client_id": client_id,
            "username": username,
            "password": password,
            **form,
        },
        client_address=address,
    )


async def refused(runtime: IssuerRuntime, token_request: TokenRequest) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        await runtime.token(token_request)
    return caught.value


def claims(token: str) -> dict[str, Any]:
    return dict(parse_compact(token, max_bytes=MAX_TOKEN).claims)


# --- answers --------------------------------------------------------------------------------


async def test_success(runtime: IssuerRuntime, clock: Clock) -> None:
    alice = await runtime.store.users.by_username("alice")
    assert alice is not None
    body = await runtime.token(request())
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == "items:read items:write"
    assert body["refresh_token"].startswith("abrt_")
    token = claims(body["access_token"])
    assert token["sub"] == alice.id
    assert token["client_id"] == "app"
    assert token["iss"] == ISSUER
    assert token["aud"] == ISSUER
    assert token["scope"] == "items:read items:write"
    assert token["auth_time"] == int(clock())
    parsed = parse_compact(body["access_token"], max_bytes=MAX_TOKEN)
    assert parsed.header["typ"] == "at+jwt"
    # The app's own resource server accepts it (no HTTP).
    verified = await runtime.source.verify_jwt(parsed, len(body["access_token"]))
    assert verified.principal.subject == alice.id
    assert verified.principal.scopes == {"items:read", "items:write"}


@pytest.mark.parametrize("username", ["Alice", " ALICE ", "\uff41\uff4c\uff49\uff43\uff45"])
async def test_username_is_normalised(runtime: IssuerRuntime, username: str) -> None:
    body = await runtime.token(request(username))
    assert body["access_token"]


async def test_wrong_password_and_unknown_user_get_one_answer(runtime: IssuerRuntime) -> None:
    await add_user(runtime, "disabled", disabled=True)
    await add_user(runtime, "nopassword", password_hash=None)
    await add_user(runtime, "badhash", password_hash="not-a-hash")
    answers = [
        await refused(runtime, request(password="wrong")),
        await refused(runtime, request("nobody")),
        await refused(runtime, request("disabled")),  # the right password, disabled account
        await refused(runtime, request("nopassword")),
        await refused(runtime, request("badhash")),
        await refused(runtime, request(password="x" * 1025)),
        await refused(runtime, request(password="\ud800")),
        await refused(runtime, request("n" * 2000)),
    ]
    for error in answers:
        assert (error.status, error.body()) == (
            400,
            {"error": "invalid_grant", "error_description": "Invalid username or password"},
        )
        assert error.retry_after is None
    assert [e.reason for e in answers] == [
        "wrong_password",
        "unknown_user",
        "account_disabled",
        "no_password",
        "wrong_password",
        "password_too_long",
        "password_too_long",
        "username_too_long",
    ]


async def test_longest_password(runtime: IssuerRuntime) -> None:
    longest = "é" * 512  # 1,024 bytes of UTF-8
    await add_user(runtime, "long", password_hash=hash_password(longest, hasher=cheap()))
    assert (await runtime.token(request("long", longest)))["access_token"]
    error = await refused(runtime, request("long", longest + "x"))
    assert error.reason == "password_too_long"


@pytest.mark.parametrize(
    "form",
    [
        {"username": ""},
        {"password": ""},
        {"username": "   "},
    ],
)
async def test_missing_credentials(runtime: IssuerRuntime, form: dict[str, str]) -> None:
    base = dict(request().form)
    base.update(form)
    error = await refused(runtime, TokenRequest(form=base, client_address=ADDRESS))
    assert (error.status, error.error) == (400, "invalid_request")


@pytest.mark.parametrize("missing", ["username", "password"])
async def test_absent_credentials(runtime: IssuerRuntime, missing: str) -> None:
    form = {k: v for k, v in request().form.items() if k != missing}
    error = await refused(runtime, TokenRequest(form=form, client_address=ADDRESS))
    assert (error.status, error.error) == (400, "invalid_request")


async def test_rehash_on_login_when_parameters_change(runtime: IssuerRuntime) -> None:
    old = hash_password(PASSWORD, hasher=Argon2Hasher(time_cost=2, memory_cost=2048, parallelism=1))
    user = await add_user(runtime, "olduser", password_hash=old)
    await runtime.token(request("olduser"))
    stored = await runtime.store.users.get(user.id)
    assert stored is not None
    assert stored.password_hash != old
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    # The new hash verifies the same password; no further rehash.
    await runtime.token(request("olduser"))
    again = await runtime.store.users.get(user.id)
    assert again is not None
    assert again.password_hash == stored.password_hash
    # A wrong password never rehashes.
    user2 = await add_user(runtime, "olduser2", password_hash=old)
    await refused(runtime, request("olduser2", "wrong"))
    unchanged = await runtime.store.users.get(user2.id)
    assert unchanged is not None
    assert unchanged.password_hash == old


# --- scopes, audiences, refresh tokens -----------------------------------------------------


async def test_scopes_are_the_intersection(runtime: IssuerRuntime) -> None:
    body = await runtime.token(request(scope="items:read"))
    assert body["scope"] == "items:read"
    # alice may not have admin, though the client may.
    body = await runtime.token(request(scope="items:read admin"))
    assert body["scope"] == "items:read"
    error = await refused(runtime, request(scope="admin"))
    assert (error.error, error.reason) == ("invalid_scope", "scope_not_allowed")
    # The client's ceiling: reader may only grant items:read.
    body = await runtime.token(request(client_id="reader"))
    assert body["scope"] == "items:read"
    error = await refused(runtime, request(client_id="reader", scope="items:write"))
    assert error.error == "invalid_scope"
    error = await refused(runtime, request(scope="bogus"))
    assert (error.error, error.reason) == ("invalid_scope", "unknown_scope")


async def test_scope_refusal_before_the_password_reveals_nothing(runtime: IssuerRuntime) -> None:
    """A scope the user lacks is refused only after the password was right."""
    error = await refused(runtime, request(password="wrong", scope="admin"))
    assert error.error == "invalid_grant"


async def test_resource(runtime: IssuerRuntime) -> None:
    body = await runtime.token(request(resource=OTHER_RESOURCE))
    assert claims(body["access_token"])["aud"] == OTHER_RESOURCE
    error = await refused(runtime, request(resource="https://evil.example"))
    assert (error.status, error.error) == (400, "invalid_target")


async def test_refresh_token_only_when_allowed(
    sqlite_store: str, clock: Clock, runtimes: list[IssuerRuntime]
) -> None:
    runtime = await start_runtime(sqlite_store, clock)
    runtimes.append(runtime)
    await add_user(runtime, "alice")
    assert "refresh_token" not in await runtime.token(request(client_id="no-refresh"))
    body = await runtime.token(request())
    refreshed = await runtime.token(
        TokenRequest(
            form={
                "grant_type": "refresh_token",
                "client_id": "app",
                "refresh_token": body["refresh_token"],
            }
        )
    )
    assert claims(refreshed["access_token"])["sub"] == claims(body["access_token"])["sub"]

    no_refresh = await start_runtime(
        sqlite_store, clock, grant_types=("password", "client_credentials")
    )
    runtimes.append(no_refresh)
    assert "refresh_token" not in await no_refresh.token(request())


# --- rate limits ----------------------------------------------------------------------------


async def test_failures_per_account(
    sqlite_store: str, clock: Clock, runtimes: list[IssuerRuntime]
) -> None:
    runtime = await start_runtime(
        sqlite_store, clock, password_failures_per_account=3, password_window=60
    )
    runtimes.append(runtime)
    await add_user(runtime, "alice")
    for _ in range(2):
        assert (await refused(runtime, request(password="wrong"))).error == "invalid_grant"
    # A success does not reset the count (nor count as a failure).
    await runtime.token(request())
    clock.advance(10)
    assert (await refused(runtime, request(password="wrong"))).error == "invalid_grant"
    # Over the limit: refused before hashing, even with the right password.
    error = await refused(runtime, request())
    assert (error.status, error.error, error.reason) == (429, "slow_down", "rate_limited_account")
    assert error.body() == {
        "error": "slow_down",
        "error_description": "Too many attempts; retry later",
    }
    assert error.retry_after == 50
    clock.advance(49.5)
    assert (await refused(runtime, request())).retry_after == 1
    # Another account is not affected; the window's end lets alice in again.
    await add_user(runtime, "bob")
    await runtime.token(request("bob"))
    clock.advance(0.5)
    assert (await runtime.token(request()))["access_token"]


async def test_an_unreachable_account_store_counts_no_failure(
    sqlite_store: str,
    clock: Clock,
    runtimes: list[IssuerRuntime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The accounts' store is down while the counters answer (as with Redis beside
    # PostgreSQL): no password was tested, so nothing may count against the account.
    runtime = await start_runtime(
        sqlite_store, clock, password_failures_per_account=2, password_window=60
    )
    runtimes.append(runtime)
    await add_user(runtime, "alice")
    real = runtime.store.users.by_username

    async def down(username: str) -> UserRecord | None:
        raise StoreUnavailable("database:unreachable")

    monkeypatch.setattr(runtime.store.users, "by_username", down)
    for _ in range(5):
        error = await refused(runtime, request())
        assert (error.status, error.error) == (503, "temporarily_unavailable")
    monkeypatch.setattr(runtime.store.users, "by_username", real)
    assert (await runtime.token(request()))["access_token"]  # not locked


async def test_unknown_usernames_are_limited_by_normalised_name(
    sqlite_store: str, clock: Clock, runtimes: list[IssuerRuntime]
) -> None:
    runtime = await start_runtime(sqlite_store, clock, password_failures_per_account=3)
    runtimes.append(runtime)
    for name in ("ghost", "GHOST", " Ghost "):
        assert (await refused(runtime, request(name))).reason == "unknown_user"
    assert (await refused(runtime, request("gHoSt"))).reason == "rate_limited_account"


async def test_attempts_per_address(
    sqlite_store: str, clock: Clock, runtimes: list[IssuerRuntime]
) -> None:
    runtime = await start_runtime(
        sqlite_store, clock, password_attempts_per_address=4, password_window=30
    )
    runtimes.append(runtime)
    await add_user(runtime, "alice")
    # Every attempt counts: successes, failures, other accounts.
    await runtime.token(request())
    await refused(runtime, request(password="wrong"))
    await refused(runtime, request("someone"))
    await runtime.token(request())
    error = await refused(runtime, request())
    assert (error.status, error.error, error.reason) == (429, "slow_down", "rate_limited_address")
    assert error.retry_after == 30
    # Another address is not limited; IPv6 counts per /64.
    await runtime.token(request(address="127.0.0.2"))
    for host in range(1, 5):
        await runtime.token(request(address=f"2001:db8:0:1::{host}"))
    assert (await refused(runtime, request(address="2001:db8:0:1:ffff::9"))).status == 429
    await runtime.token(request(address="2001:db8:0:2::1"))
    # An IPv4-mapped address is its IPv4 address.
    assert (await refused(runtime, request(address="::ffff:127.0.0.1"))).status == 429
    clock.advance(30)
    assert (await runtime.token(request()))["access_token"]


async def test_limits_are_shared_between_instances(
    any_store: str, clock: Clock, runtimes: list[IssuerRuntime]
) -> None:
    options = {"password_failures_per_account": 4, "password_attempts_per_address": 6}
    first = await start_runtime(any_store, clock, **options)
    runtimes.append(first)
    second = await start_runtime(any_store, clock, **options)
    runtimes.append(second)
    await add_user(first, "alice")
    await refused(first, request(password="wrong"))
    await refused(second, request(password="wrong"))
    await refused(first, request(password="wrong"))
    await refused(second, request(password="wrong"))
    assert (await refused(first, request())).reason == "rate_limited_account"
    assert (await refused(second, request())).reason == "rate_limited_account"
    # Six attempts from the address in all (the two refused above count too).
    await add_user(first, "bob")
    assert (await refused(second, request("bob"))).reason == "rate_limited_address"


async def test_concurrent_guesses_are_bounded_exactly(
    any_store: str, clock: Clock, runtimes: list[IssuerRuntime]
) -> None:
    """Attempts are counted before hashing, so concurrency cannot buy extra guesses."""
    runtime = await start_runtime(
        any_store,
        clock,
        password_failures_per_account=5,
        max_concurrent_hashes=4,
        max_waiting_hashes=100,
    )
    runtimes.append(runtime)
    await add_user(runtime, "alice")
    results = await asyncio.gather(
        *(runtime.token(request(password=f"guess-{i}")) for i in range(30)),
        return_exceptions=True,
    )
    reasons = sorted(r.reason for r in results if isinstance(r, OAuthError))
    assert len(reasons) == 30
    assert reasons.count("wrong_password") == 5
    assert reasons.count("rate_limited_account") == 25


async def test_store_down(runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("connection_failed")

    monkeypatch.setattr(runtime.store.rate_limits, "hit", down)
    error = await refused(runtime, request())
    assert (error.status, error.error) == (503, "temporarily_unavailable")
    assert error.reason == "store_unavailable:connection_failed"


# --- hashing off the event loop -------------------------------------------------------------


class GatedHasher(Argon2Hasher):
    """argon2id of real cost whose verifications also wait for a gate (in the worker thread)."""

    def __init__(self) -> None:
        super().__init__(time_cost=2, memory_cost=16384, parallelism=1)
        self.gate = threading.Event()

    def verify(self, password: str | bytes, hash: str | bytes) -> bool:
        assert self.gate.wait(30)
        return super().verify(password, hash)


async def test_login_storm_refuses_the_excess_and_keeps_the_loop_responsive(
    sqlite_store: str, clock: Clock, runtimes: list[IssuerRuntime]
) -> None:
    gated = GatedHasher()
    runtime = await start_runtime(
        sqlite_store,
        clock,
        hasher=gated,
        max_concurrent_hashes=2,
        max_waiting_hashes=8,
        password_failures_per_account=1000,
        password_attempts_per_address=1000,
    )
    runtimes.append(runtime)
    await add_user(runtime, "alice", password_hash=hash_password(PASSWORD, hasher=gated))

    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - before - 0.01)

    ticking = asyncio.create_task(ticker())
    tasks = [asyncio.create_task(runtime.token(request())) for _ in range(60)]
    # With the gate closed no hash can finish: whatever completes was refused without one.
    for _ in range(1000):
        if sum(task.done() for task in tasks) >= 50:
            break
        await asyncio.sleep(0.01)
    done = [task for task in tasks if task.done()]
    assert len(done) == 50
    for task in done:
        error = task.exception()
        assert isinstance(error, OAuthError)
        assert (error.status, error.error, error.reason) == (
            503,
            "temporarily_unavailable",
            "password_hashing_busy",
        )
        assert error.retry_after == 1
    # The storm's first steps (60 requests reading the store) are the loop's own work; from
    # here on, hashes run: in worker threads, the loop keeps ticking.
    hashing_from = len(lags)
    gated.gate.set()
    bodies = await asyncio.gather(*(t for t in tasks if t not in done))
    stop.set()
    await ticking
    assert len(bodies) == 10
    assert all(body["access_token"] for body in bodies)
    assert len(lags) > hashing_from
    assert max(lags[hashing_from:]) < 0.25
    assert max(lags) < 2.0
    # Busy refusals and successes are not failures: the account's counter is back at 0.
    count, _ = await runtime.store.rate_limits.peek(_ratelimit.account_key("alice"), now=clock())
    assert count == 0


# --- a custom user directory ----------------------------------------------------------------


class MemoryDirectory:
    """An app's own user table, reduced to the three methods the grant needs."""

    def __init__(self, *users: UserRecord) -> None:
        self.users = {user.id: user for user in users}
        self.rehashed: list[str] = []

    async def by_username(self, username: str) -> UserRecord | None:
        return next((u for u in self.users.values() if u.username == username), None)

    async def get(self, user_id: str) -> UserRecord | None:
        return self.users.get(user_id)

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        self.rehashed.append(user_id)
        self.users[user_id] = dataclasses.replace(self.users[user_id], password_hash=password_hash)


async def test_custom_user_directory(
    sqlite_store: str, clock: Clock, runtimes: list[IssuerRuntime]
) -> None:
    old = hash_password(PASSWORD, hasher=Argon2Hasher(time_cost=2, memory_cost=2048, parallelism=1))
    directory = MemoryDirectory(
        UserRecord(id="42", username="carol", password_hash=old, scopes=frozenset({"admin"}))
    )
    runtime = await start_runtime(sqlite_store, clock, users=directory)
    runtimes.append(runtime)
    await add_user(runtime, "alice")  # in the built-in table: not used for logins now
    body = await runtime.token(request("Carol"))
    assert claims(body["access_token"])["sub"] == "42"
    assert body["scope"] == "admin"
    assert directory.rehashed == ["42"]
    assert (await refused(runtime, request("alice"))).reason == "unknown_user"


async def test_custom_directory_down(
    sqlite_store: str, clock: Clock, runtimes: list[IssuerRuntime]
) -> None:
    class Down(MemoryDirectory):
        async def by_username(self, username: str) -> UserRecord | None:
            raise StoreUnavailable("directory_down")

    runtime = await start_runtime(sqlite_store, clock, users=Down())
    runtimes.append(runtime)
    error = await refused(runtime, request())
    assert (error.status, error.error) == (503, "temporarily_unavailable")


# --- nothing secret in logs -----------------------------------------------------------------


async def _log_scenario(
    runtime: IssuerRuntime, secret_password: str
) -> tuple[list[str], list[str]]:
    """Logins down every path; the response bodies and the secrets involved."""
    stored = hash_password(secret_password, hasher=cheap())
    old = hash_password(
        secret_password, hasher=Argon2Hasher(time_cost=2, memory_cost=2048, parallelism=1)
    )
    await add_user(runtime, "dave", password_hash=old)
    await add_user(runtime, "erin", password_hash=stored)
    bodies = [str(await runtime.token(request("dave", secret_password)))]  # a rehash
    bodies.extend(
        [
            str((await refused(runtime, form)).body())
            for form in (
                request("erin", secret_password + "x"),
                request("erin", secret_password + "y"),
                request("erin", secret_password),  # rate limited
                request("nobody", secret_password),
                request("dave", secret_password * 100),  # too long
                request("dave", secret_password, scope="bogus"),
            )
        ]
    )
    dave = await runtime.store.users.by_username("dave")
    assert dave is not None
    assert dave.password_hash is not None
    assert dave.password_hash != old
    return bodies, [stored, old, dave.password_hash]


def _logged(records: list[logging.LogRecord]) -> str:
    return "".join(r.getMessage() + str(r.args) + str(r.__dict__) for r in records)


async def test_password_never_logged(
    sqlite_store: str,
    clock: Clock,
    runtimes: list[IssuerRuntime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    runtime = await start_runtime(sqlite_store, clock, password_failures_per_account=2)
    runtimes.append(runtime)
    secret_password = "Sup3r-Secret-Passw0rd"
    bodies, hashes = await _log_scenario(runtime, secret_password)
    # The password: in no log line of any library, at any level, and in no answer.
    assert secret_password not in caplog.text + _logged(caplog.records)
    assert all(secret_password not in body for body in bodies)
    # authbridge's own lines: no password, no hash, no username (a password is
    # sometimes typed into the username field).
    ours = _logged([r for r in caplog.records if r.name.startswith("authbridge")])
    for secret in (secret_password, *hashes, "dave", "erin", "nobody"):
        assert secret not in ours
        assert all(secret not in body for body in bodies[1:])
    failures = [r for r in caplog.records if r.getMessage().startswith("Password grant refused")]
    assert [r.levelno for r in failures] == [logging.INFO] * 6
    reasons = [r.getMessage().rsplit(": ", 1)[1] for r in failures]
    assert reasons == [
        "wrong_password",
        "wrong_password",
        "rate_limited_account",
        "unknown_user",
        "password_too_long",
        "unknown_scope",
    ]
    assert all("client app" in r.getMessage() for r in failures)


async def test_password_hash_not_logged_by_the_store(
    sqlite_store: str,
    clock: Clock,
    runtimes: list[IssuerRuntime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    runtime = await start_runtime(sqlite_store, clock, password_failures_per_account=2)
    runtimes.append(runtime)
    _, hashes = await _log_scenario(runtime, "Sup3r-Secret-Passw0rd")
    assert hashes[2] not in caplog.text + _logged(caplog.records)


@pytest.mark.parametrize("username", ["alice\x00", "\x00", "ali\x1bce", "al\x85ice"])
async def test_a_control_character_in_the_username_is_an_unknown_user(
    any_store: str, clock: Clock, runtimes: list[IssuerRuntime], username: str
) -> None:
    # PostgreSQL's text refuses NUL: looked up, it would be a 503 "store unavailable" on
    # demand. It names no account: the same hash and answer as an unknown user.
    started = await start_runtime(any_store, clock)
    runtimes.append(started)
    await add_user(started, "alice")
    error = await refused(started, request(username))
    assert (error.status, error.body()["error"], error.reason) == (
        400,
        "invalid_grant",
        "unknown_user",
    )
