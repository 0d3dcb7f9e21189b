"""The records the store keeps: plain frozen dataclasses, free of any backend.

Times are POSIX seconds (``float``). Credentials are never kept in plain text:
refresh tokens, codes, client secrets and session cookies appear here only as
their hashes (``token_hash``, ``secret_hash``, ``id_hash``), passwords as
argon2id strings, private signing keys encrypted under the key-encryption key,
a session's provider ID token encrypted under a key derived from the session's
cookie (which the store never sees). A delegation record is no credential: it
says what a robot may do for a user, and every use of it is checked against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ClientAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
"""How a client authenticates at the token endpoint (RFC 7591 names); ``none``: a public client."""


class Conflict(Exception):  # a domain outcome, not a failure: no "Error" suffix
    """A record with the same unique key exists (username, client id, kid, ...)."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A local account.

    Attributes:
        id: Stable, opaque account id: the ``sub`` of the app's tokens.
        username: Unique login name, stored normalised (NFKC, case-folded) by the
            command line and the password grant.
        password_hash: The pwdlib (argon2id) hash, or ``None`` for an account
            that cannot log in with a password (it logs in through a provider).
        scopes: Scopes this account may be granted.
        disabled: A disabled account gets no token and refreshes nothing.
        email: Contact address, if known.
        email_verified: Whether ``email`` was verified.
        created_at: When the account was created.
    """

    id: str
    username: str
    password_hash: str | None = field(default=None, repr=False)
    scopes: frozenset[str] = frozenset()
    disabled: bool = False
    email: str | None = None
    email_verified: bool = False
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    """An external identity, (issuer, subject), linked to one local account."""

    issuer: str
    subject: str
    user_id: str
    email: str | None = None
    email_verified: bool = False
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A registered OAuth client (a machine, a first-party app, Swagger UI).

    Attributes:
        client_id: The public identifier.
        name: Human-readable name.
        auth_method: How it authenticates at the token endpoint; ``"none"``
            for a public client (it sends only ``client_id``).
        secret_hash: Hash of the client secret (see `hash_secret`), for the
            ``client_secret_*`` methods; ``None`` otherwise.
        jwks: Public keys for ``private_key_jwt`` (a JWKS document).
        grant_types: Grants it may use (``"password"``, ``"refresh_token"``,
            ``"client_credentials"``, ...).
        scopes: Scopes it may be granted (for client_credentials: its own
            scopes; for user grants: the ceiling of what users get through it).
        redirect_uris: Registered redirect URIs (exact match).
        disabled: A disabled client authenticates for nothing.
        created_at: When the client was registered.
    """

    client_id: str
    name: str = ""
    auth_method: ClientAuthMethod = "client_secret_basic"
    secret_hash: str | None = field(default=None, repr=False)
    jwks: Mapping[str, Any] | None = None
    grant_types: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    redirect_uris: tuple[str, ...] = ()
    disabled: bool = False
    created_at: float = 0.0

    @property
    def public(self) -> bool:
        """Whether this is a public client (no secret, no key)."""
        return self.auth_method == "none"


