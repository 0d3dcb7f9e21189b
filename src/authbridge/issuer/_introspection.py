"""RFC 7662 token introspection, for the app's other services (confidential clients).

The endpoint tells an authenticated confidential client whether a token of
this issuer is active now. Anything else (a token of another issuer, made-up,
expired, revoked, rotated, or a refresh token of another client) gets the
same ``{"active": false}``: the answer never tells whether a token existed.
Public clients are refused (RFC 7662 §2.1: the endpoint requires
authorization, and a public client proves nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidToken, ProviderUnavailable, StoreUnavailable
from ..jose import parse_compact
from ..store import ClientRecord
from ._errors import OAuthError
from ._refresh import token_hash
from ._runtime import TokenRequest, store_unavailable
from ._secrets import REFRESH_TOKEN_PREFIX, well_formed

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime

INACTIVE: dict[str, Any] = {"active": False}
"""The answer for every token that is not active (a fresh copy is returned each time)."""

# The claims an introspection answer repeats from an access token (RFC 7662 §2.2).
_ACCESS_CLAIMS = (
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
    "auth_time",
    "act",
    "did",
)


def required_token(request: TokenRequest) -> str:
    """The ``token`` parameter (RFC 7009 §2.1, RFC 7662 §2.1).

    Raises:
        OAuthError: ``invalid_request`` when it is missing or empty.
    """
    token = request.form.get("token")
    if not token:
        raise OAuthError("invalid_request", "token is required", reason="no_token")
    return token


async def access_token_claims(
    runtime: IssuerRuntime, token: str, *, strict_expiry: bool = True
) -> dict[str, Any] | None:
    """The claims of one of this issuer's access tokens, verified, or ``None``.

    Verified by the app's own token source (signature with the published
    keys, ``typ`` ``at+jwt``, ``iss``, ``aud``, ``exp`` within the source's
    leeway); with ``strict_expiry``, also refused from ``exp`` on, without
    leeway. Revocation is not checked.

    Raises:
        OAuthError: 503 ``temporarily_unavailable`` when the keys cannot be loaded.
    """
    if token.count(".") != 2:
        return None
    source = runtime.source
    try:
        parsed = parse_compact(token, max_bytes=source.max_token_bytes)
        if parsed.claims.get("iss") not in source.jwt_issuers:
            return None
        verified = await source.verify_jwt(parsed, len(token))
    except InvalidToken:
        return None
    except ProviderUnavailable as exc:
        raise OAuthError(
            "temporarily_unavailable",
            "The authorization server is temporarily unavailable",
            reason="keys_unavailable",
            status=503,
            retry_after=exc.retry_after or 5.0,
        ) from None
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None
    claims: dict[str, Any] = verified.principal.claims_copy()
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    if strict_expiry and exp <= runtime.clock():
        return None
    return claims


async def introspect(
    runtime: IssuerRuntime, client: ClientRecord, request: TokenRequest
) -> dict[str, Any]:
    """Answer an introspection request (RFC 7662 §2.2 body).

    ``token_type_hint`` is only a hint: the token's shape decides.

    Raises:
        OAuthError: ``invalid_client`` (401) for a public client;
            ``invalid_request`` without ``token``; 503 when the store is down.
    """
    if client.public:
        raise OAuthError(
            "invalid_client",
            "Introspection requires a confidential client",
            reason="public_client_introspection",
            status=401,
        )
    token = required_token(request)
    try:
        if well_formed(token, REFRESH_TOKEN_PREFIX):
            return await _refresh_token(runtime, client, token)
        return await _access_token(runtime, token)
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None


async def _refresh_token(
    runtime: IssuerRuntime, client: ClientRecord, token: str
) -> dict[str, Any]:
    now = runtime.clock()
    found = await runtime.store.refresh.find(token_hash(token))
    if found is None:
        return dict(INACTIVE)
    record, family = found
    if (
        # A refresh token is its client's business only (RFC 7662 §4).
        family.client_id != client.client_id
        or family.revoked_at is not None
        or now >= family.expires_at
        or now >= record.expires_at
        # A rotated token is spent, even within the benign-reuse interval.
        or record.generation != family.generation
    ):
        return dict(INACTIVE)
    user = await runtime.users.get(family.subject)
    if user is None or user.disabled:
        return dict(INACTIVE)
    return {
        "active": True,
        "scope": " ".join(sorted(family.scopes)),
        "client_id": family.client_id,
        "sub": family.subject,
        "exp": int(record.expires_at),
        "iat": int(record.issued_at),
        "token_type": "refresh_token",
        "iss": runtime.config.issuer,
    }


async def _access_token(runtime: IssuerRuntime, token: str) -> dict[str, Any]:
    claims = await access_token_claims(runtime, token)
    if claims is None:
        return dict(INACTIVE)
    jti = claims.get("jti")
    now = runtime.clock()
    if not isinstance(jti, str) or await runtime.store.replay.seen("at:" + jti, now=now):
        return dict(INACTIVE)
    did = claims.get("did")
    if did is not None and (
        not isinstance(did, str) or await runtime.store.replay.seen("dg:" + did, now=now)
    ):
        return dict(INACTIVE)  # a revoked delegation's token
    body: dict[str, Any] = {"active": True}
    body.update((name, claims[name]) for name in _ACCESS_CLAIMS if name in claims)
    body["token_type"] = "access_token"
    return body
