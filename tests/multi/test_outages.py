"""Redis stopped then started, PostgreSQL stopped then started: what keeps working, what
answers 503, and recovery without restarting the instances.

Each outage has its own servers (a private ``redis-server``, a private PostgreSQL cluster,
both on free ports; the system ones are never touched) and two instances of the app on
them. One module fixture per outage runs it once and records what each instance answered
before, during and after; the tests assert on that record.

Redis holds the login transactions, the codes and the rate-limit windows: while it is
down, starting a login and redeeming a code answer 503, and the app's own access tokens
keep validating (no store is needed for that). PostgreSQL holds accounts, clients,
refresh families and keys: while it is down, the token endpoint answers 503 and access
tokens keep validating with the keys in memory.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
import pytest

from authbridge.testing import ServedFakeIssuer

from .flows import (
    LOCAL_PASSWORD,
    LOCAL_USER,
    SWAGGER,
    Authorization,
    Forms,
    approve_upstream,
    bearer,
    location,
    password_grant,
    refresh_grant,
)
from .harness import SECRETS, Browser, Cluster, assert_no_secret
from .support import (
    ISSUER_OPTIONS,
    PostgresServer,
    RedisServer,
    open_cluster,
    redis_config,
    require_redis_store,
)

NAMES = ("X", "Y")
OUTAGE = 1.5
"""Seconds each outage lasts while the instances are asked."""
RECOVERY_DEADLINE = 20.0


@dataclass
class Record:
    """Answers by phase (``before``, ``during``, ``after``), probe and instance."""

    statuses: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    sequences: dict[tuple[str, str, str], list[int]] = field(
        default_factory=lambda: defaultdict(list)
    )
    bodies: dict[tuple[str, str, str], httpx.Response] = field(default_factory=dict)
    refused: dict[tuple[str, str, str], httpx.Response] = field(default_factory=dict)
    recovered_after: dict[str, float] = field(default_factory=dict)
    down_for: float = 0.0
    logs: str = ""
    secrets: set[str] = field(default_factory=set)

    def note(self, phase: str, probe: str, name: str, answer: httpx.Response) -> int:
        self.statuses[(phase, probe)].append(answer.status_code)
        self.sequences[(phase, probe, name)].append(answer.status_code)
        self.bodies.setdefault((phase, probe, name), answer)
        if answer.status_code >= 400:
            self.refused.setdefault((phase, probe, name), answer)
        return answer.status_code

    def of(self, phase: str, probe: str) -> set[int]:
        return set(self.statuses[(phase, probe)])


def _code(browser: Browser, auth: Authorization, on: str) -> str:
    page = browser.get(auth.path, on=on)
    fields = next(fields for _, fields in Forms(page.text).forms if "password" in fields)
    fields.update(username=LOCAL_USER, password=LOCAL_PASSWORD)
    return auth.code_from(location(browser.post("/oauth/authorize", on=on, data=fields)))


def _login_start(browser: Browser, on: str) -> httpx.Response:
    auth = Authorization.new()
    return browser.get("/oauth/authorize?" + urlencode({**auth.params, "idp": "fake"}), on=on)


def _recover(record: Record, up_at: float, probe: Callable[[str], httpx.Response], ok: int) -> None:
    """Ask each instance until ``probe`` answers ``ok``; note how long that took."""
    pending = set(NAMES)
    deadline = time.monotonic() + RECOVERY_DEADLINE
    while pending:
        assert time.monotonic() < deadline, f"{sorted(pending)} did not recover"
        for name in sorted(pending):
            if record.note("recovering", "probe", name, probe(name)) == ok:
                record.recovered_after[name] = round(time.monotonic() - up_at, 3)
                pending.discard(name)
        time.sleep(0.05)


def _probe_health(record: Record, phase: str, browser: Browser) -> None:
    for name in NAMES:
        record.note(phase, "live", name, browser.get("/healthz", on=name))
        record.note(phase, "ready", name, browser.get("/readyz", on=name))


def _ready_again(record: Record, browser: Browser) -> None:
    """Readiness back on every instance (its answer is cached for a second)."""
    deadline = time.monotonic() + RECOVERY_DEADLINE
    for name in NAMES:
        while record.note("after", "ready", name, browser.get("/readyz", on=name)) != 200:
            assert time.monotonic() < deadline, f"{name} not ready again"
            time.sleep(0.1)


def _assert_health(record: Record, failed: str) -> None:
    """Alive throughout; not ready during the outage, naming only the failed check."""
    for phase in ("before", "during", "after"):
        assert record.of(phase, "live") == {200}, phase
    assert record.of("before", "ready") == {200}
    for name in NAMES:
        # Readiness is cached for a second: ready at first, then not ready until the end.
        during = record.sequences[("during", "ready", name)]
        first = during.index(503)
        assert set(during[:first]) <= {200}, during
        assert set(during[first:]) == {503}, during
        assert record.sequences[("after", "ready", name)][-1] == 200
    checks = record.refused[("during", "ready", "X")].json()["checks"]
    assert {name for name, state in checks.items() if state != "ok"} == {failed}, checks


# --- Redis ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_outage(fake_issuer: ServedFakeIssuer, tmp_path_factory: pytest.TempPathFactory) -> Record:
    require_redis_store()
    work = tmp_path_factory.mktemp("multi-redis-outage")
    server = RedisServer(work / "redis", password=secrets.token_urlsafe(16))
    server.start()
    record = Record()
    try:
        with (
            open_cluster(fake_issuer, work, NAMES, ephemeral=redis_config(server.url)) as cluster,
            Browser(cluster, NAMES) as browser,
        ):
            _redis_outage(cluster, browser, server, record)
        record.secrets = {server.url, str(server.password), cluster.config["kek"]}
        record.logs = cluster.logs()
    finally:
        server.stop()
    return record


def _redis_outage(cluster: Cluster, browser: Browser, server: RedisServer, record: Record) -> None:
    tokens = password_grant(browser, on="X").json()
    pending = Authorization.new()
    pending_code = _code(browser, pending, on="Y")
    for name in NAMES:
        record.note("before", "login_start", name, _login_start(browser, name))
        record.note("before", "whoami", name, browser.whoami(tokens["access_token"], on=name))
    _probe_health(record, "before", browser)

    server.stop()
    down_at = time.monotonic()
    refresh_token = tokens["refresh_token"]
    while time.monotonic() < down_at + OUTAGE:
        for name in NAMES:
            record.note("during", "login_start", name, _login_start(browser, name))
            session = browser.get("/auth/login/fake", on=name)
            record.note("during", "session_login_start", name, session)
            record.note("during", "whoami", name, browser.whoami(tokens["access_token"], on=name))
            active = browser.get("/active", on=name, headers=bearer(tokens["access_token"]))
            record.note("during", "active", name, active)
        _probe_health(record, "during", browser)
        time.sleep(0.1)
    for name in NAMES:
        record.note("during", "code", name, pending.redeem(browser, pending_code, on=name))
        record.note("during", "password", name, password_grant(browser, on=name))
        renewed = refresh_grant(browser, refresh_token, on=name)
        if record.note("during", "refresh", name, renewed) == 200:
            refresh_token = renewed.json()["refresh_token"]

    server.start()
    up_at = time.monotonic()
    record.down_for = round(up_at - down_at, 3)
    _recover(record, up_at, lambda name: _login_start(browser, name), 303)
    _ready_again(record, browser)
    _probe_health(record, "after", browser)
    for name in NAMES:
        record.note("after", "whoami", name, browser.whoami(tokens["access_token"], on=name))
        record.note("after", "password", name, password_grant(browser, on=name))
        again = Authorization.new()
        record.note(
            "after", "code", name, again.redeem(browser, _code(browser, again, on=name), on=name)
        )
    # The code issued before the outage was in Redis' memory only.
    record.note("after", "old_code", "X", pending.redeem(browser, pending_code, on="X"))
    fresh = Authorization.new()
    to_upstream = location(
        browser.get("/oauth/authorize?" + urlencode({**fresh.params, "idp": "fake"}), on="X")
    )
    back = approve_upstream(browser, to_upstream)
    code = fresh.code_from(location(browser.get(back, on="Y")))
    record.note("after", "provider_login", "X", fresh.redeem(browser, code, on="X"))


def test_redis_down_login_starts_and_codes_answer_503_on_every_instance(
    redis_outage: Record,
) -> None:
    record = redis_outage
    assert record.of("before", "login_start") == {303}
    for probe in ("login_start", "session_login_start"):
        assert record.of("during", probe) == {503}, probe
        answer = record.bodies[("during", probe, "Y")]
        assert int(answer.headers["retry-after"]) >= 1
        assert "<code>unavailable</code>" in answer.text
    assert record.of("during", "code") == {503}
    body = record.bodies[("during", "code", "X")].json()
    assert body["error"] == "temporarily_unavailable"
    assert record.of("during", "password") == {503}  # its rate limits are in Redis


def test_redis_down_access_tokens_refresh_and_revocation_checks_keep_working(
    redis_outage: Record,
) -> None:
    for phase in ("before", "during", "after"):
        assert redis_outage.of(phase, "whoami") == {200}, phase
    # Refresh families and revocations are in PostgreSQL: neither needs Redis.
    assert redis_outage.of("during", "refresh") == {200}
    assert redis_outage.of("during", "active") == {200}


def test_redis_down_instances_stay_alive_and_report_redis_not_ready(redis_outage: Record) -> None:
    _assert_health(redis_outage, "redis")


def test_redis_back_every_instance_recovers_without_restart(redis_outage: Record) -> None:
    record = redis_outage
    assert sorted(record.recovered_after) == sorted(NAMES)
    assert max(record.recovered_after.values()) < 5.0
    assert record.of("after", "password") == {200}
    assert record.of("after", "code") == {200}
    assert record.of("after", "provider_login") == {200}
    # A code issued before a restart without persistence is gone: refused, not honoured.
    old = record.bodies[("after", "old_code", "X")]
    assert (old.status_code, old.json()["error"]) == (400, "invalid_grant")
    refused = sum(
        len(record.statuses[("during", p)]) for p in ("login_start", "session_login_start")
    )
    print(
        f"redis outage: down {record.down_for} s, {refused} login starts answered 503, "
        f"recovered after {record.recovered_after} s"
    )


# --- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_outage(
    fake_issuer: ServedFakeIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Record:
    work = tmp_path_factory.mktemp("multi-postgres-outage")
    server = PostgresServer()
    record = Record()
    password = secrets.token_urlsafe(16)  # in the URL; trust authentication ignores it
    url = server.url.replace("postgres@", f"postgres:{password}@")
    try:
        server.init()
        server.start()
        with (
            open_cluster(fake_issuer, work, NAMES, store_url=url) as cluster,
            Browser(cluster, NAMES) as browser,
        ):
            _postgres_outage(cluster, browser, server, record)
        record.secrets = {url, password, cluster.config["kek"]}
        record.logs = cluster.logs()
    finally:
        server.remove()
    return record


def _postgres_outage(
    cluster: Cluster, browser: Browser, server: PostgresServer, record: Record
) -> None:
    tokens = password_grant(browser, on="X").json()
    for name in NAMES:
        record.note("before", "whoami", name, browser.whoami(tokens["access_token"], on=name))
    _probe_health(record, "before", browser)
    server.stop()
    down_at = time.monotonic()
    while time.monotonic() < down_at + OUTAGE:
        for name in NAMES:
            record.note("during", "whoami", name, browser.whoami(tokens["access_token"], on=name))
            record.note("during", "jwks", name, browser.get("/oauth/jwks", on=name))
            active = browser.get("/active", on=name, headers=bearer(tokens["access_token"]))
            record.note("during", "active", name, active)
            record.note(
                "during", "refresh", name, refresh_grant(browser, tokens["refresh_token"], on=name)
            )
        _probe_health(record, "during", browser)
        time.sleep(0.1)
    # More password attempts than the account may fail, each refused by the outage. The
    # built-in Swagger UI client needs no lookup in PostgreSQL: the grant reaches the account.
    for attempt in range(ISSUER_OPTIONS["password_failures_per_account"] + 1):
        name = NAMES[attempt % 2]
        answer = password_grant(browser, on=name, client_id=SWAGGER)
        record.note("during", "password", name, answer)

    server.start()
    up_at = time.monotonic()
    record.down_for = round(up_at - down_at, 3)
    current = {"token": tokens["refresh_token"]}

    def refresh(name: str) -> httpx.Response:
        answer = refresh_grant(browser, current["token"], on=name)
        if answer.status_code == 200:
            current["token"] = answer.json()["refresh_token"]
        return answer

    _recover(record, up_at, refresh, 200)
    _ready_again(record, browser)
    _probe_health(record, "after", browser)
    for name in NAMES:
        record.note("after", "whoami", name, browser.whoami(tokens["access_token"], on=name))
        record.note("after", "password", name, password_grant(browser, on=name, client_id=SWAGGER))


def test_postgres_down_tokens_and_jwks_keep_working_revocation_checks_fail_closed(
    postgres_outage: Record,
) -> None:
    for phase in ("before", "during", "after"):
        assert postgres_outage.of(phase, "whoami") == {200}, phase
    assert postgres_outage.of("during", "jwks") == {200}
    # Whether a token was revoked cannot be known: active_principal fails closed.
    assert postgres_outage.of("during", "active") == {503}


def test_postgres_down_the_token_endpoint_answers_503(postgres_outage: Record) -> None:
    record = postgres_outage
    assert record.of("during", "refresh") == {503}
    body = record.bodies[("during", "refresh", "Y")]
    assert body.json()["error"] == "temporarily_unavailable"
    assert int(body.headers["retry-after"]) >= 1
    limit = ISSUER_OPTIONS["password_failures_per_account"]
    assert record.statuses[("during", "password")][:limit] == [503] * limit


def test_postgres_down_instances_stay_alive_and_report_the_store_not_ready(
    postgres_outage: Record,
) -> None:
    _assert_health(postgres_outage, "store")


def test_postgres_back_every_instance_recovers_without_restart(postgres_outage: Record) -> None:
    record = postgres_outage
    assert sorted(record.recovered_after) == sorted(NAMES)
    assert max(record.recovered_after.values()) < 5.0
    refused = len(record.statuses[("during", "refresh")])
    print(
        f"postgres outage: down {record.down_for} s, {refused} refreshes answered 503, "
        f"recovered after {record.recovered_after} s"
    )


def test_postgres_down_password_attempts_do_not_lock_the_account(postgres_outage: Record) -> None:
    # More attempts than the failure limit, none of which could check a password: each is
    # 503, and the right password works once the database is back.
    assert postgres_outage.of("during", "password") == {503}
    assert postgres_outage.of("after", "password") == {200}


@pytest.mark.parametrize("outage", ["redis_outage", "postgres_outage"])
def test_no_store_password_or_token_in_the_answers_or_the_logs(
    outage: str, request: pytest.FixtureRequest
) -> None:
    record: Record = request.getfixturevalue(outage)
    assert "unavailable" in record.logs  # the outage was logged, by its reason
    refusals = list(record.refused.values())
    assert {answer.status_code for answer in refusals} >= {503}
    bodies = "".join(f"{answer.headers}{answer.text}" for answer in refusals)
    assert_no_secret(record.logs + bodies, record.secrets | SECRETS)
