"""The demo's accounts, clients and stores: what ``python -m authbridge demo`` registers.

Everything here is FastAPI-free: the demo's users and clients in the app's
store (`prepare_demo_store`), its users and client at the embedded test
issuer (`prepare_demo_provider`), the secrets made at each start
(`DemoCredentials`), the account hook of its browser login, and the store
the demo runs on (`demo_store`: a SQL URL, with Redis beside it on request).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .client import AccountPolicy, ExternalIdentity, LoginSettings
from .issuer import TOKEN_EXCHANGE
from .issuer._passwords import hash_password
from .issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from .store import ClientRecord, Store, UserRecord
from .store._composite import open_store
from .testing import FakeIssuer

DEMO_AUDIENCE = "https://demo-api.example.test"

DEMO_USERS: dict[str, tuple[str, ...]] = {
    "reader": ("items:read",),
    "writer": ("items:read", "items:write"),
    "admin": ("items:read", "items:write", "admin"),
}
"""The test issuer's demo subjects and their scopes (pre-minted tokens)."""

GARAGE_SCOPE = "garage:open"
"""The scope of the garage route: what alice lets the garage robot do."""

DEMO_SCOPES: dict[str, str] = {
    "items:read": "Read the items",
    "items:write": "Add items",
    "admin": "The administrators' route",
    GARAGE_SCOPE: "Open the garage",
}
"""The scopes the demo API's own issuer grants."""

LOCAL_USERS: dict[str, tuple[str, ...]] = {
    "alice": ("items:read", "items:write", GARAGE_SCOPE),
    "bob": ("items:read",),
}
"""The demo's local accounts (password grant) and the scopes each may be granted."""

GARAGE_OWNER = "alice"
"""The local user whose garage the robot opens (the only one holding `GARAGE_SCOPE`)."""

CLI_CLIENT = "demo-cli"
"""A public client (no secret) with the password and refresh-token grants, for curl."""

MACHINE_CLIENT = "robot"
"""A confidential machine client (client credentials)."""

MACHINE_SCOPES: tuple[str, ...] = ("items:read",)

GARAGE_CLIENT = "garage-robot"
"""A confidential client that acts for users: it only holds tokens they delegate to it.

It has no client-credentials grant (it is nobody on its own): the refresh
grant, to renew a delegated token with its own secret, and token exchange.
"""

GARAGE_SCOPES: tuple[str, ...] = (GARAGE_SCOPE,)

DELEGATION_TTL = 3600
"""How long alice's delegation to the garage robot lasts in the printed lines (seconds)."""

PROVIDER = "demo"
"""The embedded test issuer's name: ``Principal.provider`` of its tokens, its login's key."""

PROVIDER_LABEL = "Demo provider (embedded)"
"""Its button on the login chooser."""

LOGIN_CLIENT = "demo-api"
"""The demo API's client id at the embedded test issuer (confidential: it has a secret)."""

PROVIDER_USERS: dict[str, tuple[str, bool]] = {
    "carol": ("carol@demo.example", True),
    "dave": ("dave@demo.example", False),
}
"""The embedded provider's users who log in with a password: username → (email, verified)."""

PROVIDER_DEFAULT_SCOPES = frozenset({"items:read"})
"""Scopes of an account made at a first login at the provider."""

WRITER_DOMAIN = "@demo.example"
"""A first login with a *verified* address in this domain also gets ``items:write``."""

DEMO_PAGE = "/demo"
"""The server-rendered page: the session's account and the guide to every flow."""


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    """The passwords of the local users and the clients' secrets, new at each start.

    Attributes:
        passwords: Username → password.
        robot_secret: The client secret of `MACHINE_CLIENT`.
        provider_passwords: The embedded provider's users' passwords.
        login_secret: The demo API's client secret at the embedded provider.
        garage_secret: The client secret of `GARAGE_CLIENT`.
    """

    passwords: Mapping[str, str] = field(repr=False)
    robot_secret: str = field(repr=False)
    provider_passwords: Mapping[str, str] = field(default_factory=dict, repr=False)
    login_secret: str = field(default="", repr=False)
    garage_secret: str = field(default="", repr=False)

    @classmethod
    def generate(cls) -> DemoCredentials:
        """Random passwords (URL- and shell-safe characters) and generated client secrets."""
        return cls(
            passwords={name: secrets.token_urlsafe(12) for name in LOCAL_USERS},
            robot_secret=new_secret(CLIENT_SECRET_PREFIX),
            provider_passwords={name: secrets.token_urlsafe(12) for name in PROVIDER_USERS},
            login_secret=secrets.token_urlsafe(24),
            garage_secret=new_secret(CLIENT_SECRET_PREFIX),
        )


