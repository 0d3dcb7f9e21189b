"""Principal.actors from every provider's act claim (RFC 8693 §4.1), and its refusals."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from authbridge import Introspection, InvalidToken, OIDCProvider, Principal, ResourceServer

NOW = int(time.time())
BASE = {"iss": "https://issuer.example.test", "exp": NOW + 86_400, "aud": "api", "sub": "alice"}
OMIT = object()
INTROSPECTED = {"active": True, "aud": "api", "token_type": "Bearer", "exp": NOW + 86_400}


def provider(**kwargs: Any) -> OIDCProvider:
    return OIDCProvider("p", issuer=BASE["iss"], audience="api", **kwargs)


def chain(*subs: str) -> dict[str, Any]:
    """An ``act`` claim naming ``subs``, the current actor first."""
    act: dict[str, Any] = {}
    for sub in reversed(subs):
        act = {"sub": sub, "client_id": sub, **({"act": act} if act else {})}
    return act


@pytest.mark.parametrize(
    ("act", "actors"),
    [
        (OMIT, ()),
        (chain("robot"), ("robot",)),
        (chain("robot", "hub", "user-app"), ("robot", "hub", "user-app")),
        ({"sub": "robot", "iss": "https://other.example"}, ("robot",)),  # other members ignored
        (chain(*(f"a{i}" for i in range(8))), tuple(f"a{i}" for i in range(8))),
    ],
    ids=lambda value: "absent" if value is OMIT else repr(value)[:60],
)
def test_actors_from_the_act_chain(act: Any, actors: tuple[str, ...]) -> None:
    claims = {**BASE, "client_id": "robot"} | ({} if act is OMIT else {"act": act})
    principal = provider().principal_from(claims)
    assert principal.actors == actors
    assert principal.delegated is bool(actors)
    assert principal.subject == "alice"  # the user the token speaks for, delegated or not


@pytest.mark.parametrize(
    "act",
    [
        None,
        "robot",
        ["robot"],
        42,
        {},
        {"sub": ""},
        {"sub": 7},
        {"sub": None},
        {"client_id": "robot"},
        {"sub": "robot", "act": None},
        {"sub": "robot", "act": "hub"},
        {"sub": "robot", "act": {"client_id": "hub"}},
        {"sub": "robot", "act": [{"sub": "hub"}]},
        chain(*(f"a{i}" for i in range(9))),
        chain(*(f"a{i}" for i in range(400))),
    ],
    ids=lambda act: repr(act)[:60],
)
def test_a_malformed_act_refuses_the_token(act: Any) -> None:
    with pytest.raises(InvalidToken) as caught:
        provider().principal_from({**BASE, "act": act})
    assert (caught.value.reason, caught.value.claim, caught.value.provider) == (
        "invalid_claim_type",
        "act",
        "p",
    )


def test_actors_of_a_signed_token_and_an_introspected_one(fake_issuer: Any) -> None:
    async def run() -> tuple[Principal, Principal, InvalidToken]:
        async with ResourceServer(
            [fake_issuer.provider()], transport=fake_issuer.transport
        ) as server:
            direct = await server.verify(fake_issuer.token(subject="alice"))
            robot = await server.verify(fake_issuer.token(subject="alice", act=chain("robot")))
            with pytest.raises(InvalidToken) as caught:
                await server.verify(fake_issuer.token(subject="alice", act=["robot"]))
            return direct, robot, caught.value

    direct, robot, refused = asyncio.run(run())
    assert (direct.actors, direct.delegated) == ((), False)
    assert (robot.actors, robot.delegated) == (("robot",), True)
    assert robot.claims["act"] == {"sub": "robot", "client_id": "robot"}
    assert (refused.reason, refused.claim) == ("invalid_claim_type", "act")

    answer = {**INTROSPECTED, "sub": "alice", "act": chain("robot", "hub")}
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json=answer))
    p = provider(
        introspection=Introspection(client_id="api", client_secret="s", endpoint=BASE["iss"] + "/i")
    )

    async def introspected() -> Principal:
        async with ResourceServer([p], transport=transport) as server:
            return await server.verify("opaque-token-0123456789")

    assert asyncio.run(introspected()).actors == ("robot", "hub")


def test_principals_built_directly_are_not_delegated() -> None:
    principal = Principal(provider="app", issuer=BASE["iss"], subject="alice")
    assert (principal.actors, principal.delegated) == ((), False)
    assert principal.model_copy(update={"issuer": "x"}).actors == ()
