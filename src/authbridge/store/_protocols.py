"""Typed async protocols of the store, one per aggregate.

The issuer and the login client talk to these only; backends implement them
(`authbridge.store.SQLStore` for SQLite and PostgreSQL). Every method that
decides a race is atomic in every backend: two concurrent calls, in one
process or in two, never both succeed where one must.

Errors: a backend that cannot be reached raises
[StoreUnavailable][authbridge.store.StoreUnavailable] (the HTTP layer answers
503); a uniqueness conflict raises [Conflict][authbridge.store.Conflict].
Nothing else escapes a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from ._records import (
    ClientRecord,
    DelegationRecord,
    IdentityRecord,
    RefreshFamily,
    RefreshTokenRecord,
    SessionRecord,
    SigningKeyRecord,
    UserRecord,
)

UnlinkOutcome = Literal["unlinked", "not_linked", "last_login_method"]
"""What `IdentityStore.unlink_from` did."""


@runtime_checkable
class UserDirectory(Protocol):
    """What the password grant needs of user accounts: the pluggable part.

    An app with its own user table implements these three methods and passes
    the object as ``AppIssuer(users=...)``; the built-in table is then unused
    for logins.
    """

    async def by_username(self, username: str) -> UserRecord | None:
        """The account with this login name (already normalised), or ``None``."""
        ...

    async def get(self, user_id: str) -> UserRecord | None:
        """The account with this id, or ``None`` (refreshes check it still exists)."""
        ...

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Replace the stored hash (rehash on login when hashing parameters changed)."""
        ...


class UserStore(UserDirectory, Protocol):
    """The built-in user table: the directory plus administration."""

    async def add(self, user: UserRecord) -> UserRecord:
        """Create an account. Raises `Conflict` if the id or username exists."""
        ...

    async def update(self, user: UserRecord) -> UserRecord:
        """Replace an account's fields (by ``id``). Raises `KeyError` if absent."""
        ...

    async def delete(self, user_id: str) -> bool:
        """Delete an account (its identities too); whether it existed."""
        ...

    async def list(self, *, limit: int = 100, after: str | None = None) -> Sequence[UserRecord]:
        """Accounts ordered by username, at most ``limit``, after username ``after``."""
        ...

    async def by_email(
        self, email: str, *, verified: bool = True, limit: int = 10
    ) -> Sequence[UserRecord]:
        """Accounts whose ``email`` is exactly ``email`` (ordered by id, at most ``limit``).

        With ``verified`` (the default), only those whose address is verified:
        what linking by email may consider. The address is compared as stored
        (callers normalise).
        """
        ...


class IdentityStore(Protocol):
    """External identities (issuer, subject) → local account; (issuer, subject) is unique."""

    async def find(self, issuer: str, subject: str) -> IdentityRecord | None:
        """The identity, or ``None``."""
        ...

    async def link(self, identity: IdentityRecord) -> IdentityRecord:
        """Record a link. Raises `Conflict` if (issuer, subject) is already linked."""
        ...

    async def for_user(self, user_id: str) -> Sequence[IdentityRecord]:
        """Every identity of one account."""
        ...

    async def unlink(self, issuer: str, subject: str) -> bool:
        """Remove a link; whether it existed."""
        ...

    async def link_new_user(self, user: UserRecord, identity: IdentityRecord) -> None:
        """Create an account and its first identity, atomically.

        Raises `Conflict`, writing neither, if the account's id or username
        exists or (issuer, subject) is already linked: of concurrent first
        logins of one identity, exactly one creates an account.
        """
        ...

    async def unlink_from(self, user_id: str, issuer: str, subject: str) -> UnlinkOutcome:
        """Remove the link of (issuer, subject) to ``user_id`` unless it is the account's
        last way in (no password and no other identity), atomically.

        Returns:
            ``"unlinked"``; ``"not_linked"`` (no such link to this account);
            ``"last_login_method"`` (kept). Of concurrent unlinks of an
            account's last two identities, one is refused.
        """
        ...


