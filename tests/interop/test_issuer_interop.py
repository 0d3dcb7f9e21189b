"""Tokens of the app's own authorization server, validated by others (S9).

Every party is a real process on 127.0.0.1:

* the issuer: an authbridge app with ``AppIssuer`` (uvicorn, SQLite store in a temporary
  directory, a key-encryption key, a registered machine client);
* a second, separate authbridge service with ``OIDCProvider(issuer=<the first app's URL>,
  token_type="strict")``: it knows nothing of the first but its URL and learns its keys by
  discovery + JWKS over HTTP;
* npm ``jose`` (panva, the library under the OpenID Certified oidc-provider) run by Node:
  ``createRemoteJWKSet`` + ``jwtVerify(token, jwks, {issuer, audience, typ: "at+jwt"})``.

Key rotation goes through the store while the apps run (`KeyManager.rotate(immediately=True)`,
what ``authbridge keys rotate --now`` does): the issuer picks the new key up on its next reload
(its JWKS ``max-age`` is 4 s here, so it reloads every second), signs with it, and both
verifiers fetch the JWKS again on the unknown ``kid`` while tokens of the old keys keep working
until they expire. The rotation walks through every signing algorithm: ES256 (the default),
RS256, EdDSA.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .issuer_support import (
    CLIENT_ID,
    AppProcess,
    JoseVerifier,
    access_token,
    add_machine_client,
    client_credentials,
    ensure_jose_installed,
    issuer_config,
    jwt_claims,
    jwt_header,
    new_kek,
    with_claims,
    with_flipped_signature,
)

pytestmark = pytest.mark.interop

JWKS_MAX_AGE = 4.0  # the issuer reloads its keys every max-age / 4 = 1 s
PEER_COOLDOWN = 1.0  # the verifiers' JWKS cooldown (30 s by default)
PICKUP_TIMEOUT = 20.0


def _require_node() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        message = f"interop tests need Node.js ({', '.join(missing)} not on PATH)"
        if os.environ.get("AUTHBRIDGE_REQUIRE_INTEROP") == "1":
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Parties:
    issuer: AppProcess
    peer: AppProcess
    jose: JoseVerifier
    secret: str
    store_url: str
    kek: str
    issuer_url: str
    last_fetch: float = 0.0  # the latest moment a verifier may have fetched the JWKS (monotonic)

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer_url}/oauth/jwks"

    def token(self, **kwargs: Any) -> str:
        return access_token(self.issuer.base_url, CLIENT_ID, self.secret, **kwargs)

    def jose_verify(self, token: str, **overrides: Any) -> dict[str, Any]:
        options: dict[str, Any] = {
            "jwks_uri": self.jwks_uri,
            "issuer": self.issuer_url,
            "audience": self.issuer_url,
            "typ": "at+jwt",
            "cooldown_ms": int(PEER_COOLDOWN * 1000),
        }
        options.update(overrides)
        return self.jose.verify(token, **options)

    def peer_whoami(self, token: str) -> tuple[int, dict[str, Any]]:
        response = self.peer.whoami(token)
        body = (
            response.json()
            if response.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        return response.status_code, body


@pytest.fixture(scope="module")
def jose_install_dir() -> Path:
    _require_node()
    return ensure_jose_installed()


@pytest.fixture(scope="module")
def parties(jose_install_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parties]:
    workdir = tmp_path_factory.mktemp("issuer-interop")
    store_url = f"sqlite+aiosqlite:///{workdir / 'issuer.db'}"
    kek = new_kek()
    secret = asyncio.run(add_machine_client(store_url))
    issuer = AppProcess({}, workdir / "issuer.log")
    issuer_url = issuer.base_url
    issuer.config = issuer_config(issuer_url, store_url, kek=kek, jwks_max_age=JWKS_MAX_AGE)
    peer = AppProcess(
        {
            "role": "resource",
            "issuer": issuer_url,
            "audience": issuer_url,
            "jwks_cooldown": PEER_COOLDOWN,
        },
        workdir / "peer.log",
    )
    with issuer, peer, JoseVerifier(jose_install_dir, workdir / "jose.log") as jose:
        issuer.start()
        peer.start()  # its lifespan discovers the issuer and fetches its JWKS
        yield Parties(issuer, peer, jose, secret, store_url, kek, issuer_url, time.monotonic())


def _wait_for_signer(parties: Parties, old_kid: str) -> str:
    """A token of the issuer once it signs with a key other than ``old_kid``."""
    deadline = time.monotonic() + PICKUP_TIMEOUT
    while True:
        token = parties.token()
        if jwt_header(token)["kid"] != old_kid:
            return token
        assert time.monotonic() < deadline, (
            f"the issuer still signs with {old_kid}:\n{parties.issuer.log_tail()}"
        )
        time.sleep(0.2)


async def _rotate(parties: Parties, alg: str) -> str:
    """Rotate through the store, as ``authbridge keys rotate --now --alg ALG`` does."""
    from authbridge.issuer import AppIssuer  # noqa: PLC0415
    from authbridge.issuer._keys import KeyManager  # noqa: PLC0415
    from authbridge.store import open_store  # noqa: PLC0415

    config = AppIssuer(
        parties.issuer_url,
        store=parties.store_url,
        key_encryption_key=parties.kek,
        jwks_max_age=JWKS_MAX_AGE,
    )
    store = open_store(parties.store_url)
    await store.start()
    try:
        manager = KeyManager(store.keys, config=config, clock=time.time)
        info = await manager.rotate(immediately=True, alg=alg)  # type: ignore[arg-type]
    finally:
        await store.aclose()
    kid: str = info.kid
    return kid


def _past_cooldown(parties: Parties) -> None:
    """Wait until the verifiers may fetch the JWKS again (their cooldown since the last fetch)."""
    wait = parties.last_fetch + PEER_COOLDOWN + 0.1 - time.monotonic()
    if wait > 0:
        time.sleep(wait)


# -- (a) a second authbridge service, another process ---------------------------------------


def test_second_service_accepts_the_apps_tokens_through_discovery_and_jwks(
    parties: Parties,
) -> None:
    token = parties.token(scope="items:read")
    header, claims = jwt_header(token), jwt_claims(token)
    assert header["typ"] == "at+jwt"
    assert claims["iss"] == parties.issuer_url
    assert claims["aud"] == parties.issuer_url
    assert claims["sub"] == claims["client_id"] == CLIENT_ID

    status, body = parties.peer_whoami(token)
    assert status == 200, body
    assert body["provider"] == "api"
    assert body["issuer"] == parties.issuer_url
    assert body["subject"] == CLIENT_ID
    assert body["client_id"] == CLIENT_ID
    assert body["scopes"] == ["items:read"]
    assert body["token_id"] == claims["jti"]
    # The issuing app accepts its own token too (no HTTP: its issuer is one more source).
    own = parties.issuer.whoami(token)
    assert own.status_code == 200, own.text
    assert own.json()["provider"] == "app"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: with_claims(t, scope="items:read items:write"), id="widened-scope"),
        pytest.param(lambda t: with_claims(t, sub="someone-else"), id="other-subject"),
        pytest.param(lambda t: with_claims(t, exp=jwt_claims(t)["exp"] + 86400), id="later-exp"),
        pytest.param(with_flipped_signature, id="flipped-signature-bit"),
        pytest.param(lambda t: t.rpartition(".")[0] + ".", id="no-signature"),
    ],
)
def test_second_service_refuses_tampered_tokens(parties: Parties, tamper: Any) -> None:
    token = parties.token(scope="items:read")
    status, _ = parties.peer_whoami(tamper(token))
    assert status == 401
    assert parties.issuer.whoami(tamper(token)).status_code == 401
    assert parties.peer_whoami(token)[0] == 200  # the genuine one still passes


def test_second_service_refuses_tokens_of_another_audience_and_refresh_like_strings(
    parties: Parties,
) -> None:
    refused = client_credentials(
        parties.issuer.base_url, CLIENT_ID, parties.secret, resource="https://elsewhere.test"
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_target"
    assert parties.peer_whoami("abrt_" + "A" * 49)[0] == 401
    assert parties.issuer.whoami("abrt_" + "A" * 49).status_code == 401


# -- (b) npm jose, an independent implementation --------------------------------------------


def test_jose_verifies_the_apps_tokens(parties: Parties) -> None:
    token = parties.token()
    verdict = parties.jose_verify(token)
    assert verdict["ok"], verdict
    assert verdict["protectedHeader"]["typ"] == "at+jwt"
    assert verdict["protectedHeader"]["kid"] == jwt_header(token)["kid"]
    payload = verdict["payload"]
    assert payload["iss"] == parties.issuer_url
    assert payload["sub"] == payload["client_id"] == CLIENT_ID
    assert set(payload["scope"].split()) == {"items:read", "items:write"}
    assert payload["exp"] > payload["iat"]
    assert isinstance(payload["jti"], str)
    assert payload["jti"]


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        pytest.param(
            lambda t: with_claims(t, sub="someone-else"),
            "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
            id="other-subject",
        ),
        pytest.param(
            with_flipped_signature, "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", id="flipped-bit"
        ),
    ],
)
def test_jose_reports_tampered_tokens(parties: Parties, tamper: Any, code: str) -> None:
    verdict = parties.jose_verify(tamper(parties.token()))
    assert not verdict["ok"]
    assert verdict["code"] == code, verdict


@pytest.mark.parametrize(
    ("override", "code"),
    [
        pytest.param({"audience": "https://elsewhere.test"}, "ERR_JWT_CLAIM_VALIDATION_FAILED",
                     id="audience"),
        pytest.param({"issuer": "https://elsewhere.test"}, "ERR_JWT_CLAIM_VALIDATION_FAILED",
                     id="issuer"),
        pytest.param({"typ": "JWT"}, "ERR_JWT_CLAIM_VALIDATION_FAILED", id="typ"),
    ],
)  # fmt: skip
def test_jose_checks_what_it_is_asked_to(
    parties: Parties, override: dict[str, str], code: str
) -> None:
    verdict = parties.jose_verify(parties.token(), **override)
    assert not verdict["ok"]
    assert verdict["code"] == code, verdict


# -- key rotation through every algorithm ---------------------------------------------------


def test_rotation_through_every_algorithm_is_followed_by_both_verifiers(
    parties: Parties,
) -> None:
    first = parties.token()
    assert parties.jose_verify(first)["ok"]
    assert parties.peer_whoami(first)[0] == 200
    # Either verifier may have fetched the JWKS just now (jose on its first use).
    parties.last_fetch = time.monotonic()
    tokens = [first]
    for alg in ("RS256", "EdDSA", "ES256"):
        previous_kid = jwt_header(tokens[-1])["kid"]
        new_kid = asyncio.run(_rotate(parties, alg))
        token = _wait_for_signer(parties, previous_kid)
        header = jwt_header(token)
        assert (header["alg"], header["kid"]) == (alg, new_kid)

        published = parties.issuer.get("/oauth/jwks").json()["keys"]
        kids = {key["kid"] for key in published}
        assert {jwt_header(t)["kid"] for t in tokens} | {new_kid} <= kids
        assert all("d" not in key for key in published)  # public members only

        _past_cooldown(parties)
        # The second service does not know the new kid: it fetches the JWKS again.
        status, body = parties.peer_whoami(token)
        assert status == 200, (body, parties.peer.log_tail())
        # jose, holding the key set it fetched before, does the same.
        verdict = parties.jose_verify(token)
        assert verdict["ok"], verdict
        assert verdict["protectedHeader"]["alg"] == alg
        assert new_kid in verdict["kids"]
        parties.last_fetch = time.monotonic()

        # Tokens signed by the retired keys keep working until they expire.
        for old in tokens:
            assert parties.peer_whoami(old)[0] == 200
            assert parties.jose_verify(old)["ok"]
            assert parties.issuer.whoami(old).status_code == 200
        # A tampered token of the new key is refused by all three.
        forged = with_claims(token, sub="someone-else")
        assert parties.peer_whoami(forged)[0] == 401
        assert parties.issuer.whoami(forged).status_code == 401
        assert parties.jose_verify(forged)["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"
        tokens.append(token)
    assert [jwt_header(t)["alg"] for t in tokens] == ["ES256", "RS256", "EdDSA", "ES256"]
