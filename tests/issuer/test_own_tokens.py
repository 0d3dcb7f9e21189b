"""The app's own access tokens through its own resource server: no HTTP, strict RFC 9068.

The issuer is configured as a provider of a real `ResourceServer` on a real
store (SQLite file, PostgreSQL). Refusals cover SECURITY-CASES §1-§3 and §7 for
the app's own tokens: another ``typ`` (ID tokens), another audience, expiry,
``alg: none`` and algorithm confusion, foreign keys, the app's refresh tokens
and codes as bearer tokens (refused without touching the store), revoked keys
and revoked tokens.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import store_support
from authbridge import ResourceServer
from authbridge.errors import InvalidToken, ProviderUnavailable, StoreUnavailable
from authbridge.issuer import AppIssuer, IssuerRuntime
from authbridge.issuer._kek import new_kek
from authbridge.issuer._secrets import CODE_PREFIX, REFRESH_TOKEN_PREFIX, new_secret
from authbridge.issuer._source import UNKNOWN_KID_COOLDOWN, OwnTokenSource

postgres_database = store_support.postgres_database
postgres_store_url = store_support.postgres_store_url
sqlite_store_url = store_support.sqlite_store_url
store_url = store_support.store_url

ISSUER = "https://api.example.com"
OTHER_API = "https://reports.example.com"
KEK = new_kek()


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Counting:
    """Wraps a store (or one aggregate of it): records every attribute used; can fail calls."""

    def __init__(self, inner: Any, calls: list[str], *, prefix: str = "") -> None:
        self._inner = inner
        self._calls = calls
        self._prefix = prefix
        self.down = False

    def __getattr__(self, name: str) -> Any:
        self._calls.append(self._prefix + name)
        value = getattr(self._inner, name)
        if not callable(value):
            wrapped = Counting(value, self._calls, prefix=f"{self._prefix}{name}.")
            wrapped.down = self.down
            return wrapped
        if not asyncio.iscoroutinefunction(value):
            return value

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailable("connection_refused")
            return await value(*args, **kwargs)

        return call


class App:
    """One app instance: its resource server with the issuer as one of its providers."""

    def __init__(self, url: str, clock: Clock) -> None:
        self.config = AppIssuer(
            ISSUER, store=url, key_encryption_key=KEK, resources=[OTHER_API], name="app"
        )
        self.server = ResourceServer([self.config], clock=clock)
        self.source: OwnTokenSource = self.server.bound("app")
        self.runtime: IssuerRuntime = self.source.runtime
        self.clock = clock
        self._store = self.runtime.store

    async def start(self) -> App:
        await self.runtime.start()
        await self.server.start()
        return self

    async def aclose(self) -> None:
        self.runtime.store = self._store  # not a wrapper of watch_store()
        await self.server.aclose()
        await self.runtime.aclose()

    def mint(self, **options: Any) -> str:
        options.setdefault("subject", "user-alice")
        options.setdefault("client_id", "robot")
        options.setdefault("scopes", ["items:read"])
        options.setdefault("audiences", (ISSUER,))
        token, _ = self.runtime.mint_access_token(**options)
        return token

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "user-alice",
            "aud": ISSUER,
            "exp": now + 600,
            "iat": now,
            "jti": "jti-1",
            "client_id": "robot",
            "scope": "items:read",
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def forge(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """A token with any header, signed by the app's current key."""
        signing_input = f"{_b64json(header)}.{_b64json(claims)}".encode()
        signer = self.runtime.keys._signer
        assert signer is not None
        return f"{signing_input.decode()}.{_b64(signer.sign(signing_input))}"

    @property
    def kid(self) -> str:
        kid = self.runtime.keys.signer_kid
        assert kid is not None
        return kid


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64json(value: Any) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def apps(store_url: str, clock: Clock) -> AsyncIterator[list[App]]:
    """Instances of the app on one store (start them with `app_on`)."""
    made: list[App] = []
    yield made
    for app in made:
        await app.aclose()


async def app_on(apps: list[App], url: str, clock: Clock) -> App:
    app = App(url, clock)
    apps.append(app)
    return await app.start()


@pytest.fixture
async def app(apps: list[App], store_url: str, clock: Clock) -> App:
    return await app_on(apps, store_url, clock)


