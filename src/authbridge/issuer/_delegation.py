"""Delegation: a robot acting for a user, with tokens that say so (RFC 8693 ``act``).

Two ways to a delegated token, one set of rules:

1. **Minted by the user** ([Delegations.create][authbridge.issuer.Delegations.create],
   behind ``POST /me/delegations``): the user names a registered confidential
   client (the *actor*), what it may do and for how long; a
   [DelegationRecord][authbridge.store.DelegationRecord] is stored and the
   actor's first tokens come back (an access token, and a refresh token when
   the actor has the ``refresh_token`` grant).
2. **Exchanged by the actor** (RFC 8693 token exchange of one of the app's own
   access tokens at the token endpoint, ``_delegation_exchange``): allowed
   when an active delegation of the user to that client covers the request,
   or the configured policy allows it.

Every delegated token has ``sub`` = the user, ``client_id`` = the actor,
``act`` = ``{"sub": actor, "client_id": actor}`` with the earlier actors of a
chain nested inside (never taken from the request), and ``did`` = the
delegation's id when a delegation allowed it. Its scopes are within the
user's, the actor client's (and the delegation's); its audience within the
user token's (and the delegation's); it ends by the delegation's end. A chain
is at most `MAX_ACT_DEPTH` actors deep; created by a robot through the API it
needs its delegation's ``may_delegate`` whatever the policy says, exchanged by
a further actor its delegation's ``may_delegate`` or the policy's ``True``.

Revoking a delegation ([Delegations.revoke][authbridge.issuer.Delegations.revoke])
revokes its refresh family and records ``"dg:" + id`` in the store's replay
records until the delegation's end: ``auth.active_principal`` refuses its
access tokens from the next request on, and ``auth.principal`` (which does not
look at the store) within ``access_token_ttl``.
"""

from __future__ import annotations

import inspect
import logging
import math
import secrets
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ..errors import StoreUnavailable
from ..jose._jwt import MAX_LEEWAY
from ..resource.principal import Principal
from ..store import ClientRecord, DelegationRecord
from ._delegation_rules import (
    DELEGATION_ID_PREFIX,
    MAX_ACT_DEPTH,
    MAX_LABEL_CHARS,
    REVOKED_PREFIX,
    Actor,
    act_chain,
    act_claim,
    actor_client,
    audiences_of,
    granted_audiences,
    granted_scopes,
    live_delegation,
    refused,
    requested_scopes,
)
from ._errors import OAuthError
from ._runtime import store_unavailable

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime

logger = logging.getLogger("authbridge.issuer")

_ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
# Replay-store key prefix of access tokens revoked at the revocation endpoint.
REVOKED_TOKEN_PREFIX = "at:"


class DelegationRequest(NamedTuple):
    """What a [DelegationPolicy][authbridge.issuer.DelegationPolicy] is asked to allow.

    Attributes:
        user_id: The user the tokens would speak for (their ``sub``).
        actor: The ``client_id`` of the robot that would act for them.
        scopes: The scopes its token would carry.
        audiences: Its token's ``aud``.
        chain: The actors already acting for the user in the presented
            token's ``act`` chain, nearest first (empty: the user's own token).
        via: ``"api"`` (the user creates a delegation) or ``"token_exchange"``
            (the actor exchanges a token at the token endpoint).
    """

    user_id: str
    actor: str
    scopes: frozenset[str]
    audiences: tuple[str, ...]
    chain: tuple[str, ...]
    via: Literal["api", "token_exchange"]


DelegationPolicy = Callable[[DelegationRequest], bool | Awaitable[bool]]
"""``AppIssuer(delegation_policy=...)``: ``True`` (or an awaitable of it) allows."""


async def ask_policy(runtime: IssuerRuntime, request: DelegationRequest) -> bool | None:
    """The configured policy's answer (``None`` without a policy); an error refuses."""
    policy = runtime.config.delegation_policy
    if policy is None:
        return None
    try:
        answer = policy(request)
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception:
        logger.exception(
            "delegation_policy failed for account %s and client %s: refused",
            request.user_id,
            request.actor,
        )
        return False
    return answer is True


def _check_label(label: object) -> str:
    if (
        not isinstance(label, str)
        or len(label) > MAX_LABEL_CHARS
        or any(unicodedata.category(char) in ("Cc", "Cs") for char in label)
    ):
        raise refused(
            "invalid_request",
            "label is at most 200 characters, without control characters",
            "invalid_label",
        )
    return label


