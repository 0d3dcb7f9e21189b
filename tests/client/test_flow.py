"""LoginClient.start / finish against a mock OP and the real store (SECURITY-CASES §6).

The mock OP (test_oidc_login.MockOP) counts its requests, so every refusal that must come
before the token endpoint is checked to have made no token request.
"""

# ruff: noqa: F811 - the store fixtures are imported, then requested by name

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from authbridge.client._flow import LoginClient, LoginOutcome
from authbridge.client._transactions import LOGIN_KIND, transaction_key
from authbridge.errors import LoginError, ProviderUnavailable
from authbridge.store import SQLStore
from store_support import (  # noqa: F401 - fixtures
    postgres_database,
    postgres_store_url,
    sqlite_store,
    sqlite_store_url,
    store,
    store_url,
)

from .test_id_token import Keys, id_claims, sign
from .test_oidc_login import CALLBACK, MockOP

BROWSER = "browser-cookie-" + secrets.token_urlsafe(32)


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def op(keys: Keys) -> MockOP:
    return MockOP(keys)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(op: MockOP, sqlite_store: SQLStore, clock: Clock) -> LoginClient:
    return LoginClient(
        {"op": op.login(clock=clock)}, sqlite_store.one_time, clock=clock, callback_url=CALLBACK
    )


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def refused(
    client: LoginClient, params: list[tuple[str, str]], browser: str | None = BROWSER
) -> LoginError:
    with pytest.raises(LoginError) as caught:
        await client.finish(params, browser=browser)
    assert caught.value.code == "login_failed"
    return caught.value


# -- the happy path ---------------------------------------------------------------------------