async def refusal(app: App, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        await app.server.verify(token)
    assert info.value.provider in (None, "app")
    return info.value.reason


def watch_store(app: App) -> tuple[list[str], list[Counting]]:
    """Count every use of the store by the source and the keys from now on."""
    calls: list[str] = []
    store = Counting(app.runtime.store, calls)
    keys_store = Counting(app.runtime.keys._store, calls, prefix="keys.")
    app.runtime.store = store  # type: ignore[assignment]
    app.runtime.keys._store = keys_store  # type: ignore[assignment]
    return calls, [store, keys_store]


# --- accepted ---------------------------------------------------------------------------------


async def test_own_access_token_is_accepted_with_the_resource_servers_own_principal(
    app: App,
) -> None:
    token = app.mint(scopes=["items:read", "items:write"])
    principal = await app.server.verify(token)
    assert principal.provider == "app"
    assert principal.issuer == ISSUER
    assert principal.subject == "user-alice"
    assert principal.client_id == "robot"
    assert principal.scopes == frozenset({"items:read", "items:write"})
    assert principal.token_id
    assert principal.expires_at is not None
    assert principal.expires_at.timestamp() == int(app.clock()) + 600


async def test_a_token_for_another_resource_is_refused_here(app: App) -> None:
    # RFC 8707: a token asked for another API (resource=...) is that API's, not this one's:
    # accepting it would let the other service replay it here.
    with pytest.raises(InvalidToken) as refused:
        await app.server.verify(app.mint(audiences=(OTHER_API,)))
    assert refused.value.reason == "audience_mismatch"
    assert await app.server.verify(
        app.forge({"alg": "ES256", "kid": app.kid, "typ": "application/at+jwt"}, app.claims())
    )


async def test_no_store_and_no_http_on_the_way(app: App) -> None:
    token = app.mint()
    calls, _ = watch_store(app)
    await app.source.warm_up()
    await app.server.verify(token)
    assert calls == []


# --- refused ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typ", ["JWT", "jwt", "application/jwt", "id_token+jwt", "logout+jwt", None]
)
async def test_any_typ_but_at_jwt_is_refused(app: App, typ: str | None) -> None:
    header = {"alg": "ES256", "kid": app.kid}
    if typ is not None:
        header["typ"] = typ
    assert await refusal(app, app.forge(header, app.claims())) == "wrong_token_type"


async def test_an_id_token_signed_by_the_app_is_not_an_access_token(app: App) -> None:
    # OpenID Connect Core §2: typ JWT, aud the client, a nonce; no client_id, no scope.
    id_token = app.runtime.keys.sign(
        app.claims(aud="robot", client_id=None, scope=None, nonce="n-0S6_WzA2Mj"), typ="JWT"
    )
    assert await refusal(app, id_token) == "wrong_token_type"
    # Even relabelled at+jwt, its audience is a client, not one of the app's resources.
    relabelled = app.runtime.keys.sign(app.claims(aud="robot", nonce="n"), typ="at+jwt")
    assert await refusal(app, relabelled) == "audience_mismatch"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": "https://elsewhere.example.com"}, "audience_mismatch"),
        ({"aud": ["https://elsewhere.example.com", "robot"]}, "audience_mismatch"),
        ({"aud": None}, "missing_claim"),
        ({"jti": None}, "missing_claim"),
        ({"client_id": None}, "missing_claim"),
        ({"sub": None}, "missing_claim"),
        ({"iat": None}, "missing_claim"),
        ({"exp": None}, "missing_claim"),
        ({"typ": "Refresh"}, "wrong_token_type"),
        ({"nbf": 1_900_000_000 + 3600}, "not_yet_valid"),
    ],
)
async def test_claims_are_checked_strictly(app: App, changes: dict[str, Any], reason: str) -> None:
    token = app.runtime.keys.sign(app.claims(**changes), typ="at+jwt")
    assert await refusal(app, token) == reason


async def test_an_expired_token_is_refused(app: App, clock: Clock) -> None:
    token = app.mint()
    clock.advance(600 + 30)  # lifetime plus the leeway
    assert await refusal(app, token) == "expired"


