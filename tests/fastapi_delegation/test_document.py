"""The delegation routes in the OpenAPI document, and the AuthBridge options around them."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from openapi_spec_validator import validate

from authbridge import AppIssuer, AuthBridge, ConfigurationError
from authbridge.testing import FakeIssuer

from .support import ALICE, ROBOT, SCOPES, build, running

KEK = base64.urlsafe_b64encode(bytes(range(32))).decode()


def document_of(fake: FakeIssuer, **options: Any) -> dict[str, Any]:
    app, _ = build("sqlite+aiosqlite:///:memory:", fake, **options)
    document = app.openapi()
    validate(document)
    return document


def test_the_routes_are_documented_with_their_models(fake_issuer: FakeIssuer) -> None:
    document = document_of(fake_issuer)
    item = document["paths"]["/me/delegations"]
    create, listing = item["post"], item["get"]
    revoke = document["paths"]["/me/delegations/{delegation_id}"]["delete"]
    schemas = document["components"]["schemas"]

    body = create["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DelegationCreate"
    }
    request = schemas["DelegationCreate"]
    assert request["required"] == ["actor", "expires_in"]
    assert request["additionalProperties"] is False
    assert set(request["properties"]) == {
        "actor", "scope", "audience", "expires_in", "label", "may_delegate",
    }  # fmt: skip
    assert request["properties"]["label"]["maxLength"] == 200
    assert request["properties"]["expires_in"]["exclusiveMinimum"] == 0

    def ref(operation: dict[str, Any], status: str) -> str:
        return operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]

    assert ref(create, "201").endswith("/DelegationCreated")
    assert ref(listing, "200").endswith("/DelegationList")
    assert set(revoke["responses"]) >= {"204", "401", "403", "404"}
    assert "content" not in revoke["responses"]["204"]
    for operation in (create, listing, revoke):
        assert "422" not in operation["responses"]  # never sent: refusals are OAuth errors
        assert ref(operation, "4XX").endswith("/OAuthErrorBody")
        assert {"401", "403", "503"} <= set(operation["responses"])
        assert operation["security"][0] == {"BearerToken": []}
        assert operation["tags"] == ["delegations"]
    for status in ("400", "413", "415", "429"):
        assert ref(create, status).endswith("/OAuthErrorBody")
    assert ref(revoke, "404").endswith("/OAuthErrorBody")
    # A 403 is an OAuth error (another provider's token) or the usual refusal body.
    forbidden = listing["responses"]["403"]
    alternatives = forbidden["content"]["application/json"]["schema"]["anyOf"]
    assert alternatives[0] == {"$ref": "#/components/schemas/OAuthErrorBody"}
    assert alternatives[1]["title"] == "AuthRefusal"
    assert "delegated token" in forbidden["description"]
    assert "delegated token" not in create["responses"]["403"]["description"]
    assert [p["name"] for p in listing["parameters"]] == ["include_inactive"]
    # The robot's token is described, refresh token included.
    assert "refresh_token" in schemas["DelegatedToken"]["properties"]
    assert "parent" in schemas["Delegation"]["properties"]


def test_a_required_scope_is_documented(fake_issuer: FakeIssuer) -> None:
    document = document_of(fake_issuer, delegations_scope="items:write")
    create = document["paths"]["/me/delegations"]["post"]
    assert create["security"][0] == {"BearerToken": ["items:write"]}
    assert "Requires scopes: `items:write`." in create["description"]


def test_no_issuer_no_routes_and_they_can_be_left_out(fake_issuer: FakeIssuer) -> None:
    document = document_of(fake_issuer, delegations=False)
    assert not [path for path in document["paths"] if "delegations" in path]
    assert "DelegationCreate" not in document["components"].get("schemas", {})
    plain = AuthBridge([fake_issuer.provider()], transport=fake_issuer.transport)
    assert plain.delegations is False


def test_the_scope_option_names_a_scope_of_the_issuer(fake_issuer: FakeIssuer) -> None:
    issuer = AppIssuer("https://api.example.test", store="sqlite+aiosqlite:///:memory:",
                       scopes=SCOPES, key_encryption_key=KEK)  # fmt: skip
    with pytest.raises(ConfigurationError) as caught:
        AuthBridge([], issuer=issuer, delegations_scope="delegations:manage")
    assert caught.value.reason == "unknown_delegations_scope"
    assert "delegations:manage" in str(caught.value)
    with pytest.raises(ConfigurationError):
        AuthBridge([fake_issuer.provider()], delegations_scope="items:write")


async def test_delegations_scope_is_required_and_delegations_false_serves_nothing(
    sqlite_store_url: str, fake_issuer: FakeIssuer, tmp_path: Any
) -> None:
    async with running(sqlite_store_url, fake_issuer, delegations_scope="items:write") as h:
        without = h.own_token(scopes={"garage:open"})
        refused = await h.create(without)
        assert refused.status_code == 403
        challenge = refused.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="items:write"' in challenge
        assert (await h.listed(without)).status_code == 403
        made = await h.create(h.own_token(), scope="garage:open")
        assert made.status_code == 201
    other = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    async with running(other, fake_issuer, delegations=False) as h:
        assert (await h.create(h.own_token())).status_code == 404
        assert (await h.listed(h.own_token())).status_code == 404
        # The issuer still mints delegated tokens for code that asks it.
        principal = await h.auth.verify(h.own_token())
        record, token = await h.runtime.delegations.create(
            principal, actor=ROBOT, scopes=["garage:open"], audience=None, expires_in=60
        )
        assert record.user_id == ALICE
        assert (await h.garage(token["access_token"])).json()["actors"] == [ROBOT]
