"""Principal: normalised scopes and roles from each provider's claim layout."""

from __future__ import annotations

import time

import pytest

from authbridge import OIDCProvider, Principal, roles

NOW = int(time.time())
BASE = {"iss": "https://issuer.example.test", "exp": NOW + 60, "aud": "api", "sub": "alice"}


def provider(**kwargs: object) -> OIDCProvider:
    return OIDCProvider("p", issuer=BASE["iss"], audience="api", **kwargs)  # type: ignore[arg-type]


def test_trusted_construction_equals_a_validated_model() -> None:
    principal = provider().principal_from({**BASE, "scope": "a b", "jti": "j1", "client_id": "c"})
    validated = Principal.model_validate(principal.model_dump())
    assert principal == validated
    assert principal.model_fields_set == validated.model_fields_set
    assert principal.model_dump_json() == validated.model_dump_json()
    with pytest.raises(ValueError, match="frozen"):
        principal.subject = "mallory"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"scope": "items:read  items:write"}, {"items:read", "items:write"}),
        ({"scp": "a b"}, {"a", "b"}),
        ({"scp": ["a", "b"]}, {"a", "b"}),
        ({"scope": "a", "scp": ["b"]}, {"a", "b"}),
        ({}, set()),
    ],
)
def test_scopes(claims: dict[str, object], expected: set[str]) -> None:
    assert provider().principal_from({**BASE, **claims}).scopes == expected


def test_auth0_permissions_as_scopes_when_asked() -> None:
    p = provider(scope_claims=("scope", "permissions"))
    principal = p.principal_from({**BASE, "scope": "openid", "permissions": ["read:items"]})
    assert principal.scopes == {"openid", "read:items"}


@pytest.mark.parametrize(
    ("paths", "claims", "expected"),
    [
        ([roles.KEYCLOAK_REALM], {"realm_access": {"roles": ["admin", "user"]}}, {"admin", "user"}),
        (
            [roles.keycloak_client("api")],
            {"resource_access": {"api": {"roles": ["editor"]}, "other": {"roles": ["x"]}}},
            {"editor"},
        ),
        ([roles.ENTRA], {"roles": ["Task.Write"]}, {"Task.Write"}),
        ([roles.AUTH0_PERMISSIONS], {"permissions": ["read:items"]}, {"read:items"}),
        ([roles.COGNITO_GROUPS], {"cognito:groups": ["staff"]}, {"staff"}),
        ([roles.OKTA_GROUPS], {"groups": ["Everyone"]}, {"Everyone"}),
        (["https://example.com/roles"], {"https://example.com/roles": ["a"]}, {"a"}),
        ([roles.KEYCLOAK_REALM], {"realm_access": "not-an-object"}, set()),
        ([roles.KEYCLOAK_REALM], {"realm_access": {"roles": [1, "ok", None]}}, {"ok"}),
    ],
)
def test_roles(paths: list[str], claims: dict[str, object], expected: set[str]) -> None:
    principal = provider(roles_claims=paths).principal_from({**BASE, **claims})
    assert principal.roles == expected
    assert principal.has_roles(*expected)


def test_fields() -> None:
    principal = provider().principal_from(
        {**BASE, "azp": "spa", "jti": "id-1", "scope": "a", "extra": {"x": 1}}
    )
    assert principal.provider == "p"
    assert principal.issuer == BASE["iss"]
    assert principal.subject == "alice"
    assert principal.client_id == "spa"
    assert principal.token_id == "id-1"
    assert principal.expires_at is not None
    assert int(principal.expires_at.timestamp()) == BASE["exp"]
    assert principal.claims["extra"] == {"x": 1}
    assert principal.has_scopes("a")
    assert not principal.has_scopes("a", "b")