async def test_alg_none_and_hmac_with_the_public_key_are_refused(app: App) -> None:
    claims = app.claims()
    unsigned = f"{_b64json({'alg': 'none', 'kid': app.kid, 'typ': 'at+jwt'})}.{_b64json(claims)}."
    assert await refusal(app, unsigned) in ("malformed_token", "algorithm_not_allowed")
    unsigned_sig = unsigned + "AA"
    assert await refusal(app, unsigned_sig) == "algorithm_not_allowed"
    # Algorithm confusion: HS256 keyed with the published public key.
    (jwk,) = app.runtime.keys.jwks()["keys"]
    secret = json.dumps(jwk).encode()
    signing_input = (
        f"{_b64json({'alg': 'HS256', 'kid': app.kid, 'typ': 'at+jwt'})}.{_b64json(claims)}"
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert await refusal(app, f"{signing_input}.{_b64(mac)}") == "algorithm_not_allowed"
    # Another algorithm than the key's own.
    other_alg = app.forge({"alg": "RS256", "kid": app.kid, "typ": "at+jwt"}, claims)
    assert await refusal(app, other_alg) == "unknown_key"


def _sign_es256(
    private: ec.EllipticCurvePrivateKey, header: dict[str, Any], claims: dict[str, Any]
) -> str:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415

    signing_input = f"{_b64json(header)}.{_b64json(claims)}"
    r, s = decode_dss_signature(private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


async def test_a_key_not_in_the_store_is_refused_after_one_reload(app: App) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    claims = app.claims()
    # Its own kid: unknown, even after reloading the keys.
    calls, _ = watch_store(app)
    forged = _sign_es256(stranger, {"alg": "ES256", "kid": "stranger-kid", "typ": "at+jwt"}, claims)
    assert await refusal(app, forged) == "unknown_key"
    assert calls == ["keys.list"]
    # Our kid: the signature does not verify.
    spoofed = _sign_es256(stranger, {"alg": "ES256", "kid": app.kid, "typ": "at+jwt"}, claims)
    assert await refusal(app, spoofed) == "bad_signature"
    # No kid at all: never one of ours.
    kidless = _sign_es256(stranger, {"alg": "ES256", "typ": "at+jwt"}, claims)
    assert await refusal(app, kidless) == "unknown_key"


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        (REFRESH_TOKEN_PREFIX, "refresh_token_not_a_bearer_token"),
        (CODE_PREFIX, "code_not_a_bearer_token"),
    ],
)
async def test_refresh_tokens_and_codes_are_not_bearer_tokens_and_touch_no_store(
    app: App, prefix: str, reason: str
) -> None:
    calls, _ = watch_store(app)
    for token in (new_secret(prefix), prefix + "made-up", prefix + "x" * 49):
        assert await refusal(app, token) == reason
        with pytest.raises(InvalidToken) as info:
            await app.server.verify_active(token)
        assert info.value.reason == reason
    with pytest.raises(InvalidToken, match=reason):
        await app.source.verify_opaque(new_secret(prefix))
    assert calls == []


# --- across rotations and instances ----------------------------------------------------------


async def test_a_token_signed_before_a_rotation_validates_until_its_expiry(
    app: App, clock: Clock
) -> None:
    before = app.mint()
    marker = app.source.cache_marker
    assert marker is app.runtime.keys.keyset
    await app.runtime.keys.rotate(immediately=True)
    assert app.source.cache_marker is not marker  # cached results are checked again
    after = app.mint()
    assert before.split(".")[0] != after.split(".")[0]
    clock.advance(590)
    await app.runtime.keys.maybe_refresh()
    assert (await app.server.verify(before)).subject == "user-alice"
    assert (await app.server.verify(after)).subject == "user-alice"
    clock.advance(40)
    assert await refusal(app, before) == "expired"


async def test_a_revoked_key_is_refused_at_once_even_for_cached_tokens(app: App) -> None:
    token = app.mint()
    await app.server.verify(token)  # cached now
    await app.runtime.keys.rotate(immediately=True, revoke_current=True)
    assert await refusal(app, token) == "key_revoked"
    await app.server.verify(app.mint())