class SessionStore(Protocol):
    """Browser sessions by the keyed hash of their cookie (see `SessionRecord`)."""

    async def create(self, session: SessionRecord) -> None:
        """Store a new session. Raises `Conflict` if ``id_hash`` exists, `KeyError`
        if no account has ``user_id``."""
        ...

    async def get(self, id_hash: str, *, now: float) -> SessionRecord | None:
        """The session if present and neither expired nor idle past ``now``, else ``None``."""
        ...

    async def touch(
        self, id_hash: str, *, now: float, idle_expires_at: float, min_interval: float
    ) -> bool:
        """Record a use: set ``last_seen_at`` to ``now`` and ``idle_expires_at`` (capped
        by ``expires_at``), only if the session is live and was last seen at least
        ``min_interval`` seconds before ``now``. Whether this call wrote: a busy
        session is written at most once per interval, whatever the instances.
        """
        ...

    async def delete(self, id_hash: str) -> SessionRecord | None:
        """Remove a session; the record removed (``None``: there was none)."""
        ...

    async def delete_for_user(self, user_id: str) -> int:
        """Remove every session of an account; how many."""
        ...

    async def purge(self, now: float) -> int:
        """Delete sessions expired or idle before ``now``; how many."""
        ...


class ClientStore(Protocol):
    """Registered OAuth clients."""

    async def get(self, client_id: str) -> ClientRecord | None:
        """The client, or ``None``."""
        ...

    async def add(self, client: ClientRecord) -> ClientRecord:
        """Register a client. Raises `Conflict` if the id exists."""
        ...

    async def update(self, client: ClientRecord) -> ClientRecord:
        """Replace a client's fields (by ``client_id``). Raises `KeyError` if absent."""
        ...

    async def delete(self, client_id: str) -> bool:
        """Remove a client (its refresh families too); whether it existed."""
        ...

    async def list(self) -> Sequence[ClientRecord]:
        """Every client, ordered by id."""
        ...


class RefreshStore(Protocol):
    """Refresh-token families and their tokens (by hash).

    The rotation rule lives in the issuer; the store offers the atomic steps it
    needs: compare-and-set on the family generation, bounded sibling issue,
    and revocation.
    """

    async def create(self, family: RefreshFamily, first: RefreshTokenRecord) -> None:
        """Store a new family with its first token (generation 0)."""
        ...

    async def find(self, token_hash: str) -> tuple[RefreshTokenRecord, RefreshFamily] | None:
        """The token with this hash and its family, or ``None``."""
        ...

    async def advance(
        self, family_id: str, *, from_generation: int, now: float, token: RefreshTokenRecord
    ) -> bool:
        """Atomically rotate: if the family is not revoked and its generation is
        ``from_generation``, set it to ``from_generation + 1``, ``rotated_at`` to
        ``now`` and ``siblings`` to 0, and store ``token`` (whose generation is
        ``from_generation + 1``). Return whether this call did it.
        """
        ...

    async def add_sibling(
        self, family_id: str, *, generation: int, max_siblings: int, token: RefreshTokenRecord
    ) -> bool:
        """Atomically, if the family is not revoked, its generation is
        ``generation`` and fewer than ``max_siblings`` siblings were issued at it,
        count one more and store ``token`` (of that generation). Return whether
        this call did it.
        """
        ...

    async def revoke(self, family_id: str, *, now: float, reason: str) -> bool:
        """Revoke a family (all its tokens); whether this call revoked it
        (``False`` if it was already revoked or does not exist)."""
        ...

    async def revoke_for(
        self, *, now: float, reason: str, subject: str | None = None, client_id: str | None = None
    ) -> int:
        """Revoke every live family of a subject and/or a client; how many."""
        ...

    async def purge(self, now: float) -> int:
        """Delete tokens and families expired (or revoked) before ``now``; how many rows."""
        ...


