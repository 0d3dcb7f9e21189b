"""``LoginSettings``: how an app logs people in (browser login, sessions, accounts).

Configuration only: ``AuthBridge(login=LoginSettings(...))`` turns it into
routes (``authbridge.fastapi``). Nothing here opens a connection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigurationError
from ._accounts import AccountPolicy

SameSite = Literal["lax", "strict"]
"""The ``SameSite`` attribute of the session cookie."""

MIN_TTL = 1.0
"""Shortest lifetime accepted for a transaction or a session, in seconds."""


@dataclass(frozen=True)
class LoginSettings:
    """Browser login for an app with its own issuer ([AppIssuer][authbridge.AppIssuer]).

    With these settings the app's ``/oauth/authorize`` endpoint shows a login
    chooser (the local password and every login provider) and completes the
    authorization code flow of its clients (Swagger UI, SPAs, mobile apps);
    ``/auth/login`` ends a login in a server-side session instead (cookie,
    CSRF token, logout).

    Attributes:
        providers: Names of the providers offering login, in the chooser's
            order; ``None``: every configured provider whose login is
            enabled (a client id is set).
        local_password: Offer the local username and password form.
        accounts: How provider identities map to local accounts
            ([AccountPolicy][authbridge.client.AccountPolicy]).
        transaction_ttl: Seconds a login at a provider may take (state,
            nonce and PKCE verifier are kept this long, single use).
        session_ttl: Absolute lifetime of a session, in seconds.
        session_idle_ttl: A session unused this long ends.
        session_cookie: Name of the session cookie (``__Host-`` is prefixed
            on https).
        same_site: ``SameSite`` of the session cookie: ``"lax"`` (links from
            other sites arrive logged in) or ``"strict"``.
        after_login: Where a session login without ``next`` ends (a path of
            this app).
        after_logout: Where the browser goes after logging out (a path of
            this app).
        title: The chooser page's title.

    Raises:
        ConfigurationError: a non-positive or infinite lifetime, an idle lifetime longer
            than the absolute one, a cookie name that is not a token, a
            return path that is not a plain path of this app.
    """

    providers: Sequence[str] | None = None
    local_password: bool = True
    accounts: AccountPolicy = AccountPolicy()  # noqa: RUF009 - frozen, shared safely
    transaction_ttl: float = 600.0
    session_ttl: float = 8 * 3600.0
    session_idle_ttl: float = 3600.0
    session_cookie: str = "authbridge_session"
    same_site: SameSite = "lax"
    after_login: str = "/"
    after_logout: str = "/"
    title: str = "Log in"

    def __post_init__(self) -> None:
        if isinstance(self.providers, str):
            raise ConfigurationError(
                "providers_must_be_a_list",
                message=f"LoginSettings(providers=...) takes a list of names, e.g. "
                f"[{self.providers!r}]",
            )
        for label, value in (
            ("transaction_ttl", self.transaction_ttl),
            ("session_ttl", self.session_ttl),
            ("session_idle_ttl", self.session_idle_ttl),
        ):
            if not value >= MIN_TTL:
                raise ConfigurationError(
                    "non_positive_duration", message=f"{label} must be at least {MIN_TTL} s"
                )
            if not math.isfinite(value):
                raise ConfigurationError(
                    "non_finite_duration", message=f"{label} must be a finite number of seconds"
                )
        if self.session_idle_ttl > self.session_ttl:
            raise ConfigurationError(
                "idle_ttl_beyond_session_ttl",
                message="session_idle_ttl must not be longer than session_ttl",
            )
        if not _cookie_name(self.session_cookie):
            raise ConfigurationError(
                "invalid_cookie_name",
                message="session_cookie is letters, digits, '_' and '-' (no '__Host-' prefix: "
                "it is added on https)",
            )
        if self.same_site not in ("lax", "strict"):
            raise ConfigurationError("invalid_same_site", message="same_site is 'lax' or 'strict'")
        for label, path in (("after_login", self.after_login), ("after_logout", self.after_logout)):
            if not _plain_path(path):
                raise ConfigurationError(
                    "invalid_return_path",
                    message=f"{label} must be a path of this app starting with one '/', e.g. '/'",
                )


def _cookie_name(name: str) -> bool:
    return (
        0 < len(name) <= 64
        and name.isascii()
        and all(c.isalnum() or c in "_-" for c in name)
        and not name.lower().startswith(("__host-", "__secure-"))
    )


def _plain_path(path: str) -> bool:
    return (
        path.startswith("/")
        and not path.startswith(("//", "/\\"))
        and path.isascii()
        and all(0x21 <= ord(c) < 0x7F and c != "\\" for c in path)
    )
