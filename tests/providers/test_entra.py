"""EntraProvider: single and multi-tenant issuers, the tenant rule on every role."""

from __future__ import annotations

import time
from typing import Any

import pytest

from authbridge import ConfigurationError, InvalidToken, ResourceServer
from authbridge.errors import LoginError
from authbridge.jose import parse_compact
from authbridge.providers import EntraProvider
from authbridge.providers.entra import CONSUMER_TENANT, EntraSource

from .support import Fake, id_claims, jwks, run_login, sign, token_reply

AUTH = "https://login.entra.test"
TENANT = "1111aaaa-2222-3333-4444-5555bbbbcccc"
OTHER = "99999999-8888-7777-6666-555555555555"
APP = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
TEMPLATE = f"{AUTH}/{{tenantid}}/v2.0"


def entra(tenant: str = "organizations", **kwargs: Any) -> EntraProvider:
    options: dict[str, Any] = {"client_id": APP, "client_secret": "s", "authority": AUTH, **kwargs}
    return EntraProvider(tenant, **options)


def issuer(tid: str) -> str:
    return f"{AUTH}/{tid}/v2.0"


def discovery(tenant: str, iss: str) -> Fake:
    base = f"{AUTH}/{tenant}"
    return Fake(
        {
            f"{base}/v2.0/.well-known/openid-configuration": {
                "issuer": iss,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "jwks_uri": f"{AUTH}/common/discovery/v2.0/keys",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            },
            f"{AUTH}/common/discovery/v2.0/keys": jwks(),
        }
    )


