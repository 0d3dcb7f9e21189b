"""The ``authorization_code`` grant (RFC 6749 §4.1.3, RFC 7636 §4.6).

A request goes through, in order:

1. its form: ``code``, ``redirect_uri`` and ``code_verifier`` required
   (``invalid_request``), the verifier 43 to 128 characters of the RFC 7636
   alphabet and the code of the issuer's shape (``invalid_grant``); nothing is
   consumed yet;
2. the code, taken from the store atomically: of any number of concurrent
   redemptions, one gets it. Absent, expired or already used:
   ``invalid_grant``;
3. the code's client, redirect URI (exactly the authorization request's) and
   PKCE challenge (S256 of the verifier, compared in constant time), then the
   account (still there, not disabled). Each refusal is ``invalid_grant``;
   the code stays consumed;
4. an access token and, for clients with the ``refresh_token`` grant, a new
   refresh family.

A code presented again after it was redeemed (by any client, RFC 6749
§4.1.2) revokes what the first redemption got: the refresh family and the
access token. Both have identifiers derived from the code's hash, so the
replay needs no record of the first answer: it marks the code replayed
(``code-replayed:<hash>``), revokes the family and puts the access token's
``jti`` on the revocation list. The first redemption, after creating the
family, looks for that mark and revokes the family itself when a replay came
first: whichever order two concurrent redemptions interleave in, the family
ends revoked. Only codes that were issued (``code-issued:<hash>``, written by
`complete`) cause these writes; made-up ones cost a single lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from ..errors import StoreUnavailable
from ..jose._jwt import MAX_LEEWAY
from ..store import ClientRecord, UserRecord
from . import _refresh
from ._authorize import CODE_KIND, CODE_REPLAY_WINDOW, code_hash
from ._errors import OAuthError
from ._runtime import TokenRequest, store_unavailable
from ._secrets import CODE_PREFIX, hash_secret, well_formed

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime

logger = logging.getLogger("authbridge.issuer")

_INVALID = "The authorization code is invalid, expired, used or was issued to another client"
# RFC 7636 §4.1: code-verifier = 43*128unreserved.
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def _refused(reason: str) -> OAuthError:
    # One description for every refusal of a code: the answer never tells which check failed.
    return OAuthError("invalid_grant", _INVALID, reason=reason)


def family_id(hashed: str) -> str:
    """The refresh family a code's redemption starts (derived from the code's hash)."""
    return hash_secret(hashed, "code-family")[:32]


def access_token_id(hashed: str) -> str:
    """The ``jti`` of the access token a code's redemption mints."""
    return hash_secret(hashed, "code-access-token")[:32]


def s256(verifier: str) -> str:
    """BASE64URL(SHA-256(ASCII(verifier))) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def grant(
    runtime: IssuerRuntime, client: ClientRecord, request: TokenRequest
) -> dict[str, Any]:
    """Redeem an authorization code (``grant_type=authorization_code``).

    Returns:
        The RFC 6749 §5.1 body: an access token, and a refresh token for a
        client with the ``refresh_token`` grant.

    Raises:
        OAuthError: ``invalid_request`` (no code, redirect URI or verifier),
            ``invalid_grant`` (every other refusal, one description),
            ``invalid_target`` for a ``resource`` beyond the request's, 503
            when the store is down.
    """
    try:
        return await _grant(runtime, client, request)
    except OAuthError as exc:
        # The reason and the client only: never the code or the verifier.
        logger.info(
            "Authorization code grant refused for client %s: %s", client.client_id, exc.reason
        )
        raise
    except StoreUnavailable as exc:
        error = store_unavailable(exc)
        logger.info(
            "Authorization code grant refused for client %s: %s", client.client_id, error.reason
        )
        raise error from None


async def _grant(
    runtime: IssuerRuntime, client: ClientRecord, request: TokenRequest
) -> dict[str, Any]:
    form = request.form
    code = form.get("code")
    redirect_uri = form.get("redirect_uri")
    verifier = form.get("code_verifier")
    if not code:
        raise OAuthError("invalid_request", "code is required", reason="no_code")
    if not redirect_uri:
        raise OAuthError("invalid_request", "redirect_uri is required", reason="no_redirect_uri")
    if not verifier:
        raise OAuthError("invalid_request", "code_verifier is required", reason="no_code_verifier")
    if not _VERIFIER.fullmatch(verifier):
        raise _refused("malformed_code_verifier")
    if not well_formed(code, CODE_PREFIX):
        raise _refused("malformed_code")
    hashed = code_hash(code)
    now = runtime.clock()
    value = await runtime.store.one_time.take(CODE_KIND, hashed, now=now)
    if value is None:
        await _replayed(runtime, hashed, now)
        raise _refused("unknown_or_used_code")
    record = _record(value)
    # The client first: another client's code tells it nothing more.
    if record["client_id"] != client.client_id:
        raise _refused("client_mismatch")
    if not hmac.compare_digest(record["redirect_uri"].encode(), redirect_uri.encode()):
        raise _refused("redirect_uri_mismatch")
    if not hmac.compare_digest(s256(verifier), record["code_challenge"]):
        raise _refused("code_verifier_mismatch")
    user = await runtime.users.get(record["user_id"])
    if user is None or user.disabled:
        raise _refused("user_removed" if user is None else "user_disabled")
    return await _issue(runtime, client, user, record, hashed, form.get("resource"))


def _record(value: bytes) -> dict[str, Any]:
    try:
        record = json.loads(value)
    except ValueError:
        raise _refused("unreadable_code_record") from None
    keys = ("client_id", "redirect_uri", "code_challenge", "user_id", "scopes", "audiences")
    if not isinstance(record, dict) or not all(key in record for key in keys):
        raise _refused("unreadable_code_record")
    return record


def _audiences(resource: str | None, granted: tuple[str, ...]) -> tuple[str, ...]:
    """The request's audiences, or one of them (RFC 8707 §2.2)."""
    if resource is None or resource == "":
        return granted
    if resource not in granted:
        raise OAuthError(
            "invalid_target",
            "The token cannot be for another resource than the authorization request's",
            reason="audience_widening",
        )
    return (resource,)


