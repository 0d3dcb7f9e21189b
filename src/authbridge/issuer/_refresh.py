"""The ``refresh_token`` grant: rotation in families, reuse detection (RFC 6749 §6, RFC 9700 §4.14).

Every login that gets a refresh token starts a *family* (`start_family`).
Each refresh of the family's current token rotates it: the family's
generation advances by one, atomically, and the client gets a new token of
the new generation. Which answer a presented token gets follows from its
generation ``t`` and the family's generation ``g``:

- ``t == g``: rotate (compare-and-set on ``g``: of two concurrent redemptions,
  exactly one advances the family; the other is re-read and judged by the
  next rule);
- ``t == g - 1`` within ``refresh_reuse_interval`` of the rotation: a benign
  concurrent refresh (a retry, two tabs, a lost response). The client gets a
  fresh token of generation ``g`` (a *sibling*), at most four per generation;
  beyond, ``invalid_grant`` without revoking anything;
- anything else (an older token, or the predecessor after the interval):
  reuse. The whole family is revoked: the legitimate holder and the thief are
  both logged out (RFC 9700 §4.14.2).

A family is bound to its client: a token presented by another client is
``invalid_grant`` and changes nothing (that client cannot be its legitimate
holder, and letting it revoke the family would let anyone who sees a token
log its user out). Absolute (``refresh_token_ttl``) and idle
(``refresh_token_idle_ttl``) lifetimes both end a token; a removed or
disabled user ends the family.

A delegated family (started by [Delegations.create][authbridge.issuer.Delegations.create],
bound to the actor client, ``extra`` holding the delegation's ``did`` and the
``act`` claim) ends with its delegation, and each refresh checks, after
rotating, that the delegation (and every delegation it was made under) is
still active: a revoked or ended one refuses the refresh and revokes the
family. Checking after the rotation is what makes revocation final: the
revocation marks the delegation before anything else, so a refresh whose
rotation raced with it still finds it revoked, and once the revocation has
returned no refresh issues a token. The refreshed access token keeps ``act``
and ``did`` and never outlives the delegation.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..errors import StoreUnavailable
from ..store import ClientRecord, RefreshFamily, RefreshTokenRecord
from ._delegation_rules import live_delegation
from ._errors import OAuthError
from ._runtime import TokenRequest, store_unavailable
from ._secrets import REFRESH_TOKEN_PREFIX, hash_secret, new_secret, well_formed

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime

logger = logging.getLogger("authbridge.issuer")

MAX_SIBLINGS = 4
"""Tokens handed out for the predecessor of the current generation, per generation."""

_HASH_KIND = "refresh_token"
_INVALID = "The refresh token is invalid, expired or revoked"

Decision = Literal["rotate", "sibling", "reuse"]


def token_hash(token: str) -> str:
    """The stored form of a refresh token."""
    return hash_secret(token, _HASH_KIND)


def _refused(reason: str) -> OAuthError:
    # One description for every refusal: the answer never tells whether the token existed.
    return OAuthError("invalid_grant", _INVALID, reason=reason)


def _new_token(
    runtime: IssuerRuntime, family: RefreshFamily, generation: int, now: float
) -> tuple[str, RefreshTokenRecord]:
    token = new_secret(REFRESH_TOKEN_PREFIX)
    idle_end = now + runtime.config.refresh_token_idle_ttl
    record = RefreshTokenRecord(
        token_hash=token_hash(token),
        family_id=family.id,
        generation=generation,
        issued_at=now,
        expires_at=min(idle_end, family.expires_at),
    )
    return token, record


async def start_family(
    runtime: IssuerRuntime,
    *,
    client: ClientRecord,
    subject: str,
    scopes: frozenset[str],
    audiences: tuple[str, ...],
    auth_time: float | None,
    family_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    ends_at: float | None = None,
) -> str:
    """Start a refresh family for one login and return its first refresh token.

    Used by the grants that hand out refresh tokens (``password``, the
    authorization code grant, token exchange) and by delegations. The family
    ends ``refresh_token_ttl`` after now (or at ``ends_at`` when sooner: a
    delegation's end), whatever happens; each token
    ``refresh_token_idle_ttl`` after its issue. ``family_id`` is random
    unless given (the code grant derives it from the code, so that a replay
    of the code can revoke the family; a delegation's family has the
    delegation's id); ``extra`` is kept with the family.

    Raises:
        OAuthError: ``temporarily_unavailable`` (503) when the store is down.
    """
    config = runtime.config
    now = runtime.clock()
    family = RefreshFamily(
        id=family_id or secrets.token_urlsafe(16),
        client_id=client.client_id,
        subject=subject,
        scopes=frozenset(scopes),
        audiences=tuple(audiences),
        created_at=now,
        expires_at=min(
            now + config.refresh_token_ttl, ends_at if ends_at is not None else math.inf
        ),
        auth_time=auth_time,
        extra=dict(extra) if extra else {},
    )
    token, record = _new_token(runtime, family, 0, now)
    try:
        await runtime.store.refresh.create(family, record)
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None
    return token


def _decide(
    record: RefreshTokenRecord, family: RefreshFamily, now: float, interval: float
) -> Decision:
    if record.generation == family.generation:
        return "rotate"
    if (
        record.generation == family.generation - 1
        and interval > 0
        and family.rotated_at is not None
        # Symmetric: instances whose clocks differ slightly share one family.
        and abs(now - family.rotated_at) <= interval
    ):
        return "sibling"
    return "reuse"


def _scopes(
    requested: str | None, family: RefreshFamily, ceiling: frozenset[str]
) -> frozenset[str]:
    """The scopes of the new access token: the family's (within today's ceiling), or fewer."""
    current = family.scopes & ceiling
    if requested is None:
        return current
    wanted = frozenset(name for name in requested.split(" ") if name)
    if not wanted:
        return current
    if not wanted <= family.scopes:
        raise OAuthError(
            "invalid_scope",
            "A refresh cannot add scopes to the original grant",
            reason="scope_widening",
        )
    if not wanted <= current:
        raise OAuthError(
            "invalid_scope", "A requested scope is no longer allowed", reason="scope_withdrawn"
        )
    return wanted


def _audiences(resource: str | None, family: RefreshFamily) -> tuple[str, ...]:
    if resource is None or resource == "":
        return family.audiences
    if resource not in family.audiences:
        raise OAuthError(
            "invalid_target",
            "A refresh cannot change the token's audience",
            reason="audience_widening",
        )
    return (resource,)


async def grant(
    runtime: IssuerRuntime, client: ClientRecord, request: TokenRequest
) -> dict[str, Any]:
    """Redeem a refresh token (``grant_type=refresh_token``).

    Returns:
        The RFC 6749 §5.1 body with a new access token and a new refresh token.

    Raises:
        OAuthError: ``invalid_request`` without ``refresh_token``;
            ``invalid_grant`` for a malformed, unknown, expired, revoked,
            reused or other client's token (one description for all);
            ``invalid_scope`` for a scope beyond the original grant;
            ``invalid_target`` for another audience; 503 when the store is down.
    """
    presented = request.form.get("refresh_token")
    if not presented:
        raise OAuthError("invalid_request", "refresh_token is required", reason="no_refresh_token")
    if not well_formed(presented, REFRESH_TOKEN_PREFIX):
        raise _refused("malformed_refresh_token")
    try:
        return await _redeem(runtime, client, request, token_hash(presented))
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None


async def _redeem(
    runtime: IssuerRuntime, client: ClientRecord, request: TokenRequest, hashed: str
) -> dict[str, Any]:
    refresh = runtime.store.refresh
    now = runtime.clock()
    interval = runtime.config.refresh_reuse_interval
    record, family = _live(await refresh.find(hashed), client, now)
    decision = _decide(record, family, now, interval)
    if decision != "reuse":
        ceiling = await _user_ceiling(runtime, client, family, now)
        scopes = _scopes(request.form.get("scope"), family, ceiling)
        audiences = _audiences(request.form.get("resource"), family)
        if decision == "rotate":
            token, new = _new_token(runtime, family, family.generation + 1, now)
            if await refresh.advance(
                family.id, from_generation=family.generation, now=now, token=new
            ):
                return await _respond(runtime, client, family, scopes, audiences, token)
            # A concurrent redemption won: judge the token again. The generation
            # only moves forward, so this is a sibling or a reuse now.
            record, family = _live(await refresh.find(hashed), client, now)
            decision = _decide(record, family, now, interval)
        if decision == "sibling":
            token, new = _new_token(runtime, family, family.generation, now)
            if await refresh.add_sibling(
                family.id, generation=family.generation, max_siblings=MAX_SIBLINGS, token=new
            ):
                return await _respond(runtime, client, family, scopes, audiences, token)
            # Too many, or the family moved on meanwhile: refused, nothing revoked
            # (a reuse shows itself when that token comes back).
            raise _refused("sibling_refused")
    if await refresh.revoke(family.id, now=now, reason="reuse"):
        logger.warning(
            "refresh token reuse: family %s of client %s revoked", family.id, family.client_id
        )
    raise _refused("refresh_token_reuse")


def _live(
    found: tuple[RefreshTokenRecord, RefreshFamily] | None, client: ClientRecord, now: float
) -> tuple[RefreshTokenRecord, RefreshFamily]:
    """The token and its family if the token may still be redeemed by this client."""
    if found is None:
        raise _refused("unknown_refresh_token")
    record, family = found
    # The client first: another client learns nothing, and changes nothing.
    if family.client_id != client.client_id:
        raise _refused("client_mismatch")
    if family.revoked_at is not None:
        raise _refused("family_revoked")
    if now >= family.expires_at:
        raise _refused("family_expired")
    if now >= record.expires_at:
        raise _refused("refresh_token_expired")
    return record, family


async def _user_ceiling(
    runtime: IssuerRuntime, client: ClientRecord, family: RefreshFamily, now: float
) -> frozenset[str]:
    """The scopes the family may still carry; revokes it for a removed or disabled user."""
    user = await runtime.users.get(family.subject)
    if user is None or user.disabled:
        reason = "user_removed" if user is None else "user_disabled"
        await runtime.store.refresh.revoke(family.id, now=now, reason=reason)
        raise _refused(reason)
    # Scopes withdrawn since the login (from the user, the client or the app) are
    # not carried on: a refresh never outlives a change of rights.
    return user.scopes & client.scopes & frozenset(runtime.config.scopes)


async def _respond(  # noqa: PLR0917 - private, one call shape
    runtime: IssuerRuntime,
    client: ClientRecord,
    family: RefreshFamily,
    scopes: frozenset[str],
    audiences: tuple[str, ...],
    refresh_token: str,
) -> dict[str, Any]:
    extra: dict[str, Any] | None = None
    lifetime: float | None = None
    if "did" in family.extra:  # a delegated family: its delegation must still be active
        extra, lifetime = await _delegated(runtime, family)
    access, ttl = runtime.mint_access_token(
        subject=family.subject,
        client_id=client.client_id,
        scopes=scopes,
        audiences=audiences,
        auth_time=family.auth_time,
        extra=extra,
        lifetime=lifetime,
    )
    return runtime.token_response(access, ttl, scopes, refresh_token)


async def _delegated(runtime: IssuerRuntime, family: RefreshFamily) -> tuple[dict[str, Any], float]:
    """The ``act`` and ``did`` claims of a delegated family's access token, and its
    longest lifetime; revokes the family when its delegation is no longer active.

    Runs after the rotation (see the module docstring).

    Raises:
        OAuthError: ``invalid_grant`` (the family revoked).
    """
    now = runtime.clock()
    did = family.extra.get("did")
    act = family.extra.get("act")
    record = await live_delegation(runtime, did, user_id=family.subject, now=now)
    lifetime = 0.0 if record is None else min(record.expires_at, family.expires_at) - now
    if record is None or lifetime < 1 or not isinstance(act, Mapping):
        await runtime.store.refresh.revoke(family.id, now=now, reason="delegation_revoked")
        logger.info("refresh refused: family %s's delegation is no longer active", family.id)
        raise _refused("delegation_inactive")
    return {"act": dict(act), "did": did}, lifetime