def demo_clients(credentials: DemoCredentials, *, now: float) -> tuple[ClientRecord, ...]:
    """The clients the demo registers in its store (with this start's secrets)."""
    return (
        ClientRecord(
            client_id=CLI_CLIENT,
            name="The demo's command-line client (curl)",
            auth_method="none",
            grant_types=frozenset({"password", "refresh_token", TOKEN_EXCHANGE}),
            scopes=frozenset(DEMO_SCOPES),
            created_at=now,
        ),
        ClientRecord(
            client_id=MACHINE_CLIENT,
            name="A machine client of the demo",
            auth_method="client_secret_basic",
            secret_hash=hash_secret(credentials.robot_secret, "client_secret"),
            grant_types=frozenset({"client_credentials"}),
            scopes=frozenset(MACHINE_SCOPES),
            created_at=now,
        ),
        ClientRecord(
            client_id=GARAGE_CLIENT,
            name="The garage robot (acts for the users who delegate to it)",
            auth_method="client_secret_basic",
            secret_hash=hash_secret(credentials.garage_secret, "client_secret"),
            grant_types=frozenset({"refresh_token", TOKEN_EXCHANGE}),
            scopes=frozenset(GARAGE_SCOPES),
            created_at=now,
        ),
    )


async def prepare_demo_store(store: Store, credentials: DemoCredentials) -> None:
    """Create the demo's users and clients in ``store``, or reset them if they exist.

    An existing account keeps its id (the ``sub`` of its tokens) and gets the
    new password, its demo scopes and ``disabled=False``; its refresh tokens
    end, as after ``authbridge users passwd``. The clients are registered
    again with the new secrets, so the tokens the garage robot refreshes with
    the old secret are refused too.
    """
    now = time.time()
    for username, scopes in LOCAL_USERS.items():
        password_hash = hash_password(credentials.passwords[username])
        existing = await store.users.by_username(username)
        if existing is None:
            await store.users.add(
                UserRecord(
                    id=secrets.token_urlsafe(16),
                    username=username,
                    password_hash=password_hash,
                    scopes=frozenset(scopes),
                    created_at=now,
                )
            )
            continue
        await store.users.update(
            replace(existing, password_hash=password_hash, scopes=frozenset(scopes), disabled=False)
        )
        await store.refresh.revoke_for(now=now, reason="password_changed", subject=existing.id)
    for client in demo_clients(credentials, now=now):
        existing_client = await store.clients.get(client.client_id)
        if existing_client is None:
            await store.clients.add(client)
        else:
            await store.clients.update(replace(client, created_at=existing_client.created_at))


def prepare_demo_provider(
    issuer: FakeIssuer, credentials: DemoCredentials, *, resource: str
) -> None:
    """Register the demo API at the embedded test issuer, and its users who log in there.

    The client `LOGIN_CLIENT` (``credentials.login_secret``) may redirect only
    to ``{resource}/oauth/callback`` and, after logging out, to the demo page.
    """
    issuer.add_client(
        LOGIN_CLIENT,
        credentials.login_secret,
        redirect_uris=[f"{resource}/oauth/callback"],
        post_logout_redirect_uris=[f"{resource}{DEMO_PAGE}"],
    )
    for username, (email, verified) in PROVIDER_USERS.items():
        issuer.add_user(
            username,
            credentials.provider_passwords[username],
            email=email,
            email_verified=verified,
            name=username.capitalize(),
        )


async def first_login(identity: ExternalIdentity, proposed: UserRecord) -> UserRecord:
    """The demo's account hook: a verified address in `WRITER_DOMAIN` may also write."""
    email = identity.email or ""
    if identity.email_verified and email.endswith(WRITER_DOMAIN):
        return replace(proposed, scopes=proposed.scopes | {"items:write"})
    return proposed


def demo_login_settings() -> LoginSettings:
    """Browser login of the demo: both ways in, accounts made at first login, the demo page."""
    return LoginSettings(
        accounts=AccountPolicy(default_scopes=PROVIDER_DEFAULT_SCOPES, on_first_login=first_login),
        after_login=DEMO_PAGE,
        after_logout=DEMO_PAGE,
        title="Log in to the authbridge demo",
    )


def demo_tokens(issuer: FakeIssuer, *, expires_in: float = 3600) -> dict[str, str]:
    """One token per demo user, valid for ``expires_in`` seconds."""
    return {
        name: issuer.token(subject=name, scopes=scopes, expires_in=expires_in)
        for name, scopes in DEMO_USERS.items()
    }


REDIS_PREFIX = "authbridge-demo:"
"""The demo's Redis key prefix by default: its keys stay apart from an app's (``authbridge:``)."""


def demo_store(url: str, *, redis: str | None = None, redis_prefix: str = REDIS_PREFIX) -> Store:
    """The store the demo runs on: the SQL database at ``url``, with Redis beside it.

    Without ``redis``, the database holds everything. With it, one store whose
    durable records (users, clients, refresh tokens, keys, delegations,
    revocations) live in the database and whose short-lived state (login
    transactions, codes, rate limits, replay caches) lives in Redis under
    ``redis_prefix``, as several instances of an app share them. Nothing
    connects before ``start()``.

    Raises:
        ConfigurationError: an unsupported URL, or a driver (asyncpg, redis) missing.
    """
    return open_store(url, redis=redis, redis_prefix=redis_prefix)
