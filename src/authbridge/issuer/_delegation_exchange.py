"""RFC 8693 token exchange of the app's own access tokens: delegation (``act``).

A robot (a confidential client, the *actor*) presents a user's access token of
this issuer as ``subject_token`` and gets a token to act for that user: ``sub``
the user, ``client_id`` the actor, ``act`` naming the actor (the subject
token's own ``act`` nested inside, for a chain). ``_exchange`` sends here every
subject token whose ``iss`` is this issuer; provider tokens keep going to the
subject-token resolver.

The subject token is verified exactly as the app's resource server verifies
it (signature, ``typ``, ``exp``, the app's own audience among its ``aud``,
not revoked, its delegation not revoked), and must speak for a user (a
client's own token does not). The actor is the authenticated client. An
``actor_token`` may be sent too: it must then be the app's own
client-credentials token of that same client (a third party cannot present
someone else's actor token).

Allowed when an active delegation of the user to this client covers the
request (its id becomes ``did``), or the policy allows it. A subject token that
is itself delegated (a chain) needs its delegation's ``may_delegate`` (or the
policy); the chain is at most `MAX_ACT_DEPTH` actors deep. Scope, audience and
lifetime stay within the subject token's, the actor client's and the
delegation's; the new token never outlives the subject token. No refresh token:
the actor exchanges again (or holds a delegation made through the API, whose
refresh tokens re-check it).

Refusals of the subject or actor token are ``invalid_request`` with one fixed
description (the reason goes to the log, never the token); a scope beyond is
``invalid_scope``, an audience beyond ``invalid_target``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import InvalidToken, ProviderUnavailable
from ..jose import ParsedJWT, parse_compact
from ..resource.principal import Principal
from ..store import ClientRecord, DelegationRecord
from ._delegation import DelegationRequest, ask_policy
from ._delegation_rules import (
    MAX_ACT_DEPTH,
    Actor,
    act_chain,
    act_claim,
    audiences_of,
    granted_audiences,
    granted_scopes,
    live_delegation,
    refused,
    requested_scopes,
)
from ._errors import OAuthError

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime

logger = logging.getLogger("authbridge.issuer")

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

MAX_ACTOR_TOKEN_CHARS = 16384
"""Longest actor token parsed."""

_REFUSED = "The subject token is invalid or not accepted"


def _refused(reason: str) -> OAuthError:
    return refused("invalid_request", _REFUSED, reason)


def own_token(runtime: IssuerRuntime, token: str) -> ParsedJWT | None:
    """The token parsed (not verified) if its ``iss`` is this issuer, else ``None``."""
    if token.count(".") != 2:
        return None
    try:
        parsed = parse_compact(token, max_bytes=runtime.source.max_token_bytes)
    except InvalidToken:
        return None
    return parsed if parsed.claims.get("iss") == runtime.config.issuer else None


async def _verify(runtime: IssuerRuntime, token: str, parsed: ParsedJWT, what: str) -> Principal:
    """Verify one of the issuer's access tokens as its resource server does, revocation included.

    Raises:
        OAuthError: ``invalid_request`` (``<what>_refused:<reason>``), or 503
            when the keys or the store cannot be reached.
    """
    source = runtime.source
    try:
        verified = await source.verify_jwt(parsed, len(token))
        await source.check_active(token, verified.principal)
    except InvalidToken as exc:
        raise _refused(f"{what}_refused:{exc.reason}") from None
    except ProviderUnavailable as exc:
        raise OAuthError(
            "temporarily_unavailable",
            "The authorization server is temporarily unavailable",
            reason=f"store_unavailable:{exc.reason}",
            status=503,
            retry_after=exc.retry_after or 5.0,
        ) from None
    # Within the verifier's leeway an expired token still verifies: not here.
    if float(verified.principal.claims["exp"]) - runtime.clock() < 1:
        raise _refused(f"{what}_refused:expired")
    return verified.principal


async def _actor(runtime: IssuerRuntime, client: ClientRecord, form: Mapping[str, str]) -> str:
    """The actor: the authenticated confidential client, confirmed by its ``actor_token``."""
    if client.public:
        raise _refused("public_actor")
    actor_token = form.get("actor_token")
    actor_token_type = form.get("actor_token_type")
    if actor_token is None and actor_token_type is None:
        return client.client_id
    # RFC 8693 §2.1: actor_token_type comes with actor_token, and only with it.
    if not actor_token or not actor_token_type:
        raise refused(
            "invalid_request",
            "actor_token and actor_token_type go together",
            "incomplete_actor_token",
        )
    if actor_token_type != ACCESS_TOKEN_TYPE:
        raise refused(
            "invalid_request", "actor_token_type is not supported", "unsupported_actor_token_type"
        )
    if len(actor_token) > MAX_ACTOR_TOKEN_CHARS:
        raise _refused("actor_token_refused:too_long")
    parsed = own_token(runtime, actor_token)
    if parsed is None:
        raise _refused("actor_token_refused:foreign_issuer")
    principal = await _verify(runtime, actor_token, parsed, "actor_token")
    claims = principal.claims
    if "act" in claims:
        raise _refused("actor_token_refused:delegated")
    # A client-credentials token: the client is its own subject.
    if claims.get("client_id") != principal.subject:
        raise _refused("actor_token_refused:not_a_client_token")
    if principal.subject != client.client_id:
        raise _refused("actor_token_refused:other_client")
    return client.client_id


def _target(form: Mapping[str, str]) -> str | None:
    resource = form.get("resource") or None
    audience = form.get("audience") or None
    if resource is not None and audience is not None and resource != audience:
        raise refused(
            "invalid_target", "resource and audience name different targets", "two_targets"
        )
    return resource or audience


def _covers(
    record: DelegationRecord,
    wanted: frozenset[str] | None,
    ceiling: frozenset[str],
    target: str | None,
    audiences: tuple[str, ...],
) -> bool:
    scopes_ok = wanted <= record.scopes if wanted is not None else bool(ceiling & record.scopes)
    if target is not None:
        return scopes_ok and target in record.audiences
    return scopes_ok and any(a in record.audiences for a in audiences)


async def _subject(
    runtime: IssuerRuntime, actor: str, subject_token: str, parsed: ParsedJWT
) -> tuple[Principal, tuple[Actor, ...]]:
    """The verified subject token's principal and its ``act`` chain, checked for ``actor``."""
    subject = await _verify(runtime, subject_token, parsed, "subject_token")
    claims = subject.claims
    user_id = subject.subject
    if not user_id or claims.get("client_id") == user_id:
        raise _refused("subject_not_a_user")  # a client's own token speaks for no user
    try:
        chain = act_chain(claims)
    except ValueError:
        raise _refused("subject_token_refused:malformed_act") from None
    if len(chain) >= MAX_ACT_DEPTH:
        raise _refused("chain_too_deep")
    if actor == user_id:
        raise _refused("self_delegation")
    if any(sub == actor for sub, _ in chain):
        raise _refused("actor_in_chain")
    return subject, chain


