"""The local password form of the login pages, under the password grant's rules.

The same steps as the token endpoint's ``password`` grant, in the same order
(see ``issuer._password_grant``): the limit per client address, the failure
limit per account counted *before* hashing and given back on success, one
hash for every attempt (the dummy hash for an unknown, disabled or
password-less account) and one answer for every failure. Only the outcome
differs: an account, not tokens.
"""

from __future__ import annotations

import logging

from ..errors import StoreUnavailable
from ..issuer import IssuerRuntime, OAuthError, _ratelimit
from ..issuer._passwords import PasswordTooLong, normalize_username, password_bytes
from ..store import UserRecord

logger = logging.getLogger("authbridge.fastapi")

MAX_USERNAME_CHARS = 1024
"""Longest username looked up (as the password grant)."""

INVALID_CREDENTIALS = "Invalid username or password"


def _invalid(reason: str) -> OAuthError:
    return OAuthError("invalid_grant", INVALID_CREDENTIALS, reason=reason)


async def check_password(
    runtime: IssuerRuntime, username: str, password: str, *, client_address: str | None
) -> UserRecord:
    """The account ``username`` names, if ``password`` is its password.

    Raises:
        OAuthError: ``invalid_grant`` for every wrong combination (one
            answer), 429 ``slow_down`` over a rate limit, 503
            ``temporarily_unavailable`` when hashing is saturated.
        StoreUnavailable: the store is down.
    """
    try:
        return await _check(runtime, username, password, client_address)
    except OAuthError as exc:
        # The reason code only: never the username (a password is sometimes typed in it).
        logger.info("Password login refused: %s", exc.reason)
        raise


async def _check(
    runtime: IssuerRuntime, username: str, password: str, client_address: str | None
) -> UserRecord:
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
    user = await runtime.users.by_username(name) if _storable(name) else None
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
        await _refund(runtime, key, window_end)
        raise
    if not ok or user is None or stored is None:
        raise _invalid(reason)
    await _refund(runtime, key, window_end)
    if new_hash is not None:
        try:
            await runtime.users.set_password_hash(user.id, new_hash)
        except StoreUnavailable as exc:
            logger.warning("Password login: new password hash not saved (%s)", exc.reason)
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
        logger.warning("Password login: attempt not given back (%s)", exc.reason)


def _storable(text: str) -> bool:
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)
