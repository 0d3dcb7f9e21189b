"""Server-side browser sessions: the cookie's value, its keyed hash in the store, its CSRF token.

A session cookie's value is 256 bits from the OS CSPRNG (43 base64url
characters), made only here: a value the server did not create (one an
attacker chose and planted, session fixation) is never in the store, so it
opens nothing. The store keeps the value's HMAC-SHA256 under a server key,
so a copy of the store opens no session either. The CSRF token is an HMAC of
the cookie value under another key derived from the server key: it needs no
storage, and one session's token is worth nothing for another.

The provider's ID token (kept for the ``id_token_hint`` of RP-initiated
logout) is stored AES-256-GCM-encrypted under a key derived from the
server key and the cookie value, the session's hash as associated data: the
store alone cannot decrypt it; the request that ends the session can.

A session ends at its absolute expiry whatever its use, and after
``idle_ttl`` without use. Uses move the idle expiry forward with at most one
store write per ``touch_interval`` (so the idle end is exact to within that
interval); `create` with ``replacing=`` ends the browser's previous session
(rotation at login).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._clock import Clock
from ..errors import ConfigurationError
from ..store import Conflict, SessionRecord, SessionStore

MIN_KEY_BYTES = 32
"""Shortest server key accepted for sessions."""

COOKIE_CHARS = 43
"""Length of a session cookie value: 32 random bytes, base64url without padding."""

MAX_ID_TOKEN_CHARS = 16384
"""Longest ID token kept with a session (a longer one is not kept: logout goes without a hint)."""

_NONCE_BYTES = 12
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

__all__ = ["Sessions", "new_session_value", "well_formed_session_value"]


def new_session_value() -> str:
    """A fresh session cookie value: 256 bits, base64url (43 characters)."""
    return secrets.token_urlsafe(32)


def well_formed_session_value(value: str) -> bool:
    """Whether ``value`` has the shape of a value `new_session_value` makes (no lookup)."""
    return len(value) == COOKIE_CHARS and _ALPHABET.issuperset(value)


def _subkey(key: bytes, label: bytes) -> bytes:
    return hmac.digest(key, b"authbridge session " + label, hashlib.sha256)


class Sessions:
    """Browser sessions of one app, kept in a `SessionStore` (``store.sessions``).

    Args:
        store: Where sessions are kept (``store.sessions``).
        key: The server key (at least 32 random bytes, the same on every
            instance): cookie hashes, CSRF tokens and the ID tokens'
            encryption derive from it. Changing it ends every session.
        clock: The current time.
        ttl: Absolute lifetime of a session, in seconds.
        idle_ttl: A session unused this long ends (at most ``ttl``).
        touch_interval: Seconds between two writes of a busy session's last
            use (at most half of ``idle_ttl``; shorter is used if given longer).

    Raises:
        ConfigurationError: a key shorter than 32 bytes, a non-positive
            lifetime, or ``idle_ttl`` longer than ``ttl``.

    Example:
        ```python
        sessions = Sessions(store.sessions, key=server_key, clock=time.time)
        cookie, csrf = await sessions.create(user.id, provider="google", id_token=None)
        record = await sessions.get(cookie)
        ```
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        key: bytes,
        clock: Clock,
        ttl: float = 28800.0,
        idle_ttl: float = 3600.0,
        touch_interval: float = 60.0,
    ) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            raise ConfigurationError(
                "session_key_too_short",
                message=f"the session key is at least {MIN_KEY_BYTES} random bytes "
                "(e.g. secrets.token_bytes(32)), the same on every instance",
            )
        if not (ttl > 0 and idle_ttl > 0 and touch_interval >= 0):
            raise ConfigurationError(
                "non_positive_duration", message="session lifetimes must be positive seconds"
            )
        if idle_ttl > ttl:
            raise ConfigurationError(
                "idle_ttl_beyond_session_ttl", message="idle_ttl must not be longer than ttl"
            )
        self._store = store
        self._clock = clock
        self.ttl = float(ttl)
        self.idle_ttl = float(idle_ttl)
        self.touch_interval = min(float(touch_interval), self.idle_ttl / 2)
        self._hash_key = _subkey(key, b"id")
        self._csrf_key = _subkey(key, b"csrf")
        self._seal_key = _subkey(key, b"id_token")

    def __repr__(self) -> str:
        return f"Sessions(ttl={self.ttl}, idle_ttl={self.idle_ttl})"

    # --- derived values ----------------------------------------------------------------------

    def id_hash(self, cookie_value: str) -> str:
        """The stored form of a cookie value: hex HMAC-SHA256 under the server key."""
        data = cookie_value.encode("utf-8", "surrogatepass")
        return hmac.new(self._hash_key, data, hashlib.sha256).hexdigest()

    def csrf_token(self, cookie_value: str) -> str:
        """The session's CSRF token (derived from the cookie value; nothing is stored)."""
        data = cookie_value.encode("utf-8", "surrogatepass")
        digest = hmac.digest(self._csrf_key, data, hashlib.sha256)
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def check_csrf(self, cookie_value: str, presented: str | None) -> bool:
        """Whether ``presented`` is this session's CSRF token (constant time)."""
        if not presented or not well_formed_session_value(cookie_value):
            return False
        expected = self.csrf_token(cookie_value).encode("ascii")
        return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected)

    # --- lifecycle ---------------------------------------------------------------------------

    async def create(
        self,
        user_id: str,
        *,
        provider: str | None,
        id_token: str | None,
        replacing: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[str, str]:
        """Start a session for an account that just logged in.

        Args:
            user_id: The account.
            provider: The provider it logged in through (``None``: password).
            id_token: The provider's ID token, kept encrypted for the logout's
                ``id_token_hint`` (``None``: none).
            replacing: The browser's current session cookie, if any: that
                session ends (a new session id at every login).
            extra: Small JSON details to keep with the session.

        Returns:
            The new cookie value and its CSRF token.

        Raises:
            KeyError: no such account.
            StoreUnavailable: the store is down.
        """
        if replacing is not None:
            await self.end(replacing)
        now = self._clock()
        for _ in range(2):  # a collision of 256-bit values does not happen; a retry is cheap
            value = new_session_value()
            id_hash = self.id_hash(value)
            record = SessionRecord(
                id_hash=id_hash,
                user_id=user_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + self.ttl,
                idle_expires_at=now + self.idle_ttl,
                provider=provider,
                id_token=self._seal(value, id_hash, id_token),
                extra=dict(extra or {}),
            )
            try:
                await self._store.create(record)
            except Conflict:  # pragma: no cover - see above
                continue
            return value, self.csrf_token(value)
        raise Conflict("no fresh session id")  # pragma: no cover

    async def get(self, cookie_value: str) -> SessionRecord | None:
        """The live session of a cookie value, or ``None`` (unknown, made up, expired, idle).

        A use is recorded (the idle expiry moves) at most once per touch interval.

        Raises:
            StoreUnavailable: the store is down.
        """
        if not well_formed_session_value(cookie_value):
            return None
        now = self._clock()
        id_hash = self.id_hash(cookie_value)
        record = await self._store.get(id_hash, now=now)
        if record is None or now - record.last_seen_at < self.touch_interval:
            return record
        idle = now + self.idle_ttl
        touched = await self._store.touch(
            id_hash, now=now, idle_expires_at=idle, min_interval=self.touch_interval
        )
        if not touched:  # another request (or instance) recorded this use, or it just ended
            return record
        return replace(record, last_seen_at=now, idle_expires_at=min(idle, record.expires_at))

    async def end(self, cookie_value: str) -> SessionRecord | None:
        """End a session (logout); the ended record (``None``: there was none).

        Its ``id_token`` is still encrypted: see `id_token_hint`.

        Raises:
            StoreUnavailable: the store is down.
        """
        if not well_formed_session_value(cookie_value):
            return None
        return await self._store.delete(self.id_hash(cookie_value))

    async def end_for_user(self, user_id: str) -> int:
        """End every session of an account (disabled, password changed); how many."""
        return await self._store.delete_for_user(user_id)

    def id_token_hint(self, cookie_value: str, session: SessionRecord) -> str | None:
        """The provider's ID token kept with ``session``, decrypted with its cookie value.

        ``None`` when none was kept, or when ``cookie_value`` is not the
        session's (nothing decrypts then).
        """
        sealed = session.id_token
        if sealed is None or len(sealed) <= _NONCE_BYTES:
            return None
        if not well_formed_session_value(cookie_value):
            return None
        aad = session.id_hash.encode("ascii")
        try:
            plain = self._aead(cookie_value).decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad
            )
        except InvalidTag:
            return None
        return plain.decode("ascii", "replace")

    def _aead(self, cookie_value: str) -> AESGCM:
        return AESGCM(hmac.digest(self._seal_key, cookie_value.encode("ascii"), hashlib.sha256))

    def _seal(self, cookie_value: str, id_hash: str, id_token: str | None) -> bytes | None:
        if not id_token or len(id_token) > MAX_ID_TOKEN_CHARS or not id_token.isascii():
            return None
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead(cookie_value).encrypt(
            nonce, id_token.encode("ascii"), id_hash.encode("ascii")
        )
        return nonce + sealed
