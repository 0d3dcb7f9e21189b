"""Principal: normalised scopes and roles from each provider's claim layout."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from authbridge import (
    AuthBridge,
    ConfigurationError,
    Introspection,
    InvalidToken,
    OIDCProvider,
    Principal,
    ResourceServer,
    roles,
)
from authbridge._json import MAX_DEPTH
from authbridge.resource.principal import ReadOnlyClaims, ReadOnlyList
from authbridge.testing import FakeIssuer

NOW = int(time.time())
# A day ahead: the suite may run for minutes after this module is imported.
BASE = {"iss": "https://issuer.example.test", "exp": NOW + 86_400, "aud": "api", "sub": "alice"}


class _Omit:
    """The type of OMIT: a claim to leave out."""

    def __repr__(self) -> str:
        return "OMIT"  # the same in every process: test ids show it (pytest-xdist compares them)


OMIT = _Omit()


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


# -- claims are read-only, at every depth (a principal is shared through the cache) -----------

NESTED = {
    **BASE,
    "aud": ["api", "account"],
    "realm_access": {"roles": ["user"]},
    "resource_access": {"api": {"roles": ["editor"]}},
    "groups": [{"name": "staff", "tags": ["a"]}],
}


def mutations(claims: Any) -> list[Callable[[], object]]:
    """Every way of changing a claims mapping, its nested objects or its arrays."""
    roles = claims["realm_access"]["roles"]
    nested = claims["resource_access"]["api"]
    deep = claims["groups"][0]["tags"]

    def augmented_list() -> None:
        r = roles
        r += ["admin"]

    def augmented_dict() -> None:
        c = claims
        c |= {"sub": "mallory"}

    return [
        lambda: claims.__setitem__("sub", "mallory"),
        lambda: claims.__delitem__("sub"),
        lambda: claims.update(sub="mallory"),
        lambda: claims.setdefault("admin", True),
        lambda: claims.pop("sub"),
        claims.popitem,
        claims.clear,
        augmented_dict,
        lambda: nested.__setitem__("roles", ["admin"]),
        lambda: claims["realm_access"].update(roles=["admin"]),
        lambda: roles.append("admin"),
        lambda: roles.extend(["admin"]),
        lambda: roles.insert(0, "admin"),
        lambda: roles.__setitem__(0, "admin"),
        lambda: roles.__setitem__(slice(0, 1), ["admin"]),
        lambda: roles.__delitem__(0),
        lambda: roles.remove("user"),
        roles.pop,
        roles.clear,
        roles.sort,
        roles.reverse,
        lambda: roles.__imul__(2),
        augmented_list,
        lambda: deep.append("b"),
        lambda: claims["aud"].append("evil"),
        # __init__ again would refill the shared object in place.
        lambda: claims.__init__({"sub": "mallory"}),
        lambda: claims.__init__(sub="mallory"),
        lambda: nested.__init__({"roles": ["admin"]}),
        lambda: roles.__init__(["admin"]),
        deep.__init__,
    ]


@pytest.mark.parametrize("index", range(len(mutations(provider().principal_from(NESTED).claims))))
def test_claims_cannot_be_changed(index: int) -> None:
    source = copy.deepcopy(NESTED)
    principal = provider().principal_from(source)
    with pytest.raises(TypeError, match="read-only"):
        mutations(principal.claims)[index]()
    assert principal.claims == NESTED


def test_read_only_claims_read_compare_and_serialise_like_dicts() -> None:
    principal = provider(roles_claims=[roles.KEYCLOAK_REALM]).principal_from(copy.deepcopy(NESTED))
    claims = principal.claims
    assert claims == NESTED
    assert isinstance(claims, dict)
    assert isinstance(claims["aud"], list)
    assert isinstance(claims["realm_access"], dict)
    assert claims["realm_access"]["roles"] == ["user"]
    assert principal.roles == {"user"}
    assert json.loads(json.dumps(claims)) == NESTED
    assert json.loads(principal.model_dump_json())["claims"] == NESTED
    dumped = principal.model_dump()["claims"]
    assert dumped == NESTED
    dumped["realm_access"]["roles"].append("admin")  # model_dump gives plain, mutable copies
    assert claims["realm_access"]["roles"] == ["user"]
    mutable = copy.deepcopy(dict(claims))
    assert mutable == NESTED
    assert pickle.loads(pickle.dumps(principal)) == principal
    plain = claims.copy()
    plain["sub"] = "bob"  # copy() is a plain dict
    assert claims["sub"] == "alice"


def test_the_callers_mapping_is_copied() -> None:
    source = copy.deepcopy(NESTED)
    principal = provider().principal_from(source)
    source["sub"] = "mallory"
    source["admin"] = True
    assert principal.claims == NESTED
    # Nested containers handed out are read-only copies, never the parsed originals.
    assert principal.claims["realm_access"] is not source["realm_access"]
    assert principal.claims["aud"] is not source["aud"]


def _updated(claims: Any) -> dict[str, Any]:
    other: dict[str, Any] = {}
    other.update(claims)
    return other


def _matched(claims: Any) -> Any:
    match claims:
        case {"realm_access": {"roles": roles}}:
            return roles
    raise AssertionError


# Every way of getting at a nested array (the first access to it goes through each).
CHANNELS: dict[str, Callable[[Any], Any]] = {
    "getitem": lambda c: c["realm_access"]["roles"],
    "get": lambda c: c.get("realm_access").get("roles"),
    "items": lambda c: dict(c.items())["realm_access"]["roles"],
    "values": lambda c: next(v for v in c.values() if isinstance(v, dict) and "roles" in v)[
        "roles"
    ],
    "dict()": lambda c: dict(c)["realm_access"]["roles"],
    "splat": lambda c: {**c}["realm_access"]["roles"],
    "copy()": lambda c: c.copy()["realm_access"]["roles"],
    "update-other": lambda c: _updated(c)["realm_access"]["roles"],
    "or": lambda c: (c | {})["realm_access"]["roles"],
    "ror": lambda c: ({} | c)["realm_access"]["roles"],
    "copy.copy": lambda c: copy.copy(c)["realm_access"]["roles"],
    "deepcopy": lambda c: copy.deepcopy(c)["realm_access"]["roles"],
    "pickle": lambda c: pickle.loads(pickle.dumps(c))["realm_access"]["roles"],
    "iteration": lambda c: next(c[k] for k in c if k == "realm_access")["roles"],
    "match": _matched,
    "list-of-objects": lambda c: c["groups"][0]["tags"],
}


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_nested_arrays_are_read_only_through_every_channel(channel: str) -> None:
    principal = provider().principal_from(copy.deepcopy(NESTED))
    found = CHANNELS[channel](principal.claims)
    with pytest.raises(TypeError, match="read-only"):
        found.append("admin")
    assert principal.claims == NESTED
    assert CHANNELS[channel](principal.claims) == found


def test_validated_principals_are_read_only_too() -> None:
    """API verifiers build principals by validation: the same guarantee."""
    groups = {"staff": ["a"]}
    principal = Principal(provider="p", issuer="i", claims={"groups": groups, "t": ({"x": 1},)})
    groups["staff"].append("b")
    assert principal.claims == {"groups": {"staff": ["a"]}, "t": ({"x": 1},)}
    with pytest.raises(TypeError):
        principal.claims["groups"]["staff"].append("c")
    with pytest.raises(TypeError):
        principal.claims["t"][0]["x"] = 2


def test_a_mutation_attempt_in_one_request_is_not_seen_by_the_next(fake_issuer: Any) -> None:
    auth = AuthBridge(
        [fake_issuer.provider(roles_claims=[roles.KEYCLOAK_REALM])], transport=fake_issuer.transport
    )
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/promote")
    async def promote(user: Principal = Security(auth.principal)) -> dict[str, Any]:
        try:
            user.claims["realm_access"]["roles"].append("admin")
        except TypeError:
            return {"refused": True, "roles": sorted(user.roles)}
        return {"refused": False}

    @app.get("/me", response_model=Principal)
    async def me(user: Principal = Security(auth.principal)) -> Principal:
        return user

    token = fake_issuer.token(realm_access={"roles": ["user"]})
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        assert client.get("/promote", headers=headers).json() == {
            "refused": True,
            "roles": ["user"],
        }
        me_response = client.get("/me", headers=headers)
    assert me_response.status_code == 200
    assert me_response.json()["claims"]["realm_access"] == {"roles": ["user"]}


def test_an_empty_claims_mapping_cannot_be_filled_either() -> None:
    """A principal without claims shares its empty mapping too: `__init__` cannot fill it."""
    principal = Principal(provider="p", issuer="i")  # the default claims
    with pytest.raises(TypeError, match="read-only"):
        principal.claims.__init__({"admin": True})  # type: ignore[misc]
    with pytest.raises(TypeError, match="read-only"):
        principal.claims["admin"] = True
    empty = provider().principal_from({**BASE, "groups": []}).claims["groups"]
    with pytest.raises(TypeError, match="read-only"):
        empty.__init__(["admin"])
    assert principal.claims == {}
    assert empty == []


@dataclass
class _Holder:
    claims: dict[str, Any]


def test_rebuilt_through_their_type_they_stay_read_only() -> None:
    """Copies, pickles and `type(x)(...)` (as `dataclasses.asdict` does it) stay read-only."""
    claims = provider().principal_from(copy.deepcopy(NESTED)).claims
    rebuilt = [
        type(claims)(claims),
        type(claims)(sub="alice"),
        copy.copy(claims),
        copy.deepcopy(claims),
        pickle.loads(pickle.dumps(claims)),
        asdict(_Holder(claims))["claims"],  # type: ignore[arg-type]
    ]
    for other in rebuilt:
        assert type(other) is ReadOnlyClaims
        with pytest.raises(TypeError, match="read-only"):
            other["admin"] = True
    roles_list = claims["realm_access"]["roles"]
    for array in (
        type(roles_list)(["x"]),
        copy.copy(roles_list),
        asdict(_Holder(claims))["claims"]["aud"],
    ):
        assert type(array) is ReadOnlyList
        with pytest.raises(TypeError, match="read-only"):
            array.append("admin")
    assert rebuilt[0] == claims == NESTED
    assert type(claims)(sub="alice") == {"sub": "alice"}


def test_claims_copy_is_plain_at_every_depth() -> None:
    principal = provider().principal_from(copy.deepcopy(NESTED))
    plain = principal.claims_copy()
    assert plain == NESTED
    stack: list[Any] = [plain]
    while stack:  # every container exactly a dict or a list: changeable
        item = stack.pop()
        assert type(item) in (dict, list)
        stack.extend(
            v
            for v in (item.values() if isinstance(item, dict) else item)
            if isinstance(v, dict | list)
        )
    plain["sub"] = "bob"
    plain["realm_access"]["roles"].append("admin")
    plain["groups"][0]["tags"].clear()
    assert principal.claims == NESTED
    assert principal.claims_copy() == NESTED  # a new copy each time


def test_the_refusal_names_a_copy_that_works() -> None:
    """What the TypeError recommends gives changeable claims; a deep copy of dict(...) does not."""
    claims = provider().principal_from(copy.deepcopy(NESTED)).claims
    with pytest.raises(TypeError) as caught:
        claims["realm_access"]["roles"].append("admin")
    assert "principal.claims_copy()" in str(caught.value)
    shallow_plain = copy.deepcopy(dict(claims))
    with pytest.raises(TypeError):  # what the message used to recommend: still read-only inside
        shallow_plain["realm_access"]["roles"].append("admin")


# -- any nesting, without recursion ------------------------------------------------------------

DEPTH_PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def nest(depth: int, shape: str) -> Any:
    """``"leaf"`` inside ``depth`` arrays, objects or tuples (or all in turn), built in a loop."""
    value: Any = "leaf"
    for level in range(depth):
        kind = shape if shape != "mixed" else ("array", "object", "tuple")[level % 3]
        value = {
            "array": lambda v: [v, 1],
            "object": lambda v: {"a": v},
            "tuple": lambda v: (v,),
        }[kind](value)
    return value


def bottom(value: Any) -> tuple[int, list[Any]]:
    """How deep ``value`` nests, and every container on the way down."""
    seen: list[Any] = []
    while isinstance(value, dict | list | tuple):
        seen.append(value)
        value = value["a"] if isinstance(value, dict) else value[0]
    return len(seen), seen


@given(depth=st.integers(0, 3000), shape=st.sampled_from(["array", "object", "tuple", "mixed"]))
@DEPTH_PROPERTY
@example(depth=5000, shape="array")
@example(depth=5000, shape="object")
def test_any_nesting_is_frozen_and_copied_without_recursion(depth: int, shape: str) -> None:
    source = {"x": nest(depth, shape), "sub": "alice"}
    for principal in (
        provider().principal_from(source),  # claims read lazily, as for verified tokens
        Principal(provider="p", issuer="i", claims=source),  # validated: copied deeply at once
    ):
        found, path = bottom(principal.claims["x"])
        assert found == depth
        for container in path:
            if isinstance(container, dict | list):
                with pytest.raises(TypeError, match="read-only"):
                    container.clear()
        found, path = bottom(principal.claims_copy()["x"])
        assert found == depth
        assert all(type(c) in (dict, list, tuple) for c in path)
        for container in path:
            if isinstance(container, dict | list):
                container.clear()  # the plain copy changes; the claims do not
        assert bottom(principal.claims["x"])[0] == depth


# -- deeply nested JWT claims, through the whole server ----------------------------------------


def _deep_claims(depth: int) -> dict[str, Any]:
    """Token claims whose deepest value is ``depth`` levels below the claims object (one level)."""
    return {"deep": nest(depth - 1, "object")} if depth > 1 else {}


@given(depth=st.integers(2, 900))
@DEPTH_PROPERTY
@example(depth=MAX_DEPTH)
@example(depth=MAX_DEPTH + 1)
def test_nested_token_claims_are_a_principal_or_malformed(fake_issuer: Any, depth: int) -> None:
    token = fake_issuer.token(**_deep_claims(depth))

    async def run() -> Principal | InvalidToken:
        async with ResourceServer(
            [fake_issuer.provider()], transport=fake_issuer.transport
        ) as server:
            try:
                return await server.verify(token)
            except InvalidToken as exc:
                return exc

    result = asyncio.run(run())
    if depth <= MAX_DEPTH:
        assert isinstance(result, Principal), result
        assert bottom(result.claims["deep"])[0] == depth - 1
        assert json.loads(result.model_dump_json())["claims"]["deep"] == _deep_claims(depth)["deep"]
        assert bottom(result.claims_copy()["deep"])[0] == depth - 1
    else:
        assert isinstance(result, InvalidToken)
        assert result.reason == "malformed_payload"


def test_deeply_nested_token_claims_over_http_are_never_a_500() -> None:
    fake = FakeIssuer()
    auth = AuthBridge([fake.provider()], transport=fake.transport)
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/me", response_model=Principal)
    async def me(user: Principal = Security(auth.principal)) -> Principal:
        return user

    with TestClient(app, raise_server_exceptions=False) as client:
        statuses = {
            depth: client.get(
                "/me", headers={"Authorization": f"Bearer {fake.token(**_deep_claims(depth))}"}
            )
            for depth in (MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 300, 900)
        }
    assert {d: r.status_code for d, r in statuses.items()} == {
        MAX_DEPTH - 1: 200, MAX_DEPTH: 200, MAX_DEPTH + 1: 401, 300: 401, 900: 401,
    }  # fmt: skip
    assert statuses[MAX_DEPTH].json()["claims"]["deep"] == _deep_claims(MAX_DEPTH)["deep"]


# -- the subject claim --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject_claims", "claims", "expected"),
    [
        (("sub",), {"sub": "alice", "username": "bob"}, "alice"),
        (("sub",), {"sub": OMIT, "username": "bob"}, None),
        (("sub", "username"), {"sub": OMIT, "username": "bob"}, "bob"),
        (("sub", "username"), {"sub": "alice", "username": "bob"}, "alice"),
        (("username", "sub"), {"sub": "alice", "username": "bob"}, "bob"),
        (("username",), {"sub": "alice", "username": OMIT}, None),
        ("username", {"sub": "alice", "username": "bob"}, "bob"),  # one claim, not its letters
        (("oid", "sub"), {"sub": "alice", "oid": "00000000-0000"}, "00000000-0000"),
    ],
    ids=repr,
)
def test_subject_claims(subject_claims: Any, claims: dict[str, Any], expected: str | None) -> None:
    claims = {k: v for k, v in {**BASE, **claims}.items() if v is not OMIT}
    principal = provider(subject_claims=subject_claims).principal_from(claims)
    assert principal.subject == expected


@pytest.mark.parametrize("value", [42, True, None, "", ["bob"], {"name": "bob"}], ids=repr)
def test_subject_claim_of_the_wrong_type_refuses_the_token(value: Any) -> None:
    p = provider(subject_claims=("username", "sub"))
    with pytest.raises(InvalidToken) as caught:
        p.principal_from({**BASE, "username": value})
    assert (caught.value.reason, caught.value.claim, caught.value.provider) == (
        "invalid_claim_type",
        "username",
        "p",
    )


@pytest.mark.parametrize("subject_claims", [(), [""], ("sub", ""), [None]], ids=repr)
def test_subject_claims_must_name_claims(subject_claims: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        provider(subject_claims=subject_claims)
    assert caught.value.reason == "subject_claims_required"
    assert "username" in str(caught.value)


def test_jwt_subject_from_another_claim(fake_issuer: Any) -> None:
    auth = AuthBridge(
        [fake_issuer.provider(subject_claims=("sub", "username"))], transport=fake_issuer.transport
    )
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/me")
    async def me(user: Principal = Security(auth.principal)) -> dict[str, Any]:
        return {"subject": user.subject}

    with TestClient(app) as client:
        ok = client.get(
            "/me", headers={"Authorization": f"Bearer {fake_issuer.token(None, username='bob')}"}
        )
        bad = client.get(
            "/me", headers={"Authorization": f"Bearer {fake_issuer.token(None, username=7)}"}
        )
    assert ok.json() == {"subject": "bob"}
    assert bad.status_code == 401


def _id_without_exp(value: object) -> str:
    """``repr`` with ``exp`` (the import time plus a day) left out: the same id in every process."""
    if isinstance(value, dict):
        value = {name: member for name, member in value.items() if name != "exp"}
    return repr(value)


INTROSPECTED = {
    "active": True,
    "aud": "api",
    "token_type": "Bearer",
    "username": "jdoe",
    "exp": NOW + 86_400,
}


@pytest.mark.parametrize(
    ("subject_claims", "answer", "expected"),
    [
        (("sub",), INTROSPECTED, None),
        (("sub", "username"), INTROSPECTED, "jdoe"),
        (("sub", "username"), {**INTROSPECTED, "sub": "u-1"}, "u-1"),
        (("sub", "username"), {**INTROSPECTED, "username": 5}, "invalid_claim_type"),
        (("sub", "username"), {**INTROSPECTED, "sub": ""}, "invalid_claim_type"),
        (("sub", "login"), {**INTROSPECTED, "login": ["x"]}, "invalid_claim_type"),
    ],
    ids=_id_without_exp,
)
async def test_introspection_subject_from_another_claim(
    subject_claims: tuple[str, ...], answer: dict[str, Any], expected: str | None
) -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json=answer))
    p = provider(
        subject_claims=subject_claims,
        introspection=Introspection(
            client_id="api", client_secret="s", endpoint=BASE["iss"] + "/i"
        ),
    )
    server = ResourceServer([p], transport=transport)
    await server.start(warm_up=False)
    try:
        result: Principal | InvalidToken = await server.verify("opaque-token-0123456789")
    except InvalidToken as exc:
        result = exc
    finally:
        await server.aclose()
    if expected == "invalid_claim_type":
        assert isinstance(result, InvalidToken)
        assert result.reason == "invalid_claim_type"
        assert result.claim in subject_claims
    else:
        assert isinstance(result, Principal)
        assert result.subject == expected


def test_trusted_construction_with_actors_equals_a_validated_model() -> None:
    principal = provider().principal_from(
        {**BASE, "act": {"sub": "robot", "client_id": "robot", "act": {"sub": "hub"}}, "jti": "j2"}
    )
    validated = Principal.model_validate(principal.model_dump())
    assert principal == validated
    assert principal.model_fields_set == validated.model_fields_set == set(Principal.model_fields)
    assert principal.model_dump_json() == validated.model_dump_json()
    assert json.loads(principal.model_dump_json())["actors"] == ["robot", "hub"]
