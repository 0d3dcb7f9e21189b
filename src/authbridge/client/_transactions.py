"""Login transactions: what the callback needs to finish one login, kept single-use in the store.

A transaction is a JSON record in ``store.one_time`` of kind ``"login"``,
keyed by the keyed SHA-256 hash of its ``state`` (the plain ``state`` is never
stored: it is the key), living ``transaction_ttl`` seconds, and taken
atomically at the callback: it is gone whatever the outcome, so a replayed,
expired or unknown ``state`` all look alike (``state_unknown``).

The browser that started the login is bound by the SHA-256 of its
browser-binding cookie value, compared in constant time at the callback.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from .._clock import Clock
from ..errors import LoginError
from ..store import OneTimeStore

__all__ = [
    "LOGIN_KIND",
    "MAX_STATE_LENGTH",
    "LoginPurpose",
    "LoginTransaction",
    "LoginTransactions",
    "browser_hash",
    "new_secret_value",
    "same_browser",
    "transaction_key",
]

LOGIN_KIND = "login"
"""The ``store.one_time`` kind of login transactions (also the hash label of their key)."""

MAX_STATE_LENGTH = 512
"""A longer ``state`` is unknown without a store lookup (ours are 43 characters)."""

LoginPurpose = Literal["authorize", "session", "link"]
"""Why the login runs: the app's own authorize endpoint, a browser session, or linking."""

PURPOSES: frozenset[str] = frozenset({"authorize", "session", "link"})

_TEXT = re.compile(r"[!-~]+")  # printable ASCII, no space


def new_secret_value() -> str:
    """256 bits from the OS CSPRNG, base64url (43 characters): a state, verifier or nonce."""
    return secrets.token_urlsafe(32)


def transaction_key(state: str) -> str:
    """The store key of the transaction whose ``state`` this is: hex SHA-256 over a label."""
    data = LOGIN_KIND.encode("ascii") + b"\0" + state.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def browser_hash(cookie_value: str) -> str:
    """What a transaction keeps of the browser-binding cookie: hex SHA-256 over a label."""
    data = b"browser\0" + cookie_value.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def same_browser(cookie_value: str | None, stored_hash: str) -> bool:
    """Whether the callback's cookie value is the transaction's (compared in constant time)."""
    if not cookie_value:
        return False
    return hmac.compare_digest(browser_hash(cookie_value), stored_hash)


@dataclass(frozen=True, slots=True)
class LoginTransaction:
    """One pending login, as stored between the redirect and the callback.

    Attributes:
        provider: The provider's name: the callback uses this provider,
            never one named by the query or the path.
        redirect_uri: The callback URL sent in the authorization request.
        browser: SHA-256 of the browser-binding cookie value.
        purpose: ``"authorize"``, ``"session"`` or ``"link"``.
        created_at: When the login started (POSIX seconds).
        nonce: The OIDC nonce sent, or ``None``.
        code_verifier: The PKCE verifier (43 characters, 256 bits), or
            ``None`` for a provider without PKCE. Never logged.
        return_to: Where to go after a session login (a same-origin path).
        authorize: The app's pending authorize request (purpose ``authorize``).
        link_user: The account to link the identity to (purpose ``link``).
    """

    provider: str
    redirect_uri: str
    browser: str = field(repr=False)
    purpose: LoginPurpose
    created_at: float
    nonce: str | None = field(default=None, repr=False)
    code_verifier: str | None = field(default=None, repr=False)
    return_to: str | None = None
    authorize: Mapping[str, Any] | None = field(default=None, repr=False)
    link_user: str | None = None

    def to_json(self) -> bytes:
        """The stored form."""
        record = {
            "provider": self.provider,
            "redirect_uri": self.redirect_uri,
            "browser": self.browser,
            "purpose": self.purpose,
            "created_at": self.created_at,
            "nonce": self.nonce,
            "code_verifier": self.code_verifier,
            "return_to": self.return_to,
            "authorize": dict(self.authorize) if self.authorize is not None else None,
            "link_user": self.link_user,
        }
        return json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> LoginTransaction:
        """Read a stored record.

        Raises:
            LoginError: ``state_unknown`` when it is not one (never trusted half-read).
        """
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise TypeError
            purpose = record["purpose"]
            authorize = record.get("authorize")
            created_at = record["created_at"]
            if (
                purpose not in PURPOSES
                or not all(isinstance(record[k], str) for k in ("provider", "redirect_uri"))
                or not isinstance(record["browser"], str)
                or not isinstance(created_at, int | float)
                or not all(_optional_str(record.get(k)) for k in _OPTIONAL_STRINGS)
                or not (authorize is None or isinstance(authorize, dict))
            ):
                raise TypeError
        except (ValueError, TypeError, KeyError):
            raise LoginError("state_unknown") from None
        return cls(
            provider=record["provider"],
            redirect_uri=record["redirect_uri"],
            browser=record["browser"],
            purpose=cast("LoginPurpose", purpose),
            created_at=float(created_at),
            nonce=record.get("nonce"),
            code_verifier=record.get("code_verifier"),
            return_to=record.get("return_to"),
            authorize=authorize,
            link_user=record.get("link_user"),
        )


_OPTIONAL_STRINGS = ("nonce", "code_verifier", "return_to", "link_user")


def _optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


class LoginTransactions:
    """Login transactions in a [OneTimeStore][authbridge.store.OneTimeStore].

    Args:
        store: The store's ``one_time`` aggregate.
        clock: Time source (POSIX seconds).
        ttl: How long a transaction waits for its callback, in seconds.
    """

    def __init__(self, store: OneTimeStore, *, clock: Clock, ttl: float = 600.0) -> None:
        if not ttl > 0:
            raise ValueError("transaction ttl must be positive")
        self._store = store
        self._clock = clock
        self._ttl = float(ttl)

    @property
    def ttl(self) -> float:
        """Seconds a transaction lives."""
        return self._ttl

    async def save(self, state: str, transaction: LoginTransaction) -> None:
        """Store ``transaction`` under the hash of ``state`` until the TTL ends.

        Raises:
            Conflict: a transaction with this state exists (256-bit states do not collide).
            StoreUnavailable: the store cannot be reached.
        """
        await self._store.put(
            LOGIN_KIND,
            transaction_key(state),
            transaction.to_json(),
            expires_at=transaction.created_at + self._ttl,
        )

    async def take(self, state: str) -> LoginTransaction | None:
        """Remove and return the transaction of ``state``: ``None`` when unknown, expired or used.

        Of two concurrent takes of one state at most one gets it.

        Raises:
            LoginError: ``state_unknown`` for a record that does not decode.
            StoreUnavailable: the store cannot be reached.
        """
        if not state or len(state) > MAX_STATE_LENGTH or not _TEXT.fullmatch(state):
            return None
        raw = await self._store.take(LOGIN_KIND, transaction_key(state), now=self._clock())
        if raw is None:
            return None
        return LoginTransaction.from_json(raw)
