"""AppleProvider: the signed client secret, form_post without PKCE, Apple's claim quirks."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from authbridge import ConfigurationError, ResourceServer
from authbridge.errors import LoginError
from authbridge.providers import AppleProvider
from authbridge.providers.apple import apple_user_name

from .support import (
    KEY,
    Fake,
    b64,
    claims_of,
    form,
    id_claims,
    jwks,
    query,
    run_login,
    sign,
    token_reply,
    unb64,
)

TEAM_KEY = ec.generate_private_key(ec.SECP256R1())
PEM = TEAM_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
AUTHZ, TOKEN, KEYS = (
    "https://appleid.test/auth/authorize",
    "https://appleid.test/auth/token",
    ("https://appleid.test/auth/keys"),
)


def apple(**kwargs: Any) -> AppleProvider:
    options: dict[str, Any] = {
        "team_id": "TEAM123456",
        "key_id": "KEY1234567",
        "private_key": PEM,
        "authorization_endpoint": AUTHZ,
        "token_endpoint": TOKEN,
        "jwks_uri": KEYS,
        **kwargs,
    }
    return AppleProvider("com.example.web", **options)


def apple_fake(**claims: Any) -> Fake:
    id_token = sign(
        id_claims("https://appleid.apple.com", "com.example.web", sub="001.abc", **claims)
    )
    return Fake({TOKEN: token_reply(access_token="a.b", id_token=id_token), KEYS: jwks()})


def verify_es256(jwt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, sig = jwt.split(".")
    raw = unb64(sig)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    TEAM_KEY.public_key().verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    return claims_of(jwt)


def test_client_secret_is_an_es256_jwt_with_apples_claims() -> None:
    now = time.time()
    header, claims = verify_es256(apple().client_secret(now))
    assert header == {"alg": "ES256", "kid": "KEY1234567", "typ": "JWT"}
    assert claims["iss"] == "TEAM123456"
    assert claims["sub"] == "com.example.web"
    assert claims["aud"] == "https://appleid.apple.com"
    assert claims["iat"] == int(now)
    assert claims["exp"] == int(now) + 300


def test_client_secret_signature_fails_with_a_changed_claim() -> None:
    head, body, sig = apple().client_secret(time.time()).split(".")
    forged = json.loads(unb64(body))
    forged["sub"] = "com.attacker"
    with pytest.raises(InvalidSignature):
        verify_es256(f"{head}.{b64(json.dumps(forged).encode())}.{sig}")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"key_id": None}, "apple_login_needs_team_key"),
        ({"private_key": None}, "apple_login_needs_team_key"),
        ({"private_key": "not a pem"}, "apple_key_unreadable"),
        (
            {
                "private_key": KEY.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode()
            },
            "apple_key_not_p256",
        ),
        ({"client_secret_ttl": 0}, "invalid_client_secret_ttl"),
        ({"client_secret_ttl": 181 * 86400}, "invalid_client_secret_ttl"),
        ({"login_scopes": ("name", "email")}, "oidc_login_needs_openid_scope"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        apple(**kwargs)
    assert excinfo.value.reason == reason


def test_without_the_team_key_apple_is_resource_only() -> None:
    provider = AppleProvider("com.example.web")
    assert not provider.login_enabled
    with pytest.raises(ConfigurationError):
        provider.client_secret(time.time())
    assert "KEY" not in repr(apple())
    assert "PRIVATE" not in repr(apple())


async def test_login_is_form_post_with_nonce_without_pkce_and_a_fresh_secret_per_request() -> None:
    fake = apple_fake(
        email="x@privaterelay.appleid.com", email_verified="true", is_private_email="true"
    )
    login, url, identity = await run_login(apple(), fake)
    params = query(url)
    assert url.startswith(AUTHZ + "?")
    assert params["response_mode"] == "form_post"
    assert params["scope"] == "openid name email"
    assert "nonce" in params
    assert "code_challenge" not in params
    sent = form(fake.last(TOKEN))
    assert "code_verifier" not in sent
    assert sent["client_id"] == "com.example.web"
    _, secret_claims = verify_es256(sent["client_secret"])
    assert secret_claims["exp"] - secret_claims["iat"] == 300
    assert (identity.issuer, identity.subject) == ("https://appleid.apple.com", "001.abc")
    assert identity.email_verified  # Apple's "true" string
    assert not login.supports_logout
    assert not any("userinfo" in u for u in fake.urls())
    await login.redeem("code-2", code_verifier=None, redirect_uri="https://app/cb")
    second = form(fake.last(TOKEN))["client_secret"]
    assert verify_es256(second)[1]["jti"] != secret_claims["jti"]


@pytest.mark.parametrize("flag", [False, "false", "True", 1, None])
async def test_only_true_or_the_string_true_is_verified(flag: Any) -> None:
    _, _, identity = await run_login(
        apple(), apple_fake(email="x@example.test", email_verified=flag)
    )
    assert not identity.email_verified


async def test_the_user_field_names_the_person_but_never_gives_the_email() -> None:
    user = json.dumps(
        {"name": {"firstName": "Ana", "lastName": "Lima"}, "email": "victim@example.test"}
    )
    _, _, identity = await run_login(apple(), apple_fake(), callback={"user": user})
    assert identity.name == "Ana Lima"
    assert identity.email is None
    assert not identity.email_verified


@pytest.mark.parametrize("value", ["", "not json", "[]", '{"name": "Ana"}', "x" * 5000])
def test_a_malformed_user_field_is_ignored(value: str) -> None:
    assert apple_user_name(value) is None


async def test_an_id_token_for_another_services_id_is_refused() -> None:
    fake = apple_fake()
    fake.routes[TOKEN] = token_reply(
        access_token="a", id_token=sign(id_claims("https://appleid.apple.com", "com.other"))
    )
    with pytest.raises(LoginError):
        await run_login(apple(), fake)


async def test_exchange_of_a_native_apps_id_token() -> None:
    provider = apple(client_ids=["com.example.ios"])
    fake = Fake({KEYS: jwks()})
    token = sign(
        id_claims(
            "https://appleid.apple.com",
            "com.example.ios",
            nonce=None,
            sub="001.abc",
            email="a@example.test",
            email_verified="true",
        )
    )
    async with ResourceServer([provider], transport=fake.transport) as rs:
        principal = await rs.verify(token)
    exchanged = provider.exchange_identity(principal)
    assert exchanged is not None
    assert exchanged.email_verified
    assert (exchanged.issuer, exchanged.subject) == ("https://appleid.apple.com", "001.abc")
    assert (
        AppleProvider("com.elsewhere", jwks_uri=KEYS).exchange_identity(
            principal.model_copy(update={"provider": "apple"})
        )
        is None
    )