class _Coverage(NamedTuple):
    delegation: DelegationRecord | None  # whose scopes, audiences and end bound the token
    covered: bool  # allowed by the delegation alone
    refusal: OAuthError  # the answer when neither it nor the policy allows


async def _coverage(
    runtime: IssuerRuntime,
    *,
    user_id: str,
    actor: str,
    chain: tuple[Actor, ...],
    did: object,
    wanted: frozenset[str] | None,
    ceiling: frozenset[str],
    target: str | None,
    audiences: tuple[str, ...],
) -> _Coverage:
    """Which delegation allows the exchange, if one does."""
    now = runtime.clock()
    if chain:
        # A delegated token passed on: its own delegation decides (may_delegate).
        if did is None:
            return _Coverage(None, False, _refused("delegation_by_actor"))
        delegation = await live_delegation(runtime, did, user_id=user_id, now=now)
        if delegation is None:
            raise _refused("delegation_inactive")
        return _Coverage(delegation, delegation.may_delegate, _refused("delegation_by_actor"))
    found = await runtime.store.delegations.for_user(user_id, now=now)
    mine = [d for d in found if d.actor == actor]
    for record in mine:  # newest first
        if not _covers(record, wanted, ceiling, target, audiences):
            continue
        # One made under another delegation lives only as long as every one above it.
        if record.parent is None or (
            await live_delegation(runtime, record.id, user_id=user_id, now=now) is not None
        ):
            return _Coverage(record, True, _refused("not_delegated"))
    if not mine:
        return _Coverage(None, False, _refused("not_delegated"))
    # Delegated, but not this much.
    if target is None or any(target in d.audiences for d in mine):
        return _Coverage(
            None,
            False,
            refused("invalid_scope", "A requested scope is not allowed", "scope_beyond_delegation"),
        )
    return _Coverage(
        None,
        False,
        refused("invalid_target", "The audience is not allowed", "audience_beyond_delegation"),
    )