@pytest.mark.parametrize(
    ("tenant", "kwargs", "reason"),
    [
        ("contoso.onmicrosoft.com", {}, "invalid_entra_tenant"),
        ("consumers", {}, "invalid_entra_tenant"),
        (TENANT.upper(), {}, "invalid_entra_tenant"),
        (TENANT, {"tenants": [TENANT]}, "tenants_need_multi_tenant"),
        ("common", {"tenants": ["not-a-guid"]}, "invalid_entra_tenant"),
        ("common", {"tenants": TENANT}, "invalid_entra_tenant"),
        ("common", {"tenants": []}, "invalid_entra_tenant"),
        ("organizations", {"tenants": [CONSUMER_TENANT]}, "invalid_entra_tenant"),
    ],
)
def test_configuration_errors(tenant: str, kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        entra(tenant, **kwargs)
    assert excinfo.value.reason == reason


def test_no_audience_without_a_client_id_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        EntraProvider(TENANT)


def test_computed_issuers_and_discovery() -> None:
    single = entra(TENANT)
    assert single.issuer == issuer(TENANT)
    assert single.discovery_url is None
    assert single.policy.audiences == {APP}
    multi = entra("common")
    assert multi.issuer == TEMPLATE
    assert multi.discovery_url == f"{AUTH}/common/v2.0/.well-known/openid-configuration"
    assert EntraProvider("organizations", "api-id").issuer.startswith(
        "https://login.microsoftonline.com/"
    )


def test_routing_issuers() -> None:
    session = Fake().holder().session
    assert entra(TENANT).bind(session, lambda: 0.0).jwt_issuers == (issuer(TENANT),)
    unlisted = entra("organizations").bind(session, lambda: 0.0)
    assert unlisted.jwt_issuers == ()  # the template itself routes nothing
    assert unlisted.matches_issuer(issuer(TENANT))
    assert not unlisted.matches_issuer(TEMPLATE)
    assert not unlisted.matches_issuer(f"{AUTH}/{TENANT}/x/v2.0")
    assert not unlisted.matches_issuer(f"{AUTH}/../{TENANT}/v2.0")
    listed = entra("organizations", tenants=[TENANT, OTHER]).bind(session, lambda: 0.0)
    assert set(listed.jwt_issuers) == {issuer(TENANT), issuer(OTHER)}
    assert not entra("organizations", tenants=[OTHER]).matches_issuer(issuer(TENANT))


def access(tid: Any, iss: Any, **extra: Any) -> str:
    claims = id_claims(iss, APP, nonce=None, tid=tid, azp=APP, **extra)
    return sign({k: v for k, v in claims.items() if v is not None})


async def verify_multi(provider: EntraProvider, token: str) -> Any:
    fake = discovery(provider.tenant, TEMPLATE)
    source = provider.bind(fake.holder().session, time.time)
    assert isinstance(source, EntraSource)
    parsed = parse_compact(token, max_bytes=16384)
    return (await source.verify_jwt(parsed, len(token))).principal


async def test_multi_tenant_access_token_of_a_tenant_is_accepted_with_its_issuer() -> None:
    principal = await verify_multi(entra("organizations"), access(TENANT, issuer(TENANT)))
    assert principal.issuer == issuer(TENANT)
    assert principal.client_id == APP


@pytest.mark.parametrize(
    ("tid", "iss", "reason"),
    [
        (None, issuer(TENANT), "invalid_tenant"),  # no tid
        ("not-a-guid", f"{AUTH}/not-a-guid/v2.0", "invalid_tenant"),
        (TENANT.upper(), issuer(TENANT.upper()), "invalid_tenant"),
        (f"{TENANT}/v2.0/x", f"{AUTH}/{TENANT}/v2.0/x/v2.0", "invalid_tenant"),  # a path
        ("{tenantid}", TEMPLATE, "invalid_tenant"),  # the placeholder left in
        (TENANT, TEMPLATE, "issuer_mismatch"),  # iss still holds {tenantid}
        (TENANT, issuer(OTHER), "issuer_mismatch"),  # tid of another tenant than iss
        (OTHER, issuer(TENANT), "issuer_mismatch"),
        (7, issuer(TENANT), "invalid_tenant"),
    ],
)
async def test_tenant_template_attacks_are_refused(tid: Any, iss: str, reason: str) -> None:
    with pytest.raises(InvalidToken) as excinfo:
        await verify_multi(entra("common"), access(tid, iss))
    assert excinfo.value.reason == reason


async def test_allow_list_and_the_consumer_tenant() -> None:
    allowed = entra("common", tenants=[OTHER])
    with pytest.raises(InvalidToken) as excinfo:
        await verify_multi(allowed, access(TENANT, issuer(TENANT)))
    assert excinfo.value.reason == "tenant_not_allowed"
    assert (await verify_multi(allowed, access(OTHER, issuer(OTHER)))).issuer == issuer(OTHER)
    with pytest.raises(InvalidToken) as consumer:
        await verify_multi(entra("organizations"), access(CONSUMER_TENANT, issuer(CONSUMER_TENANT)))
    assert consumer.value.reason == "tenant_not_allowed"
    personal = await verify_multi(entra("common"), access(CONSUMER_TENANT, issuer(CONSUMER_TENANT)))
    assert personal.issuer == issuer(CONSUMER_TENANT)


async def test_a_forged_signature_is_refused_even_with_a_good_tenant() -> None:
    token = access(TENANT, issuer(TENANT))
    head, body, sig = token.split(".")
    with pytest.raises(InvalidToken) as excinfo:
        await verify_multi(entra("common"), f"{head}.{body}.{sig[:-4]}AAAA")
    assert excinfo.value.reason == "bad_signature"


async def test_allow_listed_tenants_route_through_the_resource_server() -> None:
    provider = entra("organizations", tenants=[TENANT])
    fake = discovery("organizations", TEMPLATE)
    async with ResourceServer([provider], transport=fake.transport) as rs:
        principal = await rs.verify(access(TENANT, issuer(TENANT)))
        assert principal.issuer == issuer(TENANT)
        with pytest.raises(InvalidToken) as excinfo:
            await rs.verify(access(OTHER, issuer(OTHER)))
        assert excinfo.value.reason == "unknown_issuer"
    exchanged = provider.exchange_identity(principal)
    assert exchanged is not None
    assert exchanged.issuer == issuer(TENANT)


async def test_any_tenant_routes_by_the_issuer_template_without_an_allow_list() -> None:
    provider = entra("organizations")
    fake = discovery("organizations", TEMPLATE)
    async with ResourceServer([provider], transport=fake.transport) as rs:
        for tid in (TENANT, OTHER):
            assert (await rs.verify(access(tid, issuer(tid)))).issuer == issuer(tid)
        # Routing fits the template only; the tenant rule still decides.
        with pytest.raises(InvalidToken) as excinfo:
            await rs.verify(access(TENANT, issuer(OTHER)))
        assert excinfo.value.reason != "unknown_issuer"
        for iss in (issuer("not-a-guid"), TEMPLATE, f"{AUTH}/{TENANT}/v2.0/x", f"{AUTH}/x/v2.0"):
            with pytest.raises(InvalidToken) as excinfo:
                await rs.verify(access(TENANT, iss))
            assert excinfo.value.reason == "unknown_issuer"


async def test_single_tenant_refuses_other_tenants() -> None:
    provider = entra(TENANT)
    fake = discovery(TENANT, issuer(TENANT))
    fake.routes[f"{AUTH}/{TENANT}/v2.0/.well-known/openid-configuration"]["jwks_uri"] = (  # type: ignore[index]
        f"{AUTH}/common/discovery/v2.0/keys"
    )
    async with ResourceServer([provider], transport=fake.transport) as rs:
        assert (await rs.verify(access(TENANT, issuer(TENANT)))).issuer == issuer(TENANT)
        with pytest.raises(InvalidToken):
            await rs.verify(access(OTHER, issuer(OTHER)))


def login_fake(tenant: str, iss: str, **claims: Any) -> Fake:
    fake = discovery(tenant, TEMPLATE if tenant in ("common", "organizations") else iss)
    fake.routes[f"{AUTH}/{tenant}/oauth2/v2.0/token"] = token_reply(
        access_token="eyJ0", id_token=sign(id_claims(iss, APP, **claims))
    )
    return fake


async def test_multi_tenant_login_keys_the_identity_by_the_tenants_issuer() -> None:
    fake = login_fake("organizations", issuer(TENANT), tid=TENANT, email="a@contoso.test")
    _, url, identity = await run_login(entra("organizations"), fake)
    assert url.startswith(f"{AUTH}/organizations/oauth2/v2.0/authorize?")
    assert (identity.issuer, identity.subject) == (issuer(TENANT), "user-1")
    assert identity.email == "a@contoso.test"
    assert not identity.email_verified  # Entra's email is not verified without xms_edov


async def test_xms_edov_makes_the_email_verified() -> None:
    fake = login_fake("common", issuer(TENANT), tid=TENANT, email="a@contoso.test", xms_edov=True)
    _, _, identity = await run_login(entra("common"), fake)
    assert identity.email_verified


@pytest.mark.parametrize(
    ("tid", "iss"),
    [
        ("not-a-guid", f"{AUTH}/not-a-guid/v2.0"),
        (OTHER, issuer(TENANT)),
        (TENANT, TEMPLATE),
        (None, issuer(TENANT)),
    ],
)
async def test_multi_tenant_login_refuses_tenant_attacks(tid: Any, iss: str) -> None:
    claims = {"tid": tid} if tid is not None else {}
    with pytest.raises(LoginError) as excinfo:
        await run_login(entra("common"), login_fake("common", iss, **claims))
    assert excinfo.value.reason == "id_token_invalid:issuer_mismatch"


async def test_login_allow_list() -> None:
    fake = login_fake("common", issuer(TENANT), tid=TENANT)
    with pytest.raises(LoginError):
        await run_login(entra("common", tenants=[OTHER]), fake)


async def test_multi_tenant_endpoints_carry_no_single_issuer_for_rfc9207() -> None:
    fake = discovery("common", TEMPLATE)
    login = entra("common").bind_login(fake.holder().session, lambda: 0.0, timeout=5.0)
    endpoints = await login.endpoints()
    assert endpoints.issuer is None
    assert not endpoints.iss_parameter_supported
    assert login.supports_logout
