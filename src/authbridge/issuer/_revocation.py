"""RFC 7009 token revocation.

A refresh token revokes its whole family (every token issued from the same
login); an access token of this issuer is recorded as revoked until its
``exp`` (``"at:" + jti`` in the replay store, which the app's own token
source checks in ``check_active``), kept past it by the longest leeway a
verifier may allow. A token of another client, of another
issuer, made-up or already revoked changes nothing and still gets 200: the
answer never tells whether a token existed (RFC 7009 §2.2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import StoreUnavailable
from ..jose._jwt import MAX_LEEWAY
from ..store import ClientRecord
from ._introspection import access_token_claims, required_token
from ._refresh import token_hash
from ._runtime import TokenRequest, store_unavailable
from ._secrets import REFRESH_TOKEN_PREFIX, well_formed

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime


async def revoke(runtime: IssuerRuntime, client: ClientRecord, request: TokenRequest) -> None:
    """Revoke the presented token if it is this client's (RFC 7009 §2.1).

    ``token_type_hint`` is only a hint (§2.1: the server extends its search
    anyway): the token's shape decides, and every hint value is accepted.

    Raises:
        OAuthError: ``invalid_request`` without ``token``; 503 when the store is down.
    """
    token = required_token(request)
    try:
        if well_formed(token, REFRESH_TOKEN_PREFIX):
            await _refresh_token(runtime, client, token)
        else:
            await _access_token(runtime, client, token)
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None


async def _refresh_token(runtime: IssuerRuntime, client: ClientRecord, token: str) -> None:
    found = await runtime.store.refresh.find(token_hash(token))
    if found is None:
        return
    _, family = found
    if family.client_id != client.client_id:
        return  # §2.1: the token was not issued to this client; nothing is said
    await runtime.store.refresh.revoke(family.id, now=runtime.clock(), reason="revoked")


async def _access_token(runtime: IssuerRuntime, client: ClientRecord, token: str) -> None:
    # Within the resource server's leeway an expired token still passes: revoke it too.
    claims = await access_token_claims(runtime, token, strict_expiry=False)
    if claims is None or claims.get("client_id") != client.client_id:
        return
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        await runtime.store.replay.first_use(
            "at:" + jti, expires_at=float(claims["exp"]) + MAX_LEEWAY, now=runtime.clock()
        )