async def test_tokens_of_another_instance_after_its_rotation_reload_once(
    apps: list[App], store_url: str, clock: Clock
) -> None:
    one = await app_on(apps, store_url, clock)
    two = await app_on(apps, store_url, clock)
    assert one.kid == two.kid
    await two.runtime.keys.rotate(immediately=True)
    theirs = [two.mint(subject=f"user-{i}") for i in range(20)]
    calls, _ = watch_store(one)
    principals = await asyncio.gather(*(one.server.verify(t) for t in theirs))
    assert [p.subject for p in principals] == [f"user-{i}" for i in range(20)]
    assert calls.count("keys.list") == 1  # shared by all twenty
    # And the other way round.
    assert (await two.server.verify(one.mint())).subject == "user-alice"


async def test_unknown_kids_reload_at_most_once_per_cooldown(app: App, clock: Clock) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    claims = app.claims()
    made_up = [
        _sign_es256(stranger, {"alg": "ES256", "kid": f"kid-{i}", "typ": "at+jwt"}, claims)
        for i in range(30)
    ]
    calls, _ = watch_store(app)
    results = await asyncio.gather(*(app.server.verify(t) for t in made_up), return_exceptions=True)
    assert {r.reason for r in results if isinstance(r, InvalidToken)} == {"unknown_key"}
    assert calls.count("keys.list") == 1
    clock.advance(UNKNOWN_KID_COOLDOWN - 0.1)
    await asyncio.gather(*(app.server.verify(t) for t in made_up), return_exceptions=True)
    assert calls.count("keys.list") == 1
    clock.advance(0.1)
    await asyncio.gather(*(app.server.verify(t) for t in made_up), return_exceptions=True)
    assert calls.count("keys.list") == 2


async def test_a_new_key_right_after_an_unknown_kid_waits_for_the_next_reload(
    apps: list[App], store_url: str, clock: Clock
) -> None:
    one = await app_on(apps, store_url, clock)
    two = await app_on(apps, store_url, clock)
    stranger = ec.generate_private_key(ec.SECP256R1())
    made_up = _sign_es256(stranger, {"alg": "ES256", "kid": "kid-x", "typ": "at+jwt"}, one.claims())
    calls, _ = watch_store(one)
    with pytest.raises(InvalidToken):
        await one.server.verify(made_up)  # a reload is spent on it
    assert calls.count("keys.list") == 1
    await two.runtime.keys.rotate(immediately=True)  # signs with a new key at once
    theirs = two.mint(subject="user-new")
    assert (await one.server.verify(theirs)).subject == "user-new"  # not refused: reloaded
    assert calls.count("keys.list") == 2
    with pytest.raises(InvalidToken):
        await one.server.verify(made_up)  # looked for a moment ago: no reload
    assert calls.count("keys.list") == 2


async def test_an_unknown_kid_while_the_store_is_down_is_503_not_401(
    app: App, clock: Clock
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    token = _sign_es256(stranger, {"alg": "ES256", "kid": "new-kid", "typ": "at+jwt"}, app.claims())
    known = app.mint()
    calls, wrappers = watch_store(app)
    for wrapper in wrappers:
        wrapper.down = True
    for _ in range(2):  # the second one within the cooldown: no new attempt
        with pytest.raises(ProviderUnavailable) as info:
            await app.server.verify(token)
        assert info.value.reason.startswith("store_unavailable")
        assert info.value.retry_after is not None
    assert calls.count("keys.list") == 1
    # Tokens of known keys keep working while the store is down.
    assert (await app.server.verify(known)).subject == "user-alice"


# --- revoked access tokens (active_principal) -------------------------------------------------


async def test_check_active_refuses_a_revoked_token_and_fails_closed_without_store(
    app: App, clock: Clock
) -> None:
    live, revoked = app.mint(), app.mint()
    jti = (await app.server.verify(revoked)).token_id
    assert jti is not None
    await app.runtime.store.replay.first_use(f"at:{jti}", expires_at=clock() + 600, now=clock())
    assert (await app.server.verify_active(live)).subject == "user-alice"
    with pytest.raises(InvalidToken, match="revoked"):
        await app.server.verify_active(revoked)
    assert (await app.server.verify(revoked)).subject == "user-alice"  # verify is local only
    _, wrappers = watch_store(app)
    for wrapper in wrappers:
        wrapper.down = True
    clock.advance(1)
    with pytest.raises(ProviderUnavailable):
        await app.server.verify_active(live)