def _check_expires_in(expires_in: object) -> float:
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not math.isfinite(expires_in)
        or expires_in < 1
    ):
        raise refused("invalid_request", "expires_in is at least 1 second", "invalid_expires_in")
    return float(expires_in)


def _denied(description: str, reason: str) -> OAuthError:
    return refused("access_denied", description, reason, status=403)


def _own_subject(runtime: IssuerRuntime, user: Principal) -> str:
    config = runtime.config
    if user.provider != config.name or user.issuer != config.issuer or not user.subject:
        raise _denied("Only the app's own tokens may delegate", "not_own_token")
    return user.subject


def _chain_of(user: Principal, actor: str) -> tuple[Actor, ...]:
    """The actors already acting for ``user`` (its token's ``act``), checked for ``actor``."""
    try:
        chain = act_chain(user.claims)
    except ValueError:
        raise _denied("This token may not delegate", "malformed_act") from None
    if not chain and user.actors:  # a principal made by hand, without claims
        chain = tuple((sub, None) for sub in user.actors)
    if len(chain) >= MAX_ACT_DEPTH:
        raise _denied("The delegation chain is too long", "chain_too_deep")
    if any(sub == actor for sub, _ in chain):
        raise refused("invalid_request", "The actor already acts for this user", "actor_in_chain")
    return chain


