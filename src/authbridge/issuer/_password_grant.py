"""The ``password`` grant (RFC 6749 §4.3): local accounts, for first-party clients only.

RFC 9700 §2.4 forbids this grant for third parties: the client sees the
password. authbridge offers it for the app's own clients (its SPA, its
command-line tool, Swagger UI's Authorize).

A request goes through, in order:

1. its form (``username`` and ``password`` required: ``invalid_request``),
   the ``resource`` (``invalid_target``) and the scopes the client may have
   at all (``invalid_scope``), none of which says anything about an account;
2. the limit per client address: every attempt counts;
3. the limit per account (by normalised username, whether the account
   exists or not): the attempt is counted as a failure *before* hashing, and
   given back when the password turns out right (or when no hash was
   computed because the hasher was full). Counting first bounds the guesses
   exactly: concurrent attempts cannot all pass a check made before any of
   them fails;
4. the hash: the account's, or for an unknown, disabled or password-less
   account the dummy hash, so each costs one hash and gets the same
   ``invalid_grant`` body;
5. on success: rehash when the parameters changed, the scopes the user and the
   client both allow, an access token, and a refresh token for clients with
   the ``refresh_token`` grant.

A success does not reset the failure count: if it did, a user (or a script)
logging in regularly would keep resetting the budget of whoever is guessing
that account's password, which is then unlimited. A mistyping user keeps
whatever of the budget is left; the window (``password_window``) ends it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import StoreUnavailable
from ..store import ClientRecord, UserRecord
from . import _ratelimit, _refresh
from ._errors import OAuthError
from ._passwords import PasswordTooLong, normalize_username, password_bytes
from ._runtime import TokenRequest, store_unavailable

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime

logger = logging.getLogger("authbridge.issuer")

MAX_USERNAME_CHARS = 1024
"""Longest username looked up; a longer one cannot name an account."""

INVALID_CREDENTIALS = "Invalid username or password"


def _invalid(reason: str) -> OAuthError:
    return OAuthError("invalid_grant", INVALID_CREDENTIALS, reason=reason)


async def grant(
    runtime: IssuerRuntime, client: ClientRecord, request: TokenRequest
) -> dict[str, Any]:
    """Answer a ``password`` grant request of an authenticated ``client``.

    Raises:
        OAuthError: ``invalid_request`` (no username or password),
            ``invalid_target``, ``invalid_scope``, ``invalid_grant`` (wrong
            password, unknown, disabled or password-less account: one answer),
            429 ``slow_down`` over a rate limit, 503 ``temporarily_unavailable``
            when hashing is saturated or the store is down.
    """
    try:
        return await _grant(runtime, client, request)
    except OAuthError as exc:
        # One line per refused login: the reason code and the client, never
        # the username (a password is sometimes typed into it) or the password.
        logger.info("Password grant refused for client %s: %s", client.client_id, exc.reason)
        raise
    except StoreUnavailable as exc:
        error = store_unavailable(exc)
        logger.info("Password grant refused for client %s: %s", client.client_id, error.reason)
        raise error from None


async def _grant(
    runtime: IssuerRuntime, client: ClientRecord, request: TokenRequest
) -> dict[str, Any]:
    form = request.form
    username = form.get("username")
    password = form.get("password")
    if not username or not password:
        raise OAuthError(
            "invalid_request", "username and password are required", reason="missing_credentials"
        )
    name = normalize_username(username[: MAX_USERNAME_CHARS + 1])
    if not name:
        raise OAuthError(
            "invalid_request", "username and password are required", reason="missing_credentials"
        )
    runtime.grant_audiences(form.get("resource"))
    # What this client may be granted at all: refusing here reveals nothing of an account.
    runtime.grant_scopes(form.get("scope"), client.scopes)

    user = await check_password(runtime, username, password, client_address=request.client_address)
    return await _issue(runtime, client, user, request)


async def check_password(
    runtime: IssuerRuntime, username: str, password: str, *, client_address: str | None
) -> UserRecord:
    """The account ``username`` names, if ``password`` is its password: steps 2 to 4 above.

    Shared by this grant and the login pages' password form, so both follow
    one rule: the same limits, one hash per attempt, one answer for every
    failure, and a rehash when the parameters changed.

    Raises:
        OAuthError: ``invalid_grant`` for every wrong combination (and for
            an empty username or password), 429 ``slow_down`` over a rate
            limit, 503 ``temporarily_unavailable`` when hashing is saturated.
        StoreUnavailable: the store is down.
    """
    name = normalize_username(username[: MAX_USERNAME_CHARS + 1])
    if not name or not password:
        raise _invalid("missing_credentials")
    config = runtime.config
    counters = runtime.store.rate_limits
    window = config.password_window
    now = runtime.clock()
    if client_address:
        await _ratelimit.count(
            counters,
            _ratelimit.address_key(client_address),
            limit=config.password_attempts_per_address,
            window=window,
            now=now,
            reason="rate_limited_address",
        )
    if len(username) > MAX_USERNAME_CHARS:
        raise _invalid("username_too_long")
    key = _ratelimit.account_key(name)
    window_end = await _ratelimit.count(
        counters,
        key,
        limit=config.password_failures_per_account,
        window=window,
        now=now,
        reason="rate_limited_account",
    )
    try:
        password_bytes(password)
    except PasswordTooLong:
        raise _invalid("password_too_long") from None

    # A control character (NUL, which PostgreSQL's text refuses) names no account:
    # no lookup, but the same hash and answer as an unknown user.
    try:
        user = await runtime.users.by_username(name) if _storable(name) else None
    except StoreUnavailable:
        # No password was tested: an outage of the accounts' store (the counters may
        # live elsewhere, in Redis) must not lock the account afterwards.
        await _refund(runtime, key, window_end)
        raise
    stored: str | None = None
    reason = "unknown_user"
    if user is not None:
        if user.disabled:
            reason = "account_disabled"
        elif user.password_hash is None:
            reason = "no_password"
        else:
            stored, reason = user.password_hash, "wrong_password"
    try:
        ok, new_hash = await runtime.passwords.verify(password, stored)
    except OAuthError:
        # Hashing saturated: no password was tested, so no failure is counted.
        await _refund(runtime, key, window_end)
        raise
    if not ok or user is None or stored is None:
        raise _invalid(reason)

    await _refund(runtime, key, window_end)
    if new_hash is not None:
        await _rehash(runtime, user, new_hash)
    return user


async def _refund(runtime: IssuerRuntime, key: str, window_end: float) -> None:
    try:
        await _ratelimit.refund(
            runtime.store.rate_limits,
            key,
            window=runtime.config.password_window,
            now=runtime.clock(),
            end=window_end,
        )
    except StoreUnavailable as exc:
        # Book-keeping only: at worst this attempt counts as a failure.
        logger.warning("Password grant: attempt not given back (%s)", exc.reason)


async def _rehash(runtime: IssuerRuntime, user: UserRecord, new_hash: str) -> None:
    try:
        await runtime.users.set_password_hash(user.id, new_hash)
    except StoreUnavailable as exc:
        # The login stands; the next one rehashes again.
        logger.warning("Password grant: new password hash not saved (%s)", exc.reason)


async def _issue(
    runtime: IssuerRuntime, client: ClientRecord, user: UserRecord, request: TokenRequest
) -> dict[str, Any]:
    form = request.form
    scopes = runtime.grant_scopes(form.get("scope"), user.scopes & client.scopes)
    audiences = runtime.grant_audiences(form.get("resource"))
    auth_time = runtime.clock()
    access_token, expires_in = runtime.mint_access_token(
        subject=user.id,
        client_id=client.client_id,
        scopes=scopes,
        audiences=audiences,
        auth_time=auth_time,
    )
    refresh_token = None
    if "refresh_token" in client.grant_types and "refresh_token" in runtime.config.grant_types:
        refresh_token = await _refresh.start_family(
            runtime,
            client=client,
            subject=user.id,
            scopes=scopes,
            audiences=audiences,
            auth_time=auth_time,
        )
    return runtime.token_response(access_token, expires_in, scopes, refresh_token)


def _storable(text: str) -> bool:
    """No control character: such a name can be no account's."""
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)