@dataclass(frozen=True, slots=True)
class RefreshFamily:
    """A chain of rotated refresh tokens from one grant (one login of one user at one client).

    Attributes:
        id: Random family id.
        client_id: The client the tokens are bound to.
        subject: The ``sub`` of its access tokens (the account id).
        scopes: The scopes granted at login (a refresh may narrow, never widen).
        audiences: The ``aud`` of its access tokens.
        created_at: Login time.
        expires_at: Absolute end of the family: no refresh after it, whatever
            the idle lifetime.
        generation: The generation of the current refresh token(s); a refresh
            of a token of this generation advances it by one.
        rotated_at: When ``generation`` last advanced (``None`` before the first
            rotation); the benign-reuse interval counts from it.
        siblings: Tokens issued at ``generation`` beyond the first (benign
            concurrent refreshes of its predecessor), bounded.
        revoked_at: When the family was revoked (logout, RFC 7009, reuse), or ``None``.
        revoked_reason: Why (``"revoked"``, ``"reuse"``, ``"user_disabled"``, ...).
        auth_time: When the user authenticated.
        extra: Grant details kept for later refreshes (bounded, JSON).
    """

    id: str
    client_id: str
    subject: str
    scopes: frozenset[str]
    audiences: tuple[str, ...]
    created_at: float
    expires_at: float
    generation: int = 0
    rotated_at: float | None = None
    siblings: int = 0
    revoked_at: float | None = None
    revoked_reason: str | None = None
    auth_time: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    """One issued refresh token, by the hash of its value.

    Attributes:
        token_hash: `hash_secret` of the token.
        family_id: Its family.
        generation: The family generation it was issued at.
        issued_at: When it was issued.
        expires_at: Idle expiry: ``issued_at`` + the idle lifetime, capped by
            the family's absolute expiry.
    """

    token_hash: str
    family_id: str
    generation: int
    issued_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    """One signing key of the app's issuer; its state follows from its times.

    A key is *next* before ``active_from`` (published in the JWKS, not used),
    *active* from then until a newer key becomes active, then *retired*
    (published until ``retired_at`` plus the longest token lifetime, then
    deleted). ``revoked_at`` set: withdrawn at once (a compromised key).

    Attributes:
        kid: Key id (the RFC 7638 thumbprint).
        alg: JWS algorithm (``ES256``, ``RS256``, ``EdDSA``).
        public_jwk: The public JWK (public members only).
        private_key: The private key, encrypted (see ``authbridge.issuer``'s
            key encryption); never the plain key.
        kek_id: Which key-encryption key encrypted it.
        created_at: When it was generated (and first published).
        active_from: When it starts signing.
        retired_at: When a newer key took over (``None`` while next or active).
        revoked_at: When it was withdrawn, or ``None``.
    """

    kid: str
    alg: str
    public_jwk: Mapping[str, Any]
    private_key: bytes = field(repr=False)
    kek_id: str
    created_at: float
    active_from: float
    retired_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A browser session of one account (the server side of a session cookie).

    The cookie's value is never stored: ``id_hash`` is its keyed hash (see
    ``authbridge.client.Sessions``), so a copy of the store opens no session.
    A session ends at ``expires_at`` whatever its use, and at
    ``idle_expires_at`` without use; both are checked by every read.

    Attributes:
        id_hash: Keyed hash of the cookie value (the record's key).
        user_id: The account logged in.
        created_at: Login time.
        last_seen_at: When the session was last used (updated at most once per
            touch interval, so busy sessions do not write on every request).
        expires_at: Absolute end.
        idle_expires_at: End without use (moved forward by each touch, never
            past ``expires_at``).
        provider: The provider the person logged in through (``None``: the
            local password), for RP-initiated logout.
        id_token: The provider's ID token for the logout's
            ``id_token_hint``, encrypted (nonce, ciphertext and tag) under a
            key derived from the cookie value; ``None`` when there is none.
        extra: Small JSON details kept with the session (bounded).
    """

    id_hash: str
    user_id: str
    created_at: float
    last_seen_at: float
    expires_at: float
    idle_expires_at: float
    provider: str | None = None
    id_token: bytes | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DelegationRecord:
    """A user's grant to a robot (a confidential client) to act for them (RFC 8693 ``act``).

    Every token issued under it carries its id as the ``did`` claim, names the
    robot in ``act``, and lives no longer than ``expires_at``; revoking it
    ends them all (see ``authbridge.issuer.Delegations``).

    Attributes:
        id: Random, 128 bits, url-safe (``"dlg_" + secrets.token_urlsafe(16)``).
        user_id: Who delegates: the account the tokens speak for (their ``sub``).
        actor: The ``client_id`` of the robot acting for the user.
        scopes: What it may do: at most the user's scopes when it was created.
        audiences: The ``aud`` of its tokens.
        created_at: When the user created it.
        expires_at: Its absolute end: no token of it lives past this.
        label: The user's note ("garage robot"), at most 200 characters; shown
            escaped.
        may_delegate: Whether the actor may pass it on to a further actor (a
            chain); no by default.
        revoked_at: When the user revoked it, or ``None``.
        parent: The delegation this one was made under, when a robot holding a
            delegated token (with ``may_delegate``) created it; revoking the
            parent revokes it too.
    """

    id: str
    user_id: str
    actor: str
    scopes: frozenset[str]
    audiences: tuple[str, ...]
    created_at: float
    expires_at: float
    label: str = ""
    may_delegate: bool = False
    revoked_at: float | None = None
    parent: str | None = None

    def active(self, now: float) -> bool:
        """Whether it is neither revoked nor ended at ``now``."""
        return self.revoked_at is None and now < self.expires_at