class Delegations:
    """Users' delegations to robots, and their first tokens: ``IssuerRuntime.delegations``.

    Used by the ``/me/delegations`` routes; usable from any code holding the
    issuer runtime. Every refusal is an
    [OAuthError][authbridge.issuer.OAuthError] (its ``reason`` goes to the log,
    never a token); the store being down is 503 ``temporarily_unavailable``.

    Args:
        runtime: The issuer.
    """

    def __init__(self, runtime: IssuerRuntime) -> None:
        self._runtime = runtime

    def __repr__(self) -> str:
        return f"Delegations({self._runtime.config.issuer!r})"

    async def create(
        self,
        user: Principal,
        *,
        actor: str,
        scopes: Iterable[str] | None,
        audience: str | None,
        expires_in: float,
        label: str = "",
        may_delegate: bool = False,
    ) -> tuple[DelegationRecord, dict[str, Any]]:
        """Let the ``actor`` client act for ``user`` until ``expires_in`` seconds from now.

        Args:
            user: Who delegates: the principal of one of the app's own tokens or
                sessions.
            actor: The ``client_id`` of a registered confidential client.
            scopes: What the actor may do (``None``: everything the user's
                token and the actor client both have); a space-separated string
                is split.
            audience: The ``aud`` of its tokens (``None``: the user token's).
            expires_in: Its lifetime in seconds; at most ``delegation_max_ttl``
                (a longer one is shortened to it).
            label: The user's note (at most 200 characters).
            may_delegate: Whether the actor may pass it on (a chain).

        Returns:
            The stored record, and an RFC 6749 token body for the actor:
            ``access_token`` (with ``act`` and ``did``), ``token_type``,
            ``expires_in``, ``scope``, ``issued_token_type`` and, when the
            actor client has the ``refresh_token`` grant, ``refresh_token``
            (bound to the actor client, ending with the delegation).

        Raises:
            OAuthError: 403 ``access_denied``: ``not_own_token`` (not a token
                or session of the app), ``account_disabled``,
                ``delegation_by_actor`` (a delegated token without
                ``may_delegate``), ``chain_too_deep``, ``parent_inactive``,
                ``token_revoked`` (revoked at the revocation endpoint),
                ``policy_refused``; 400 ``invalid_request``: ``unknown_actor``,
                ``public_actor``, ``self_delegation``, ``actor_in_chain``,
                ``invalid_expires_in``, ``invalid_label``,
                ``too_many_delegations``; 400 ``invalid_scope``; 400
                ``invalid_target``; 503 ``temporarily_unavailable``.

        Example:
            ```python
            record, token = await runtime.delegations.create(
                principal, actor="garage-robot", scopes=["items:read"],
                audience=None, expires_in=3600, label="garage robot",
            )
            ```
        """
        try:
            return await self._create(
                user,
                actor=actor,
                scopes=scopes,
                audience=audience,
                expires_in=expires_in,
                label=label,
                may_delegate=may_delegate,
            )
        except OAuthError as exc:
            logger.info("Delegation refused for account %s: %s", user.subject, exc.reason)
            raise
        except StoreUnavailable as exc:
            error = store_unavailable(exc)
            logger.info("Delegation refused for account %s: %s", user.subject, error.reason)
            raise error from None

    async def _create(
        self,
        user: Principal,
        *,
        actor: str,
        scopes: Iterable[str] | None,
        audience: str | None,
        expires_in: float,
        label: str,
        may_delegate: bool,
    ) -> tuple[DelegationRecord, dict[str, Any]]:
        runtime = self._runtime
        config = runtime.config
        now = runtime.clock()
        # What the request says, before any store access.
        subject = _own_subject(runtime, user)
        label = _check_label(label)
        lifetime = min(_check_expires_in(expires_in), config.delegation_max_ttl)
        if actor == subject:
            raise refused("invalid_request", "A user cannot delegate to itself", "self_delegation")
        chain = _chain_of(user, actor)
        wanted = requested_scopes(runtime, scopes)
        if audience is not None and not isinstance(audience, str):
            raise refused("invalid_target", "Unknown audience", "audience_not_allowed")
        # Who takes part, from the store.
        client = await actor_client(runtime, actor)
        account = await runtime.users.get(subject)
        if account is None or account.disabled:
            raise _denied("The account may not delegate", "account_disabled")
        parent: DelegationRecord | None = None
        did = user.claims.get("did")
        if chain and did is not None:
            parent = await live_delegation(runtime, did, user_id=subject, now=now)
            if parent is None:
                raise _denied("This token may not delegate", "parent_inactive")
        # A token revoked at the revocation endpoint (RFC 7009) delegates nothing.
        jti = user.token_id
        if jti and await runtime.store.replay.seen(REVOKED_TOKEN_PREFIX + jti, now=now):
            raise _denied("This token may not delegate", "token_revoked")
        # What it grants: within the user's token, the account, the actor client and
        # the delegation the user's token comes from.
        ceiling = user.scopes & account.scopes & client.scopes & frozenset(config.scopes)
        claims = user.claims
        targets = audiences_of(claims) if "aud" in claims else (config.audience,)
        targets = tuple(a for a in dict.fromkeys(targets) if a in config.resources)
        ends = now + lifetime
        if parent is not None:
            ceiling &= parent.scopes
            targets = tuple(a for a in targets if a in parent.audiences)
            ends = min(ends, parent.expires_at)
        granted = granted_scopes(wanted, ceiling)
        targets = granted_audiences(audience, targets)
        if ends - now < 1:
            raise refused(
                "invalid_request", "expires_in is at least 1 second", "invalid_expires_in"
            )
        # Allowed?
        store = runtime.store.delegations
        if await store.count_active(subject, now=now) >= config.max_delegations_per_user:
            raise refused("invalid_request", "Too many active delegations", "too_many_delegations")
        # A robot passes a delegation on only if the user let it (may_delegate): the
        # policy may refuse more, never allow this.
        if chain and not (parent is not None and parent.may_delegate):
            raise _denied("This token may not delegate", "delegation_by_actor")
        subs = tuple(sub for sub, _ in chain)
        request = DelegationRequest(subject, actor, granted, targets, subs, "api")
        if await ask_policy(runtime, request) is False:
            raise _denied("The delegation is not allowed", "policy_refused")
        record = DelegationRecord(
            id=DELEGATION_ID_PREFIX + secrets.token_urlsafe(16),
            user_id=subject,
            actor=actor,
            scopes=granted,
            audiences=targets,
            created_at=now,
            expires_at=ends,
            label=label,
            may_delegate=bool(may_delegate),
            parent=None if parent is None else parent.id,
        )
        return record, await _store_and_mint(runtime, record, client, chain, now)

    async def list(
        self, user_id: str, *, include_inactive: bool = False
    ) -> Sequence[DelegationRecord]:
        """A user's delegations, newest first (the active ones unless ``include_inactive``).

        Raises:
            OAuthError: 503 ``temporarily_unavailable`` when the store is down.
        """
        runtime = self._runtime
        try:
            return await runtime.store.delegations.for_user(
                user_id, now=runtime.clock(), include_inactive=include_inactive
            )
        except StoreUnavailable as exc:
            raise store_unavailable(exc) from None

    async def revoke(self, user_id: str, delegation_id: str) -> bool:
        """Revoke one of ``user_id``'s delegations, its refresh tokens and its access tokens.

        Sets ``revoked_at``, revokes the refresh family it started, records
        ``"dg:" + id`` in the store's replay records until its end (so that
        ``auth.active_principal`` refuses its access tokens from the next
        request on; ``auth.principal`` within ``access_token_ttl``), and does
        the same for every delegation made under it. Run again, it completes
        what an interrupted run left undone.

        Returns:
            Whether this call revoked it (``False``: not the user's, unknown, or
            revoked already).

        Raises:
            OAuthError: 503 ``temporarily_unavailable`` when the store is down.
        """
        try:
            return await self._revoke(user_id, delegation_id)
        except StoreUnavailable as exc:
            raise store_unavailable(exc) from None

    async def _revoke(self, user_id: str, delegation_id: str) -> bool:
        runtime = self._runtime
        store = runtime.store
        now = runtime.clock()
        record = await store.delegations.get(delegation_id)
        if record is None or record.user_id != user_id:
            return False
        # The record first: every refresh checks it after rotating, so once this
        # call returns no refresh issues a token from it.
        revoked = await store.delegations.revoke(delegation_id, user_id=user_id, now=now)
        # Delegations made under it (by its actor, with may_delegate) end with it,
        # every one, found by their parent. Revoked ones that have not ended are
        # included: a run interrupted after revoking one may have left its tokens live.
        pending = [record]
        done: set[str] = set()
        while pending:
            current = pending.pop()
            if current.id in done:
                continue
            done.add(current.id)
            if current.id != delegation_id:
                await store.delegations.revoke(current.id, user_id=user_id, now=now)
            # Kept past the delegation's end by the longest leeway a verifier allows.
            await store.replay.first_use(
                REVOKED_PREFIX + current.id, expires_at=current.expires_at + MAX_LEEWAY, now=now
            )
            await store.refresh.revoke(current.id, now=now, reason="delegation_revoked")
            children = await store.delegations.children(current.id)
            pending.extend(c for c in children if c.user_id == user_id and c.expires_at > now)
        if revoked:
            logger.info("Delegation %s of account %s revoked", delegation_id, user_id)
        return revoked


