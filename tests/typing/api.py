"""The public API as a user writes it; checked with ``mypy --strict`` (not executed)."""

from __future__ import annotations

from fastapi import FastAPI, Security

from authbridge import (
    AuthBridge,
    AuthBridgeError,
    InvalidToken,
    OIDCProvider,
    Principal,
    ProviderUnavailable,
    roles,
)
from authbridge.testing import FakeIssuer

auth = AuthBridge(
    providers=[
        OIDCProvider(
            "hydra", issuer="https://auth.example.org/", audience="https://api.example.org"
        ),
        OIDCProvider(
            "keycloak",
            issuer="https://kc.example.org/realms/main",
            audience=["api", "account"],
            roles_claims=[roles.KEYCLOAK_REALM, roles.keycloak_client("api")],
            token_type="strict",
            leeway=10,
        ),
        OIDCProvider(
            "cognito", issuer="https://cognito-idp.eu-west-1.amazonaws.com/pool", client_ids=["abc"]
        ),
    ],
    cache_size=1000,
)
app = FastAPI(lifespan=auth.lifespan)


@app.get("/items")
async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> list[str]:
    scopes: frozenset[str] = user.scopes
    subject: str | None = user.subject
    return sorted(scopes) + ([subject] if subject else [])


@app.get("/maybe")
async def maybe(user: Principal | None = Security(auth.optional_principal)) -> bool:
    return user is not None and user.has_scopes("a") and user.has_roles("admin")


async def verify_outside_fastapi(token: str) -> str:
    async with auth:
        try:
            principal = await auth.verify(token)
        except InvalidToken as exc:
            return exc.reason
        except ProviderUnavailable:
            return "unavailable"
        except AuthBridgeError as exc:
            return exc.code
    return principal.provider


def mint() -> str:
    fake = FakeIssuer()
    bridge = AuthBridge(providers=[fake.provider()], transport=fake.transport)
    assert bridge.principal is not None
    return fake.token(subject="alice", scopes=["items:read"], expires_in=60) + fake.bad.expired()