async def _issue(  # noqa: PLR0917 - private, one call shape
    runtime: IssuerRuntime,
    client: ClientRecord,
    user: UserRecord,
    record: dict[str, Any],
    hashed: str,
    resource: str | None,
) -> dict[str, Any]:
    config = runtime.config
    # Rights withdrawn during the login (from the user, the client, the app) are not granted.
    scopes = frozenset(record["scopes"]) & user.scopes & client.scopes & frozenset(config.scopes)
    audiences = _audiences(resource, tuple(record["audiences"]))
    auth_time = record.get("auth_time")
    auth_time = float(auth_time) if isinstance(auth_time, int | float) else None
    access_token, expires_in = runtime.mint_access_token(
        subject=user.id,
        client_id=client.client_id,
        scopes=scopes,
        audiences=audiences,
        auth_time=auth_time,
        jti=access_token_id(hashed),
    )
    refresh_token = None
    if "refresh_token" in client.grant_types and "refresh_token" in config.grant_types:
        family = family_id(hashed)
        amr = record.get("amr")
        refresh_token = await _refresh.start_family(
            runtime,
            client=client,
            subject=user.id,
            scopes=scopes,
            audiences=tuple(record["audiences"]),
            auth_time=auth_time,
            family_id=family,
            extra={"amr": amr} if isinstance(amr, str) else None,
        )
        # A replay that came before the family existed could not revoke it: do it now.
        now = runtime.clock()
        if await runtime.store.replay.seen(f"code-replayed:{hashed}", now=now):
            await _revoke_family(runtime, family, client.client_id, now)
    return runtime.token_response(access_token, expires_in, scopes, refresh_token)


async def _replayed(runtime: IssuerRuntime, hashed: str, now: float) -> None:
    """Revoke what an issued code's first redemption got (RFC 6749 §4.1.2)."""
    replay = runtime.store.replay
    if not await replay.seen(f"code-issued:{hashed}", now=now):
        return  # never issued (or long ago): nothing to revoke, nothing written
    config = runtime.config
    await replay.first_use(
        f"code-replayed:{hashed}",
        expires_at=now + config.authorization_code_ttl + CODE_REPLAY_WINDOW,
        now=now,
    )
    # The access token may be minted after this (a concurrent first redemption):
    # the revocation outlasts any exp it can have.
    await replay.first_use(
        "at:" + access_token_id(hashed),
        expires_at=now + config.access_token_ttl + config.authorization_code_ttl + MAX_LEEWAY,
        now=now,
    )
    await _revoke_family(runtime, family_id(hashed), None, now)


async def _revoke_family(
    runtime: IssuerRuntime, family: str, client_id: str | None, now: float
) -> None:
    if await runtime.store.refresh.revoke(family, now=now, reason="code_reuse"):
        logger.warning(
            "authorization code reuse: family %s%s revoked",
            family,
            "" if client_id is None else f" of client {client_id}",
        )
