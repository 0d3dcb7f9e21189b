"""The ``client_credentials`` grant (RFC 6749 §4.4): a machine's token for itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import OAuthError

if TYPE_CHECKING:
    from ..store import ClientRecord
    from ._runtime import IssuerRuntime, TokenRequest


async def grant(
    runtime: IssuerRuntime, client: ClientRecord, request: TokenRequest
) -> dict[str, Any]:
    """Issue an access token to an authenticated confidential client.

    The token's ``sub`` and ``client_id`` are the client (RFC 9068 §2.2: the
    subject of a client-credentials token is the client itself); its scopes
    are the requested ones among the client's (all of them when none is
    requested); its audience the RFC 8707 ``resource`` or the issuer's
    default. No refresh token (RFC 6749 §4.4.3): the client asks again.

    Raises:
        OAuthError: ``unauthorized_client`` for a public client,
            ``invalid_scope``, ``invalid_target``.
    """
    if client.public:
        # RFC 6749 §4.4: only a confidential client can use this grant.
        raise OAuthError(
            "unauthorized_client",
            "Public clients may not use the client_credentials grant",
            reason="public_client_credentials",
        )
    form = request.form
    scopes = runtime.grant_scopes(form.get("scope"), client.scopes)
    audiences = runtime.grant_audiences(form.get("resource"))
    token, expires_in = runtime.mint_access_token(
        subject=client.client_id,
        client_id=client.client_id,
        scopes=scopes,
        audiences=audiences,
    )
    return runtime.token_response(token, expires_in, scopes, None)
