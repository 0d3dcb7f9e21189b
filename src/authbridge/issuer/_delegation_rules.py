"""The rules every delegated token follows, whichever way it is issued (see ``_delegation``).

Pure checks of chains, scopes and audiences, and the two store look-ups both
ways share: the actor client, and whether a delegation (with every delegation
it was made under) is still active.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..store import ClientRecord, DelegationRecord
from ._errors import OAuthError

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime

MAX_ACT_DEPTH = 4
"""Most actors in the ``act`` chain of a token the issuer mints."""

MAX_LABEL_CHARS = 200
"""Longest label of a delegation."""

DELEGATION_ID_PREFIX = "dlg_"
"""Prefix of delegation ids (128 random bits follow)."""

REVOKED_PREFIX = "dg:"
"""Replay-store key prefix of revoked delegations (``"dg:" + id``)."""

_MAX_ACTOR_CHARS = 255
# RFC 6749 Appendix A.1: a client_id is *VSCHAR (as client authentication checks it).
_VSCHAR = frozenset(chr(c) for c in range(0x20, 0x7F))


Actor = tuple[str, str | None]
"""One actor of an ``act`` chain: its ``sub`` and, if given, its ``client_id``."""


def refused(error: str, description: str, reason: str, *, status: int = 400) -> OAuthError:
    """An OAuth error whose ``reason`` goes to the log only."""
    return OAuthError(error, description, reason=reason, status=status)


def act_chain(claims: Mapping[str, Any]) -> tuple[Actor, ...]:
    """The actors of a token's ``act`` claim, nearest first (empty without ``act``).

    Raises:
        ValueError: ``act`` is not an object, an actor has no non-empty string
            ``sub``, or the chain is deeper than twice `MAX_ACT_DEPTH`.
    """
    chain: list[Actor] = []
    act = claims.get("act")
    while act is not None:
        if not isinstance(act, Mapping) or len(chain) >= 2 * MAX_ACT_DEPTH:
            raise ValueError("malformed act claim")
        sub = act.get("sub")
        client_id = act.get("client_id")
        if not isinstance(sub, str) or not sub:
            raise ValueError("malformed act claim")
        chain.append((sub, client_id if isinstance(client_id, str) and client_id else None))
        act = act.get("act")
    if "act" in claims and not chain:
        raise ValueError("malformed act claim")  # "act": null
    return tuple(chain)


def act_claim(actor: str, chain: Sequence[Actor]) -> dict[str, Any]:
    """The ``act`` of a token the ``actor`` client uses, the ``chain`` before it nested inside.

    Rebuilt from the verified chain (``sub`` and ``client_id`` of each actor),
    never copied from a request.
    """
    inner: dict[str, Any] | None = None
    for sub, client_id in reversed(chain):
        node: dict[str, Any] = {"sub": sub}
        if client_id is not None:
            node["client_id"] = client_id
        if inner is not None:
            node["act"] = inner
        inner = node
    top: dict[str, Any] = {"sub": actor, "client_id": actor}
    if inner is not None:
        top["act"] = inner
    return top


def audiences_of(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """A token's ``aud`` as a tuple of strings (empty when absent or malformed)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, Sequence):
        return tuple(a for a in aud if isinstance(a, str))
    return ()


def requested_scopes(
    runtime: IssuerRuntime, requested: Iterable[str] | str | None
) -> frozenset[str] | None:
    """The scopes asked for (``None``: none named), each a scope of the issuer.

    Raises:
        OAuthError: ``invalid_scope`` for a malformed or unknown scope.
    """
    if requested is None:
        return None
    names = requested.split(" ") if isinstance(requested, str) else list(requested)
    wanted: set[str] = set()
    for name in names:
        if not isinstance(name, str) or any(char.isspace() for char in name):
            raise refused("invalid_scope", "Unknown scope requested", "unknown_scope")
        if name:
            wanted.add(name)
    if not wanted:
        return None
    if not wanted <= frozenset(runtime.config.scopes):
        raise refused("invalid_scope", "Unknown scope requested", "unknown_scope")
    return frozenset(wanted)


def granted_scopes(wanted: frozenset[str] | None, ceiling: frozenset[str]) -> frozenset[str]:
    """``wanted`` if within ``ceiling`` (``ceiling`` when nothing was asked).

    Raises:
        OAuthError: ``invalid_scope``: a scope beyond the ceiling, or none at all.
    """
    if wanted is not None and not wanted <= ceiling:
        raise refused("invalid_scope", "A requested scope is not allowed", "scope_beyond_allowed")
    scopes = ceiling if wanted is None else wanted
    if not scopes:
        raise refused("invalid_scope", "No scope can be granted", "no_scope")
    return scopes


async def live_delegation(
    runtime: IssuerRuntime, delegation_id: object, *, user_id: str, now: float
) -> DelegationRecord | None:
    """The delegation ``delegation_id`` if it, and every delegation it was made
    under, is active and ``user_id``'s; else ``None``.

    Raises:
        StoreUnavailable: the store is down.
    """
    if not isinstance(delegation_id, str) or not delegation_id:
        return None
    store = runtime.store.delegations
    found: DelegationRecord | None = None
    next_id: str | None = delegation_id
    for _ in range(MAX_ACT_DEPTH + 1):
        if next_id is None:
            return found
        record = await store.get(next_id)
        if record is None or record.user_id != user_id or not record.active(now):
            return None
        found = found or record
        next_id = record.parent
    return None  # deeper than any chain the issuer makes


async def actor_client(runtime: IssuerRuntime, actor: object) -> ClientRecord:
    """The registered, enabled, confidential client named ``actor``.

    An ``actor`` no client id can be (empty, longer than 255 characters, or
    with a character outside RFC 6749's VSCHAR, such as NUL) is refused before
    any store access.

    Raises:
        OAuthError: ``invalid_request``: ``unknown_actor`` or ``public_actor``.
    """
    if (
        not isinstance(actor, str)
        or not actor
        or len(actor) > _MAX_ACTOR_CHARS
        or not set(actor) <= _VSCHAR
    ):
        raise refused("invalid_request", "The actor is not a registered client", "unknown_actor")
    client = await runtime.client(actor)
    if client is None or client.disabled:
        raise refused("invalid_request", "The actor is not a registered client", "unknown_actor")
    if client.public:
        raise refused("invalid_request", "The actor must be a confidential client", "public_actor")
    return client


def granted_audiences(asked: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """``(asked,)`` if among ``allowed`` (all of ``allowed`` when nothing was asked).

    Raises:
        OAuthError: ``invalid_target``: another audience, or none at all.
    """
    if asked is not None and asked != "":
        if asked not in allowed:
            raise refused("invalid_target", "The audience is not allowed", "audience_not_allowed")
        return (asked,)
    if not allowed:
        raise refused("invalid_target", "No audience can be granted", "no_audience")
    return allowed
