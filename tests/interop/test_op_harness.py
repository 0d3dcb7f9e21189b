"""The oidc-provider harness itself: what the real provider issues, checked with joserfc."""

from __future__ import annotations

import base64
import json
import time
from typing import Any, cast

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, InvalidKeyIdError
from joserfc.jwk import KeySet, KeySetSerialization

from .op import (
    CC_CLIENT_ID,
    CC_CLIENT_SECRET,
    JWT_RESOURCE,
    OPAQUE_RESOURCE,
    PUBLIC_CLIENT_ID,
    PUBLIC_REDIRECT_URI,
    SWAGGER_CLIENT_ID,
    OidcProvider,
    OidcProviderError,
    OidcProviderFactory,
    ResourceServer,
    default_config,
    generate_rsa_jwk,
    public_jwk,
)

pytestmark = pytest.mark.interop


def _b64_json(segment: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return data


def jwt_header(token: str) -> dict[str, Any]:
    return _b64_json(token.split(".", maxsplit=1)[0])


def jwt_claims_unverified(token: str) -> dict[str, Any]:
    return _b64_json(token.split(".")[1])


def keyset(jwks: dict[str, Any]) -> KeySet:
    return KeySet.import_key_set(cast("KeySetSerialization", jwks))


def verify_access_token(
    token: str, jwks: dict[str, Any], *, issuer: str, audience: str
) -> dict[str, Any]:
    """Verify an RFC 9068 access token with joserfc against ``jwks``; return its claims."""
    decoded = jwt.decode(token, keyset(jwks), algorithms=["RS256"])
    assert decoded.header["typ"] == "at+jwt"
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
        sub={"essential": True},
        client_id={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    ).validate(decoded.claims)
    return decoded.claims


# -- discovery and keys --------------------------------------------------------------------


def test_discovery_issuer_matches(oidc_provider: OidcProvider) -> None:
    discovery = oidc_provider.discovery()

    assert oidc_provider.issuer == f"http://127.0.0.1:{oidc_provider.port}"
    assert discovery["issuer"] == oidc_provider.issuer
    for endpoint in (
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
        "userinfo_endpoint",
    ):
        assert discovery[endpoint].startswith(oidc_provider.issuer + "/"), endpoint
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert "client_credentials" in discovery["grant_types_supported"]


def test_jwks_serves_the_configured_key(
    oidc_provider: OidcProvider, op_signing_key: dict[str, Any]
) -> None:
    keys = oidc_provider.jwks()["keys"]

    assert keys == [public_jwk(op_signing_key)]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(keys[0])


# -- client credentials --------------------------------------------------------------------


def test_client_credentials_jwt_access_token(
    oidc_provider: OidcProvider, op_signing_key: dict[str, Any]
) -> None:
    response = oidc_provider.client_credentials_token(JWT_RESOURCE, "items:read items:write")
    token = response["access_token"]

    assert response["token_type"] == "Bearer"
    assert response["expires_in"] == 300
    header = jwt_header(token)
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": op_signing_key["kid"]}

    claims = verify_access_token(
        token, oidc_provider.jwks(), issuer=oidc_provider.issuer, audience=JWT_RESOURCE
    )
    assert claims["aud"] == JWT_RESOURCE  # a single string, not a list
    assert set(claims["scope"].split()) == {"items:read", "items:write"}
    assert claims["client_id"] == CC_CLIENT_ID
    # RFC 9068 §2.2: for client credentials, sub is the client's identifier; the provider does so.
    assert claims["sub"] == CC_CLIENT_ID
    assert claims["exp"] - claims["iat"] == 300
    # Only our key verifies it.
    impostor = public_jwk(generate_rsa_jwk(header["kid"]))
    with pytest.raises(BadSignatureError):
        jwt.decode(token, keyset({"keys": [impostor]}), algorithms=["RS256"])


def test_client_credentials_scopes_are_filtered_to_the_resource(
    oidc_provider: OidcProvider,
) -> None:
    response = oidc_provider.client_credentials_token(JWT_RESOURCE, "items:read unknown:scope")

    assert response["scope"] == "items:read"
    assert jwt_claims_unverified(response["access_token"])["scope"] == "items:read"


def test_unknown_resource_is_rejected(oidc_provider: OidcProvider) -> None:
    response = oidc_provider.token_request(
        {"grant_type": "client_credentials", "resource": "https://unknown.example.test/"},
        client_id=CC_CLIENT_ID,
        client_secret=CC_CLIENT_SECRET,
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


# -- authorization code + PKCE --------------------------------------------------------------


def test_pkce_login_yields_jwt_access_token_for_alice(
    oidc_provider: OidcProvider, op_signing_key: dict[str, Any]
) -> None:
    response = oidc_provider.authorization_code_pkce_login(
        PUBLIC_CLIENT_ID, PUBLIC_REDIRECT_URI, "openid email items:read", JWT_RESOURCE
    )

    assert jwt_header(response["access_token"])["kid"] == op_signing_key["kid"]
    claims = verify_access_token(
        response["access_token"],
        oidc_provider.jwks(),
        issuer=oidc_provider.issuer,
        audience=JWT_RESOURCE,
    )
    assert claims["sub"] == "alice"
    assert claims["client_id"] == PUBLIC_CLIENT_ID
    assert claims["scope"] == "items:read"  # OIDC scopes stay out of the resource's token

    id_token = jwt.decode(response["id_token"], keyset(oidc_provider.jwks()), algorithms=["RS256"])
    assert id_token.claims["sub"] == "alice"
    assert id_token.claims["aud"] == PUBLIC_CLIENT_ID
    assert id_token.claims["iss"] == oidc_provider.issuer


def test_pkce_login_with_loopback_port_and_wrong_password(oidc_provider: OidcProvider) -> None:
    # A native client's loopback redirect URI matches with any port.
    code = oidc_provider.authorize(
        redirect_uri="http://127.0.0.1:8765/cb",
        username="bob",
        password="builder",
        scope="openid items:write",
    )
    assert code.redirect_location.startswith("http://127.0.0.1:8765/cb?")
    assert code.iss == oidc_provider.issuer

    with pytest.raises(OidcProviderError, match="login as 'alice' failed"):
        oidc_provider.authorize(password="not-wonderland")


def test_login_without_resource_gives_userinfo_token(oidc_provider: OidcProvider) -> None:
    response = oidc_provider.authorization_code_pkce_login(scope="openid email", resource=None)

    assert response["access_token"].count(".") == 0  # opaque, audience-less
    assert oidc_provider.userinfo(response["access_token"]) == {
        "sub": "alice",
        "email": "alice@example.test",
        "email_verified": True,
    }


def test_swagger_client_any_loopback_port_and_cors_from_the_listed_origin(
    oidc_provider_factory: OidcProviderFactory,
) -> None:
    # What Swagger UI on http://127.0.0.1:8123/docs does: the popup logs in and is redirected
    # to /docs/oauth2-redirect on the page's port; the page then redeems the code cross-origin.
    origin = "http://127.0.0.1:8123"
    op = oidc_provider_factory(default_config().with_cors_origin(SWAGGER_CLIENT_ID, origin))
    redirect_uri = f"{origin}/docs/oauth2-redirect"

    def redeem(code_origin: str) -> Any:
        code = op.authorize(client_id=SWAGGER_CLIENT_ID, redirect_uri=redirect_uri)
        assert code.redirect_location.startswith(f"{redirect_uri}?code=")
        data = {
            "grant_type": "authorization_code",
            "code": code.code,
            "redirect_uri": redirect_uri,
            "code_verifier": code.code_verifier,
            "client_id": SWAGGER_CLIENT_ID,
        }  # no resource: the granted one is used (useGrantedResource)
        with op.client() as http:
            return http.post("/token", data=data, headers={"Origin": code_origin})

    with op.client() as http:
        preflight = http.options(
            "/token",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-requested-with",
            },
        )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin

    allowed = redeem(origin)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == origin
    claims = verify_access_token(
        allowed.json()["access_token"], op.jwks(), issuer=op.issuer, audience=JWT_RESOURCE
    )
    assert (claims["sub"], claims["client_id"]) == ("alice", SWAGGER_CLIENT_ID)

    refused = redeem("http://127.0.0.1:9999")  # another port is another origin
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request"
    assert "access-control-allow-origin" not in refused.headers


# -- opaque tokens, introspection, revocation ---------------------------------------------


def test_opaque_token_introspects_active_then_revoked(oidc_provider: OidcProvider) -> None:
    response = oidc_provider.client_credentials_token(OPAQUE_RESOURCE, "items:read")
    token = response["access_token"]
    assert token.count(".") == 0

    info = oidc_provider.introspect(token)
    assert info["active"] is True
    assert info["aud"] == OPAQUE_RESOURCE
    assert info["client_id"] == CC_CLIENT_ID
    assert info["scope"] == "items:read"
    assert info["token_type"] == "Bearer"
    assert info["iss"] == oidc_provider.issuer
    assert "sub" not in info  # unlike the JWT form, no sub for client-credentials tokens

    assert oidc_provider.revoke(token).status_code == 200
    assert oidc_provider.introspect(token) == {"active": False}


def test_user_opaque_token_introspects_with_sub(oidc_provider: OidcProvider) -> None:
    response = oidc_provider.authorization_code_pkce_login(
        scope="openid items:read", resource=OPAQUE_RESOURCE
    )
    token = response["access_token"]

    info = oidc_provider.introspect(token)
    assert info["active"] is True
    assert info["sub"] == "alice"
    assert info["client_id"] == PUBLIC_CLIENT_ID
    assert info["aud"] == OPAQUE_RESOURCE

    # A public client may revoke its own token (client_id in the body, no secret).
    revoked = oidc_provider.revoke(token, client_id=PUBLIC_CLIENT_ID, client_secret=None)
    assert revoked.status_code == 200
    assert oidc_provider.introspect(token)["active"] is False


def test_jwt_access_tokens_are_not_introspectable(oidc_provider: OidcProvider) -> None:
    token = oidc_provider.client_credentials_token(JWT_RESOURCE)["access_token"]

    with oidc_provider.client() as http:
        response = http.post(
            "/token/introspection",
            data={"token": token},
            auth=(CC_CLIENT_ID, CC_CLIENT_SECRET),
        )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_token_type"


# -- lifetimes and key rotation (private providers) -----------------------------------------


def test_short_ttl_tokens_expire(oidc_provider_factory: OidcProviderFactory) -> None:
    op = oidc_provider_factory(access_token_ttl=2)
    jwt_token = op.client_credentials_token(JWT_RESOURCE)
    opaque_token = op.client_credentials_token(OPAQUE_RESOURCE)["access_token"]
    jwks = op.jwks()

    assert jwt_token["expires_in"] == 2
    claims = verify_access_token(
        jwt_token["access_token"], jwks, issuer=op.issuer, audience=JWT_RESOURCE
    )
    assert claims["exp"] - claims["iat"] == 2
    assert op.introspect(opaque_token)["active"] is True

    time.sleep(max(0.0, claims["exp"] + 1.05 - time.time()))

    with pytest.raises(ExpiredTokenError):
        verify_access_token(
            jwt_token["access_token"], jwks, issuer=op.issuer, audience=JWT_RESOURCE
        )
    assert op.introspect(opaque_token) == {"active": False}


def test_key_rotation_by_restart(oidc_provider_factory: OidcProviderFactory) -> None:
    old_key, new_key = generate_rsa_jwk(), generate_rsa_jwk()
    op = oidc_provider_factory(jwks=(old_key,))
    issuer, port, old_pid = op.issuer, op.port, op.pid
    old_token = op.client_credentials_token()["access_token"]
    assert jwt_header(old_token)["kid"] == old_key["kid"]

    op.restart(jwks=[new_key])

    assert (op.issuer, op.port) == (issuer, port)
    assert op.pid != old_pid
    jwks = op.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [new_key["kid"]]
    new_token = op.client_credentials_token()["access_token"]
    assert jwt_header(new_token)["kid"] == new_key["kid"]
    verify_access_token(new_token, jwks, issuer=issuer, audience=JWT_RESOURCE)
    with pytest.raises(InvalidKeyIdError):
        verify_access_token(old_token, jwks, issuer=issuer, audience=JWT_RESOURCE)


def test_two_keys_first_signs_unless_resource_pins_kid(
    oidc_provider_factory: OidcProviderFactory,
) -> None:
    first, second = generate_rsa_jwk(), generate_rsa_jwk()
    op = oidc_provider_factory(jwks=(first, second))

    assert [k["kid"] for k in op.jwks()["keys"]] == [first["kid"], second["kid"]]
    token = op.client_credentials_token()["access_token"]
    assert jwt_header(token)["kid"] == first["kid"]
    id_token = op.authorization_code_pkce_login()["id_token"]
    assert jwt_header(id_token)["kid"] == first["kid"]

    assert op.config is not None
    pinned = ResourceServer(JWT_RESOURCE, "items:read", "jwt", signing_kid=second["kid"])
    op.restart(config=op.config.replace(resources=(pinned,)))
    token = op.client_credentials_token()["access_token"]
    assert jwt_header(token)["kid"] == second["kid"]
    verify_access_token(token, op.jwks(), issuer=op.issuer, audience=JWT_RESOURCE)
