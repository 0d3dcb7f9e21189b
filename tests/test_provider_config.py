"""OIDCProvider options: configuration errors, client ids, exact claim values, key-cache knobs."""

from __future__ import annotations

import pytest
from tests.conftest import FakeClock

from authbridge import ConfigurationError, InvalidToken, OIDCProvider, ResourceServer, roles
from authbridge.testing import FakeIssuer

ISS = "https://issuer.example.test"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"audience": ""},
        {"audience": ["api", " "]},
        {"audience": None},
        {"audience": None, "client_ids": ""},
        {"audience": "api", "leeway": 301},
        {"audience": "api", "leeway": -1},
        {"audience": "api", "algorithms": []},
        {"audience": "api", "algorithms": ["HS256"]},  # HMAC needs an explicit secret
        {"audience": "api", "algorithms": ["RS256", "HS256"], "hmac_secret": "x" * 32},
        {"audience": "api", "algorithms": ["none"]},
        {"audience": "api", "hmac_secret": "too-short"},
        {"audience": "api", "hmac_secret": "x" * 32, "jwks_uri": "https://x/jwks"},
        {"audience": "api", "token_type": "sometimes"},
        {"audience": "api", "max_token_bytes": 10},
        {"audience": "api", "client_id_claims": []},
        {"audience": "api", "jwks_cooldown": 100, "jwks_max_age": 50},
    ],
)
def test_inconsistent_configuration_is_refused_at_construction(kwargs: dict) -> None:
    with pytest.raises(ConfigurationError):
        OIDCProvider("p", issuer=ISS, **kwargs)


def test_duplicate_issuers_and_names_are_refused() -> None:
    a = OIDCProvider("a", issuer=ISS, audience="api")
    with pytest.raises(ConfigurationError):
        ResourceServer([a, OIDCProvider("b", issuer=ISS, audience="api")])
    with pytest.raises(ConfigurationError):
        ResourceServer([a, OIDCProvider("a", issuer=ISS + "/other", audience="api")])
    with pytest.raises(ConfigurationError):
        ResourceServer([])


async def test_okta_style_cid_claim(fake_issuer: FakeIssuer, clock: FakeClock) -> None:
    provider = fake_issuer.provider(client_ids=["0oa1"], client_id_claims=["cid"])
    async with ResourceServer([provider], transport=fake_issuer.transport, clock=clock) as rs:
        principal = await rs.verify(fake_issuer.token(cid="0oa1", client_id=None))
        assert principal.client_id == "0oa1"
        with pytest.raises(InvalidToken) as excinfo:
            await rs.verify(fake_issuer.token(cid="0oa-other", client_id=None))
        assert excinfo.value.reason == "client_mismatch"
        # client_id is not consulted when only cid is configured
        with pytest.raises(InvalidToken):
            await rs.verify(fake_issuer.token(client_id="0oa1"))


async def test_cognito_style_access_tokens(fake_issuer: FakeIssuer, clock: FakeClock) -> None:
    provider = fake_issuer.provider(
        audience=None,
        client_ids=["app-client"],
        claim_values={"token_use": "access"},
        roles_claims=[roles.COGNITO_GROUPS],
    )
    async with ResourceServer([provider], transport=fake_issuer.transport, clock=clock) as rs:
        access = fake_issuer.token(
            aud=None, client_id="app-client", token_use="access", **{"cognito:groups": ["staff"]}
        )
        principal = await rs.verify(access)
        assert principal.client_id == "app-client"
        assert principal.roles == {"staff"}
        id_token = fake_issuer.token(aud="app-client", client_id=None, token_use="id")
        with pytest.raises(InvalidToken):
            await rs.verify(id_token)
        wrong_use = fake_issuer.token(aud=None, client_id="app-client", token_use="id")
        with pytest.raises(InvalidToken) as excinfo:
            await rs.verify(wrong_use)
        assert excinfo.value.reason == "unexpected_claim_value"
        assert excinfo.value.claim == "token_use"


async def test_claim_values_compare_types(fake_issuer: FakeIssuer, clock: FakeClock) -> None:
    provider = fake_issuer.provider(claim_values={"email_verified": True})
    async with ResourceServer([provider], transport=fake_issuer.transport, clock=clock) as rs:
        await rs.verify(fake_issuer.token(email_verified=True))
        for value in (1, "true", False, None):
            with pytest.raises(InvalidToken):
                await rs.verify(fake_issuer.token(email_verified=value))


async def test_keycloak_client_id_with_dots(fake_issuer: FakeIssuer, clock: FakeClock) -> None:
    provider = fake_issuer.provider(roles_claims=[roles.keycloak_client("com.example.api")])
    async with ResourceServer([provider], transport=fake_issuer.transport, clock=clock) as rs:
        token = fake_issuer.token(
            resource_access={"com.example.api": {"roles": ["editor"]}, "com": {"roles": ["x"]}}
        )
        assert (await rs.verify(token)).roles == {"editor"}


async def test_jwks_cooldown_is_configurable(fake_issuer: FakeIssuer, clock: FakeClock) -> None:
    provider = fake_issuer.provider(jwks_cooldown=5)
    async with ResourceServer([provider], transport=fake_issuer.transport, clock=clock) as rs:
        fake_issuer.rotate_key()
        with pytest.raises(InvalidToken):
            await rs.verify(fake_issuer.token())  # within the cooldown of the start-up fetch
        clock.advance(5)
        assert (await rs.verify(fake_issuer.token())).subject == "alice"
    assert fake_issuer.requests.count("/jwks") == 2
