"""RFC 8693 token exchange: a provider's token, or the app's own (delegation), for app tokens.

A client (a SPA that logged in with Google, a mobile app with Apple's SDK)
presents a token another provider issued to it; the app's tokens come back
for the account behind it. Who vouches for the token is not decided here:
the issuer calls a [SubjectTokenResolver][authbridge.issuer.SubjectTokenResolver]
(``IssuerRuntime.subject_tokens``, set by ``AuthBridge``), which verifies the
token with the resource server, checks it was issued to one of the app's own
client ids, and finds or creates the account. Without a resolver the grant is
``unsupported_grant_type``.

A subject token whose ``iss`` is the app's own issuer is delegation instead: a
robot acting for the token's user (``act``), decided by
``_delegation_exchange`` (the token is verified there with the app's own
token source, never handed to the resolver); only then may an
``actor_token`` be sent.

Refusals: a missing ``subject_token`` or ``subject_token_type``, a subject
token type other than access token, ID token or JWT, a ``requested_token_type``
other than an access token, ``act`` or ``may_act`` parameters (an actor is
never named by the request) and, with a provider's token, any
``actor_token`` are ``invalid_request``; so is a token the resolver refuses
(RFC 8693 §2.2.2: an invalid or unacceptable subject token is
``invalid_request``), with one fixed description (its reason goes to the log
only); a provider that cannot be reached is 503 ``temporarily_unavailable``.
The scopes are the requested ones among the client's and the account's, the
audience the RFC 8707 ``resource`` (or ``audience``) or the default.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import InvalidToken, LoginError, MissingToken, ProviderUnavailable, StoreUnavailable
from ..store import ClientRecord, UserRecord
from . import _delegation_exchange, _refresh
from ._errors import OAuthError
from ._runtime import TokenRequest, store_unavailable

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime

logger = logging.getLogger("authbridge.issuer")

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
"""RFC 8693 §3 token type of an OAuth 2.0 access token."""

ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
"""RFC 8693 §3 token type of an OpenID Connect ID token."""

JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
"""RFC 8693 §3 token type of a JWT."""

SUBJECT_TOKEN_TYPES = frozenset({ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE})
"""The ``subject_token_type`` values handed to the resolver."""

MAX_SUBJECT_TOKEN_CHARS = 16384
"""Longest subject token handed to the resolver."""

_REFUSED = "The subject token is invalid or not accepted"


@runtime_checkable
class SubjectTokenResolver(Protocol):
    """Turns a subject token of token exchange into the app's account.

    ``authbridge.client.SubjectTokens`` is the implementation ``AuthBridge``
    installs (resource-server verification, the provider's "issued to us"
    rule, then the account policy).
    """

    async def resolve(self, subject_token: str, subject_token_type: str) -> tuple[UserRecord, str]:
        """The account behind ``subject_token`` and the name of the provider that vouched for it.

        Raises:
            LoginError: the token was not issued to the app, its account is
                disabled or may not be created, or it is the app's own token.
            InvalidToken: the token did not verify.
            ProviderUnavailable: the provider could not be reached.
            StoreUnavailable: the store could not be reached.
        """
        ...


async def grant(
    runtime: IssuerRuntime, client: ClientRecord, request: TokenRequest
) -> dict[str, Any]:
    """Exchange a token (``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``).

    A provider's token goes to the resolver; the app's own access token is
    delegation (``_delegation_exchange``).

    Returns:
        The RFC 8693 §2.2.1 body: an access token, ``issued_token_type``,
        and, for a provider's token, a refresh token for a client with the
        ``refresh_token`` grant (never for delegation).

    Raises:
        OAuthError: ``unsupported_grant_type`` without a resolver,
            ``invalid_request`` (also for a refused subject token), ``invalid_scope``,
            ``invalid_target``, 503 ``temporarily_unavailable``.
    """
    try:
        return await _grant(runtime, client, request)
    except OAuthError as exc:
        logger.info("Token exchange refused for client %s: %s", client.client_id, exc.reason)
        raise
    except StoreUnavailable as exc:
        error = store_unavailable(exc)
        logger.info("Token exchange refused for client %s: %s", client.client_id, error.reason)
        raise error from None


def _bad_request(description: str, reason: str) -> OAuthError:
    return OAuthError("invalid_request", description, reason=reason)


def _check_form(form: Any) -> tuple[str, str]:
    subject_token = form.get("subject_token")
    subject_token_type = form.get("subject_token_type")
    if not subject_token or not subject_token_type:
        raise _bad_request("subject_token and subject_token_type are required", "no_subject_token")
    if form.get("act") is not None or form.get("may_act") is not None:
        # Who acts, and for whom, comes from verified tokens only (RFC 8693 §4.1, §4.4).
        raise _bad_request("act and may_act are not request parameters", "act_parameter_refused")
    requested = form.get("requested_token_type")
    if requested and requested != ACCESS_TOKEN_TYPE:
        raise _bad_request(
            "Only an access token can be requested", "unsupported_requested_token_type"
        )
    if subject_token_type not in SUBJECT_TOKEN_TYPES:
        raise _bad_request("subject_token_type is not supported", "unsupported_subject_token_type")
    if len(subject_token) > MAX_SUBJECT_TOKEN_CHARS:
        raise _bad_request("subject_token is too long", "subject_token_too_long")
    return subject_token, subject_token_type


def _resource(runtime: IssuerRuntime, form: Any) -> tuple[str, ...]:
    resource = form.get("resource") or None
    audience = form.get("audience") or None
    if resource is not None and audience is not None and resource != audience:
        raise OAuthError(
            "invalid_target", "resource and audience name different targets", reason="two_targets"
        )
    return runtime.grant_audiences(resource or audience)


async def _grant(
    runtime: IssuerRuntime, client: ClientRecord, request: TokenRequest
) -> dict[str, Any]:
    resolver = runtime.subject_tokens
    if resolver is None:
        raise OAuthError(
            "unsupported_grant_type",
            "This grant type is not supported",
            reason="no_subject_token_resolver",
        )
    form = request.form
    subject_token, subject_token_type = _check_form(form)
    own = _delegation_exchange.own_token(runtime, subject_token)
    if own is not None:
        return await _delegation_exchange.exchange(runtime, client, form, subject_token, own)
    if form.get("actor_token") or form.get("actor_token_type"):
        raise _bad_request(
            "An actor_token is accepted with the app's own subject tokens only",
            "actor_token_unsupported",
        )
    audiences = _resource(runtime, form)
    # What this client may have at all, before any call to a provider.
    runtime.grant_scopes(form.get("scope"), client.scopes)
    try:
        user, provider = await resolver.resolve(subject_token, subject_token_type)
    except (LoginError, InvalidToken, MissingToken) as exc:
        raise OAuthError(
            "invalid_request", _REFUSED, reason=f"subject_token_refused:{exc.reason}"
        ) from None
    except ProviderUnavailable as exc:
        raise OAuthError(
            "temporarily_unavailable",
            "The token's provider is temporarily unavailable",
            reason=f"provider_unavailable:{exc.reason}",
            status=503,
            retry_after=exc.retry_after or 5.0,
        ) from None
    if user.disabled:
        raise OAuthError(
            "invalid_request", _REFUSED, reason="subject_token_refused:account_disabled"
        )
    scopes = runtime.grant_scopes(form.get("scope"), client.scopes & user.scopes)
    access_token, expires_in = runtime.mint_access_token(
        subject=user.id, client_id=client.client_id, scopes=scopes, audiences=audiences
    )
    refresh_token = None
    if "refresh_token" in client.grant_types and "refresh_token" in runtime.config.grant_types:
        refresh_token = await _refresh.start_family(
            runtime,
            client=client,
            subject=user.id,
            scopes=scopes,
            audiences=audiences,
            auth_time=None,
            extra={"exchanged_from": provider},
        )
    logger.info(
        "Token exchange for client %s: account %s through provider %s",
        client.client_id,
        user.id,
        provider,
    )
    body = runtime.token_response(access_token, expires_in, scopes, refresh_token)
    body["issued_token_type"] = ACCESS_TOKEN_TYPE
    return body