async def test_a_login_yields_the_identity_and_the_transaction(
    op: MockOP, client: LoginClient
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session", return_to="/after")
    outcome = await client.finish(op.authorize(url, sub="alice"), browser=BROWSER)
    assert isinstance(outcome, LoginOutcome)
    assert outcome.identity.subject == "alice"
    assert outcome.identity.provider == "op"
    assert outcome.transaction.provider == "op"
    assert outcome.transaction.purpose == "session"
    assert outcome.transaction.return_to == "/after"
    assert op.requests["/token"] == 1


async def test_start_sends_pkce_s256_a_nonce_and_a_256_bit_state(
    op: MockOP, client: LoginClient
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    query = query_of(url)
    assert len(query["state"][0]) == 43
    assert len(query["nonce"][0]) == 43
    assert query["code_challenge_method"] == ["S256"]  # never plain
    assert len(query["code_challenge"][0]) == 43
    assert query["redirect_uri"] == [CALLBACK]
    assert query["scope"] == ["openid email profile"]
    await client.finish(op.authorize(url), browser=BROWSER)
    verifier = op.token_forms[0]["code_verifier"]
    assert len(verifier) >= 43
    digest = hashlib.sha256(verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"][0]
    assert op.token_forms[0]["redirect_uri"] == CALLBACK


async def test_every_login_gets_fresh_values(client: LoginClient) -> None:
    urls = [await client.start("op", browser=BROWSER, purpose="session") for _ in range(20)]
    for name in ("state", "nonce", "code_challenge"):
        assert len({query_of(url)[name][0] for url in urls}) == 20


async def test_purposes_keep_their_payload(op: MockOP, client: LoginClient) -> None:
    request = {"client_id": "spa", "redirect_uri": "https://spa/cb", "scopes": ["a", "b"]}
    url = await client.start("op", browser=BROWSER, purpose="authorize", authorize=request)
    outcome = await client.finish(op.authorize(url), browser=BROWSER)
    assert outcome.transaction.authorize == request
    url = await client.start("op", browser=BROWSER, purpose="link", link_user="account-7")
    outcome = await client.finish(op.authorize(url), browser=BROWSER)
    assert outcome.transaction.link_user == "account-7"


async def test_prompt_and_login_hint_are_sent(client: LoginClient) -> None:
    url = await client.start(
        "op", browser=BROWSER, purpose="session", prompt="login", login_hint="a@b"
    )
    assert query_of(url)["prompt"] == ["login"]
    assert query_of(url)["login_hint"] == ["a@b"]


# -- start refusals ---------------------------------------------------------------------------


async def test_start_refuses_unknown_providers_and_bad_arguments(
    client: LoginClient, sqlite_store: SQLStore
) -> None:
    with pytest.raises(LoginError, match="unknown_provider"):
        await client.start("nope", browser=BROWSER, purpose="session")
    with pytest.raises(ValueError, match="purpose"):
        await client.start("op", browser=BROWSER, purpose="other")
    with pytest.raises(ValueError, match="browser"):
        await client.start("op", browser="", purpose="session")
    for path in ("https://evil.test/", "//evil.test", "/\\evil.test", "javascript:alert(1)",
                 "/a\r\nLocation: x", "\uff0f\uff0fevil", "relative"):  # fmt: skip
        with pytest.raises(LoginError, match="unsafe_return_path"):
            await client.start("op", browser=BROWSER, purpose="session", return_to=path)
    assert await sqlite_store.one_time.purge(time.time() + 10_000) == 0  # nothing was stored


async def test_start_stores_nothing_when_the_provider_is_down(
    op: MockOP, sqlite_store: SQLStore, clock: Clock
) -> None:
    op.document = lambda: {"issuer": "https://elsewhere.test"}  # type: ignore[method-assign]
    client = LoginClient(
        {"op": op.login()}, sqlite_store.one_time, clock=clock, callback_url=CALLBACK
    )
    with pytest.raises(ProviderUnavailable):
        await client.start("op", browser=BROWSER, purpose="session")
    assert await sqlite_store.one_time.purge(time.time() + 10_000) == 0


def test_a_login_registered_under_another_name_is_refused(
    op: MockOP, sqlite_store: SQLStore
) -> None:
    with pytest.raises(ValueError, match="registered as"):
        LoginClient(
            {"other": op.login()}, sqlite_store.one_time, clock=time.time, callback_url=CALLBACK
        )


# -- state ------------------------------------------------------------------------------------


async def test_a_missing_state_is_refused(op: MockOP, client: LoginClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = [(k, v) for k, v in op.authorize(url) if k != "state"]
    assert (await refused(client, params)).reason == "state_missing"
    assert (await refused(client, [*params, ("state", "")])).reason == "state_missing"
    assert op.requests["/token"] == 0


async def test_a_mismatched_state_is_refused(op: MockOP, client: LoginClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = [(k, "x" + v if k == "state" else v) for k, v in op.authorize(url)]
    assert (await refused(client, params)).reason == "state_unknown"
    assert op.requests["/token"] == 0


async def test_a_replayed_callback_is_refused(op: MockOP, client: LoginClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = op.authorize(url)
    await client.finish(params, browser=BROWSER)
    assert (await refused(client, params)).reason == "state_unknown"
    assert op.requests["/token"] == 1


async def test_an_expired_transaction_is_refused(
    op: MockOP, client: LoginClient, clock: Clock
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = op.authorize(url)
    clock.offset += 601
    assert (await refused(client, params)).reason == "state_unknown"
    assert op.requests["/token"] == 0


@pytest.mark.parametrize("name", ["state", "code", "iss", "error"])
async def test_a_duplicated_parameter_is_refused(
    op: MockOP, client: LoginClient, name: str
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = op.authorize(url)
    value = dict(params).get(name, "access_denied")
    doubled = [*params, (name, value)] if name != "error" else [*params, (name, value)] * 2
    assert (await refused(client, doubled)).reason == "duplicate_parameter"
    assert op.requests["/token"] == 0
    # Refused before the transaction was taken: the genuine callback still works.
    assert (await client.finish(params, browser=BROWSER)).identity.subject == "user-1"


async def test_other_repeated_parameters_are_ignored(op: MockOP, client: LoginClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = [*op.authorize(url), ("session_state", "a"), ("session_state", "b")]
    assert (await client.finish(params, browser=BROWSER)).identity.subject == "user-1"


async def test_a_state_of_another_browser_is_refused_and_consumed(
    op: MockOP, client: LoginClient
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = op.authorize(url)
    # The attacker's login lands in the victim's browser (login CSRF), or the reverse.
    assert (await refused(client, params, browser="another-browser")).reason == "browser_mismatch"
    assert (await refused(client, params, browser=BROWSER)).reason == "state_unknown"
    assert op.requests["/token"] == 0


async def test_a_callback_without_the_browser_cookie_is_refused(
    op: MockOP, client: LoginClient
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    assert (await refused(client, op.authorize(url), browser=None)).reason == "browser_mismatch"
    assert op.requests["/token"] == 0


# -- provider errors --------------------------------------------------------------------------


async def test_a_provider_error_is_refused_and_consumes_the_transaction(
    op: MockOP, client: LoginClient
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    state = query_of(url)["state"][0]
    params = [("error", "access_denied"), ("error_description", "<b>no</b>"), ("state", state)]
    error = await refused(client, [*params, ("iss", op.issuer)])
    assert error.reason == "provider_error"
    assert error.detail == {"error": "access_denied"}
    assert error.provider == "op"
    assert (await refused(client, op.authorize(url))).reason == "state_unknown"
    assert op.requests["/token"] == 0


async def test_a_provider_error_code_is_bounded_and_stripped(
    op: MockOP, client: LoginClient
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    state = query_of(url)["state"][0]
    params = [("error", '<script>"x\\\n' + "y" * 500), ("state", state), ("iss", op.issuer)]
    error = await refused(client, params)
    shown = error.detail["error"]
    assert len(shown) <= 64
    assert "\n" not in shown
    assert '"' not in shown
    assert "\\" not in shown


async def test_a_code_missing_is_refused(op: MockOP, client: LoginClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = [(k, v) for k, v in op.authorize(url) if k != "code"]
    assert (await refused(client, params)).reason == "code_missing"
    assert op.requests["/token"] == 0


async def test_a_refused_code_is_a_token_error(op: MockOP, client: LoginClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = [(k, "made-up" if k == "code" else v) for k, v in op.authorize(url)]
    error = await refused(client, params)
    assert error.reason == "token_error"
    assert error.detail == {"error": "invalid_grant"}


# -- code injection and mix-up ----------------------------------------------------------------


async def test_an_injected_code_fails_pkce(op: MockOP, client: LoginClient) -> None:
    # The attacker logs in as themselves and stops before the callback; their code is then
    # injected into the victim's callback (with the victim's own state).
    attacker = await client.start("op", browser="attacker-browser", purpose="session")
    attacker_code = dict(op.authorize(attacker, sub="attacker"))["code"]
    victim = await client.start("op", browser=BROWSER, purpose="session")
    params = [(k, attacker_code if k == "code" else v) for k, v in op.authorize(victim)]
    error = await refused(client, params)
    assert error.reason == "token_error"  # the victim's verifier does not fit the challenge
    assert error.detail == {"error": "invalid_grant"}


async def test_an_iss_of_another_provider_is_refused(op: MockOP, client: LoginClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = [(k, "https://evil-op.test" if k == "iss" else v) for k, v in op.authorize(url)]
    assert (await refused(client, params)).reason == "iss_mismatch"
    assert op.requests["/token"] == 0


async def test_a_missing_iss_is_refused_when_advertised(op: MockOP, client: LoginClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = [(k, v) for k, v in op.authorize(url) if k != "iss"]
    assert (await refused(client, params)).reason == "iss_missing"
    assert op.requests["/token"] == 0


async def test_a_missing_iss_is_accepted_when_not_advertised(
    op: MockOP, client: LoginClient
) -> None:
    op.iss_parameter_supported = False
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = [(k, v) for k, v in op.authorize(url) if k != "iss"]
    assert (await client.finish(params, browser=BROWSER)).identity.subject == "user-1"
    # Present, it is still compared.
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = [(k, "https://evil-op.test" if k == "iss" else v) for k, v in op.authorize(url)]
    assert (await refused(client, params)).reason == "iss_mismatch"


async def test_the_provider_comes_from_the_transaction(
    keys: Keys, sqlite_store: SQLStore, clock: Clock
) -> None:
    honest = MockOP(keys, issuer="https://honest-op.test")
    evil = MockOP(keys, issuer="https://evil-op.test")
    client = LoginClient(
        {"honest": honest.login(name="honest"), "evil": evil.login(name="evil")},
        sqlite_store.one_time,
        clock=clock,
        callback_url=CALLBACK,
    )
    await honest.login().endpoints()
    # The login starts at the honest provider; the callback names the evil one every way it can.
    url = await client.start("honest", browser=BROWSER, purpose="session")
    params = honest.authorize(url)
    outcome = await client.finish([*params, ("provider", "evil"), ("idp", "evil")], browser=BROWSER)
    assert outcome.identity.provider == "honest"
    assert outcome.identity.issuer == "https://honest-op.test"
    assert honest.requests["/token"] == 1
    assert evil.requests["/token"] == 0
    # Mix-up: a code and iss from the evil provider for a transaction started at the honest one.
    url = await client.start("honest", browser=BROWSER, purpose="session")
    state = query_of(url)["state"][0]
    evil_params = evil.authorize(url.replace("https://honest-op.test", "https://evil-op.test"))
    mixed = [(k, state if k == "state" else v) for k, v in evil_params]
    assert (await refused(client, mixed)).reason == "iss_mismatch"
    assert evil.requests["/token"] == 0
    assert honest.requests["/token"] == 1


async def test_a_transaction_of_a_provider_no_longer_configured_is_refused(
    op: MockOP, sqlite_store: SQLStore, clock: Clock
) -> None:
    before = LoginClient(
        {"op": op.login()}, sqlite_store.one_time, clock=clock, callback_url=CALLBACK
    )
    url = await before.start("op", browser=BROWSER, purpose="session")
    after = LoginClient({}, sqlite_store.one_time, clock=clock, callback_url=CALLBACK)
    assert (await refused(after, op.authorize(url))).reason == "unknown_provider"
    assert op.requests["/token"] == 0


# -- nonce ------------------------------------------------------------------------------------


async def test_an_id_token_with_another_nonce_is_refused(op: MockOP, client: LoginClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = op.authorize(url, nonce="not-the-transactions")
    assert (await refused(client, params)).reason == "nonce_mismatch"


async def test_an_id_token_without_nonce_is_refused(op: MockOP, client: LoginClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = op.authorize(url, nonce=None)
    assert (await refused(client, params)).reason == "nonce_mismatch"


async def test_a_replayed_id_token_is_refused(op: MockOP, client: LoginClient) -> None:
    first = await client.start("op", browser=BROWSER, purpose="session")
    outcome = await client.finish(op.authorize(first), browser=BROWSER)
    # The token endpoint (or a man in the middle) answers the next login with the old token.
    op.token_override = {"access_token": "at-replayed", "id_token": outcome.identity.id_token}
    second = await client.start("op", browser=BROWSER, purpose="session")
    assert (await refused(client, op.authorize(second))).reason in (
        "nonce_mismatch",
        "at_hash_mismatch",
    )
    op.token_override = {"access_token": "at-replayed", "id_token": outcome.identity.id_token}
    # Even with the old access token (at_hash fits), the nonce does not.
    old_access = next(s for s in op.seen_secrets if s.startswith("at-"))
    op.token_override = {"access_token": old_access, "id_token": outcome.identity.id_token}
    third = await client.start("op", browser=BROWSER, purpose="session")
    assert (await refused(client, op.authorize(third))).reason == "nonce_mismatch"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "someone-else"}, "id_token_invalid:audience_mismatch"),
        ({"aud": ["app-client", "x"]}, "id_token_invalid:authorized_party_mismatch"),
        ({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}, "at_hash_mismatch"),
    ],
)
async def test_id_token_refusals_end_the_login(
    op: MockOP, client: LoginClient, claims: dict[str, Any], reason: str
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    assert (await refused(client, op.authorize(url, **claims))).reason == reason


async def test_an_alg_none_or_badly_signed_id_token_is_refused(
    keys: Keys, op: MockOP, client: LoginClient
) -> None:
    for token, reason in (
        (sign({"alg": "none"}, id_claims(), b"x" * 32), "id_token_invalid:algorithm_not_allowed"),
        (keys.id_token(id_claims(), key=keys.other_rsa), "id_token_invalid:bad_signature"),
        (
            keys.id_token(id_claims(), alg="HS256", key=b"k" * 32),
            "id_token_invalid:algorithm_not_allowed",
        ),
    ):
        op.token_override = {"access_token": "at-x", "id_token": token}
        url = await client.start("op", browser=BROWSER, purpose="session")
        assert (await refused(client, op.authorize(url))).reason == reason


# -- secrecy ----------------------------------------------------------------------------------


async def test_no_code_verifier_state_nonce_token_or_cookie_is_logged(
    op: MockOP, client: LoginClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets_seen: list[str] = [BROWSER]
    # A login that succeeds, and every kind of refusal after the transaction is taken.
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = op.authorize(url)
    secrets_seen += [v for k, v in params if k in ("code", "state")]
    secrets_seen += [query_of(url)["nonce"][0], query_of(url)["code_challenge"][0]]
    await client.finish(params, browser=BROWSER)
    with pytest.raises(LoginError):
        await client.finish(params, browser=BROWSER)
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = op.authorize(url, nonce="wrong-nonce-value")
    secrets_seen += [v for k, v in params if k in ("code", "state")]
    with pytest.raises(LoginError):
        await client.finish(params, browser=BROWSER)
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = op.authorize(url)
    secrets_seen += [v for k, v in params if k in ("code", "state")]
    with pytest.raises(LoginError):
        await client.finish(params, browser="other-browser-cookie-value")
    secrets_seen += op.seen_secrets
    assert len(op.seen_secrets) >= 4  # verifiers and tokens
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    assert "Login refused" in logged  # the refusals were logged, by reason only
    for secret in secrets_seen:
        assert secret
        assert secret not in logged


async def test_refusal_messages_hold_no_secret(op: MockOP, client: LoginClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = op.authorize(url, nonce="wrong")
    error = await refused(client, params)
    text = f"{error} {error.detail!r}"
    for _, value in params:
        assert value not in text


async def test_the_transaction_is_in_the_store_under_the_state_hash(
    client: LoginClient, sqlite_store: SQLStore
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    state = query_of(url)["state"][0]
    raw = await sqlite_store.one_time.take(LOGIN_KIND, transaction_key(state), now=time.time())
    assert raw is not None
    for secret in (state, BROWSER):
        assert secret.encode() not in raw


# -- the order of the checks ------------------------------------------------------------------


async def test_the_checks_run_in_the_contracts_order(op: MockOP, client: LoginClient) -> None:
    """With two defects at once, the earlier check of the contract's order decides."""

    async def callback(**changes: str | None) -> list[tuple[str, str]]:
        url = await client.start("op", browser=BROWSER, purpose="session")
        values: dict[str, str | None] = dict(op.authorize(url))
        values.update(changes)
        return [(k, v) for k, v in values.items() if v is not None]

    doubled = [*await callback(state=None), ("code", "a"), ("code", "b")]
    assert (await refused(client, doubled)).reason == "duplicate_parameter"
    assert (await refused(client, await callback(state=None), browser="x")).reason == (
        "state_missing"
    )
    assert (await refused(client, await callback(state="made-up"), browser="x")).reason == (
        "state_unknown"
    )
    errored = await callback(error="access_denied", iss="https://evil-op.test")
    assert (await refused(client, errored, browser="x")).reason == "browser_mismatch"
    assert (
        await refused(client, await callback(error="access_denied", iss="https://evil-op.test"))
    ).reason == "provider_error"
    assert (
        await refused(client, await callback(iss="https://evil-op.test", code=None))
    ).reason == "iss_mismatch"
    assert (await refused(client, await callback(iss=None, code=None))).reason == "iss_missing"
    assert (await refused(client, await callback(code=None))).reason == "code_missing"
    assert op.requests["/token"] == 0