class DelegationStore(Protocol):
    """Users' delegations to robots (see `DelegationRecord`): durable, kept in SQL.

    A delegation is *active* while it is not revoked and ``now`` is before its
    ``expires_at``.
    """

    async def create(self, record: DelegationRecord) -> None:
        """Store a new delegation. Raises `Conflict` if the id exists, `KeyError`
        if no account has ``user_id``."""
        ...

    async def get(self, delegation_id: str) -> DelegationRecord | None:
        """The delegation, active or not, or ``None``."""
        ...

    async def for_user(
        self, user_id: str, *, now: float, include_inactive: bool = False, limit: int = 100
    ) -> Sequence[DelegationRecord]:
        """An account's delegations, newest first, at most ``limit``; only the active
        ones unless ``include_inactive``."""
        ...

    async def children(self, parent_id: str) -> Sequence[DelegationRecord]:
        """The delegations whose ``parent`` is ``parent_id``, active or not, newest first
        (to end them with it: every one, however many the account has)."""
        ...

    async def count_active(self, user_id: str, *, now: float) -> int:
        """How many active delegations an account has (to bound their creation)."""
        ...

    async def revoke(self, delegation_id: str, *, user_id: str, now: float) -> bool:
        """Set ``revoked_at`` to ``now`` if the delegation is ``user_id``'s and not yet
        revoked; whether this call revoked it."""
        ...

    async def purge(self, now: float) -> int:
        """Delete delegations ended or revoked before ``now``; how many."""
        ...


class SigningKeyStore(Protocol):
    """The issuer's signing keys (see `SigningKeyRecord` for the lifecycle)."""

    async def list(self) -> Sequence[SigningKeyRecord]:
        """Every key, oldest ``active_from`` first."""
        ...

    async def add(self, key: SigningKeyRecord) -> None:
        """Store a new key. Raises `Conflict` if the kid exists."""
        ...

    async def retire(self, kid: str, *, at: float) -> bool:
        """Set ``retired_at`` if unset; whether this call set it."""
        ...

    async def revoke(self, kid: str, *, at: float) -> bool:
        """Set ``revoked_at`` if unset; whether this call set it."""
        ...

    async def delete(self, kid: str) -> bool:
        """Remove a key; whether it existed."""
        ...


class OneTimeStore(Protocol):
    """Short-lived single-use values by kind and key hash (authorization codes,
    login transactions, relay codes)."""

    async def put(self, kind: str, key: str, value: bytes, *, expires_at: float) -> None:
        """Store a value. Raises `Conflict` if (kind, key) exists."""
        ...

    async def take(self, kind: str, key: str, *, now: float) -> bytes | None:
        """Atomically remove and return the value if present and not expired;
        of two concurrent takes, at most one gets it."""
        ...

    async def purge(self, now: float) -> int:
        """Delete expired values; how many."""
        ...


class RateLimitStore(Protocol):
    """Fixed-window counters shared by every instance using the store."""

    async def hit(self, key: str, *, window: float, now: float, cost: int = 1) -> tuple[int, float]:
        """Atomically add ``cost`` to the counter of ``key`` in the current window
        (which starts at the first hit and lasts ``window`` seconds) and return
        (the count after this hit, when the window ends). A negative ``cost``
        gives attempts back (never below 0)."""
        ...

    async def peek(self, key: str, *, now: float) -> tuple[int, float]:
        """The current count and window end (0 and ``now`` when none)."""
        ...

    async def reset(self, key: str) -> None:
        """Forget the counter of ``key``."""
        ...

    async def purge(self, now: float) -> int:
        """Delete ended windows; how many."""
        ...


class ReplayStore(Protocol):
    """Values that may be used once until they expire (``jti`` of client
    assertions, revoked access-token ids)."""

    async def first_use(self, key: str, *, expires_at: float, now: float) -> bool:
        """Atomically record ``key`` until ``expires_at``; ``True`` only for the
        first use (an expired record counts as absent)."""
        ...

    async def seen(self, key: str, *, now: float) -> bool:
        """Whether ``key`` is recorded and not expired."""
        ...

    async def purge(self, now: float) -> int:
        """Delete expired records; how many."""
        ...


class Store(Protocol):
    """Every aggregate of one backend, plus its lifecycle."""

    users: UserStore
    identities: IdentityStore
    sessions: SessionStore
    clients: ClientStore
    refresh: RefreshStore
    keys: SigningKeyStore
    delegations: DelegationStore
    one_time: OneTimeStore
    rate_limits: RateLimitStore
    replay: ReplayStore

    async def start(self) -> None:
        """Connect (and, with ``migrate=True``, upgrade the schema).

        Raises:
            StoreUnavailable: the backend cannot be reached.
            ConfigurationError: the schema is older than this version and
                migration is off (run ``authbridge db upgrade``).
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the backend answers now."""
        ...

    async def purge(self, now: float) -> int:
        """Delete every expired row of every aggregate; how many."""
        ...