async def exchange(
    runtime: IssuerRuntime,
    client: ClientRecord,
    form: Mapping[str, str],
    subject_token: str,
    parsed: ParsedJWT,
) -> dict[str, Any]:
    """Exchange one of the app's own access tokens for a delegated one (see the module).

    Returns:
        The RFC 8693 §2.2.1 body: ``access_token`` (with ``act``),
        ``issued_token_type``, ``token_type``, ``expires_in``, ``scope``; never
        a refresh token.

    Raises:
        OAuthError: ``invalid_request`` (the subject or actor token refused, not
            delegated, a chain not allowed or too deep), ``invalid_scope``,
            ``invalid_target``, 503 ``temporarily_unavailable``.
    """
    config = runtime.config
    if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
        raise _refused("subject_token_type_mismatch")
    # What the request asks, before any store access.
    wanted = requested_scopes(runtime, form.get("scope"))
    target = _target(form)
    actor = await _actor(runtime, client, form)
    subject, chain = await _subject(runtime, actor, subject_token, parsed)
    claims = subject.claims
    user_id = str(subject.subject)
    # Within the subject token and the client, whatever a delegation says.
    ceiling = subject.scopes & client.scopes & frozenset(config.scopes)
    audiences = tuple(a for a in dict.fromkeys(audiences_of(claims)) if a in config.resources)
    granted_scopes(wanted, ceiling)
    granted_audiences(target, audiences)
    account = await runtime.users.get(user_id)
    if account is None or account.disabled:
        raise _refused("subject_token_refused:account_disabled")
    ceiling &= account.scopes
    delegation, covered, refusal = await _coverage(
        runtime,
        user_id=user_id,
        actor=actor,
        chain=chain,
        did=claims.get("did"),
        wanted=wanted,
        ceiling=ceiling,
        target=target,
        audiences=audiences,
    )
    if delegation is not None:
        ceiling &= delegation.scopes
        audiences = tuple(a for a in audiences if a in delegation.audiences)
    scopes = granted_scopes(wanted, ceiling)
    targets = granted_audiences(target, audiences)
    if not covered:
        subs = tuple(sub for sub, _ in chain)
        request = DelegationRequest(user_id, actor, scopes, targets, subs, "token_exchange")
        if await ask_policy(runtime, request) is not True:
            raise refusal
    now = runtime.clock()
    ends = [float(claims["exp"]), now + config.delegation_max_ttl]
    if delegation is not None:
        ends.append(delegation.expires_at)
    lifetime = min(ends) - now
    if lifetime < 1:
        raise _refused("subject_token_refused:expired")
    extra: dict[str, Any] = {"act": act_claim(actor, chain)}
    if delegation is not None:
        extra["did"] = delegation.id
    access_token, expires_in = runtime.mint_access_token(
        subject=user_id,
        client_id=actor,
        scopes=scopes,
        audiences=targets,
        extra=extra,
        lifetime=lifetime,
    )
    logger.info(
        "Token exchange for client %s: acting for account %s (delegation %s, %d actors)",
        actor,
        user_id,
        extra.get("did", "none"),
        len(chain) + 1,
    )
    body = runtime.token_response(access_token, expires_in, scopes, None)
    body["issued_token_type"] = ACCESS_TOKEN_TYPE
    return body