async def _store_and_mint(
    runtime: IssuerRuntime,
    record: DelegationRecord,
    client: ClientRecord,
    chain: Sequence[Actor],
    now: float,
) -> dict[str, Any]:
    """Store a new delegation; the actor's first access token (and refresh token) of it.

    One insert, and the refresh family's when the actor gets a refresh token.
    What was checked before the insert and may have changed meanwhile (another
    creation at the same time, the parent's revocation) is checked again after
    it: a record refused then is revoked before any token of it is issued.
    """
    from . import _refresh  # noqa: PLC0415 - the refresh grant imports this module

    store = runtime.store.delegations
    try:
        await store.create(record)
    except KeyError:  # the account was removed meanwhile
        raise _denied("The account may not delegate", "account_disabled") from None
    # Creations at the same time all passed the count before their insert: counted
    # again after it, each sees at least every record committed before its own, so
    # the records kept never exceed the bound (a race may refuse one too many).
    if await store.count_active(record.user_id, now=now) > runtime.config.max_delegations_per_user:
        await store.revoke(record.id, user_id=record.user_id, now=now)
        raise refused("invalid_request", "Too many active delegations", "too_many_delegations")
    # A revocation of the parent running meanwhile lists its children either after
    # this insert (and revokes this one) or before it, having revoked the parent
    # first: then the parent is seen revoked here.
    if record.parent is not None and (
        await live_delegation(runtime, record.parent, user_id=record.user_id, now=now) is None
    ):
        await store.revoke(record.id, user_id=record.user_id, now=now)
        await runtime.store.replay.first_use(
            REVOKED_PREFIX + record.id, expires_at=record.expires_at + MAX_LEEWAY, now=now
        )
        raise _denied("This token may not delegate", "parent_inactive")

    act = act_claim(client.client_id, chain)
    access, ttl = runtime.mint_access_token(
        subject=record.user_id,
        client_id=client.client_id,
        scopes=record.scopes,
        audiences=record.audiences,
        extra={"act": act, "did": record.id},
        lifetime=record.expires_at - now,
    )
    refresh_token = None
    if "refresh_token" in client.grant_types and "refresh_token" in runtime.config.grant_types:
        refresh_token = await _refresh.start_family(
            runtime,
            client=client,
            subject=record.user_id,
            scopes=record.scopes,
            audiences=record.audiences,
            auth_time=None,
            family_id=record.id,
            extra={"did": record.id, "act": act},
            ends_at=record.expires_at,
        )
    body = runtime.token_response(access, ttl, record.scopes, refresh_token)
    body["issued_token_type"] = _ACCESS_TOKEN_TYPE
    logger.info(
        "Delegation %s: account %s to client %s until %d",
        record.id,
        record.user_id,
        record.actor,
        int(record.expires_at),
    )
    return body
