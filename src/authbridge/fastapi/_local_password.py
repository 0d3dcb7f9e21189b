"""The local password form of the login pages, under the password grant's rules.

The check is the token endpoint's own (``issuer._password_grant.check_password``):
the limit per client address, the failure limit per account counted *before*
hashing and given back on success, one hash for every attempt (the dummy hash
for an unknown, disabled or password-less account) and one answer for every
failure. Only the outcome differs: an account, not tokens.
"""

from __future__ import annotations

import logging

from ..issuer import IssuerRuntime, OAuthError
from ..issuer._password_grant import INVALID_CREDENTIALS
from ..issuer._password_grant import check_password as _check_password
from ..store import UserRecord

__all__ = ["INVALID_CREDENTIALS", "check_password"]

logger = logging.getLogger("authbridge.fastapi")


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
        return await _check_password(runtime, username, password, client_address=client_address)
    except OAuthError as exc:
        # The reason code only: never the username (a password is sometimes typed in it).
        logger.info("Password login refused: %s", exc.reason)
        raise
