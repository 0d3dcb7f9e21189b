"""Providers' token formats, checked locally before the provider is asked.

A token its provider cannot have issued is refused (401, ``malformed_token``)
without any outbound call. Each check accepts every token of the format its
provider documents, and lets through any token whose shape it does not know
(the provider decides): formats change, and a valid token must never be
refused here. The checks stop junk and typos, not an attacker: a checksum is
public. What bounds a flood of well-formed made-up tokens is the per-source
concurrency limit (see `authbridge.resource._limits`).
"""

from __future__ import annotations

import re
import zlib

GITHUB_CHECKSUMMED_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")
"""GitHub token types whose 40-character tokens end in a CRC32 checksum."""

GOOGLE_ACCESS_TOKEN_MAX_BYTES = 2048
"""Google's documented upper bound on the size of its OAuth 2.0 access tokens."""

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_GOOGLE_BODY = re.compile(r"[0-9A-Za-z._-]+")
_FACEBOOK_BODY = re.compile(r"[0-9A-Za-z]+")


def github_checksum(payload: str) -> str:
    """The 6-character base62 CRC32 that ends a GitHub token whose random part is ``payload``."""
    value = zlib.crc32(payload.encode("ascii"))
    digits = []
    for _ in range(6):
        value, digit = divmod(value, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


def github_token_plausible(token: str) -> bool:
    """Whether ``token`` may be a GitHub token, by GitHub's published format.

    Since 2021 ("Behind GitHub's new authentication token formats"), personal
    (``ghp_``), OAuth (``gho_``), user-to-server (``ghu_``), server-to-server
    (``ghs_``) and refresh (``ghr_``) tokens are the prefix and 36 characters of
    ``[0-9A-Za-z]``: 30 random ones, then the base62 CRC32 of those 30, in 6
    characters. A token of that shape with a wrong checksum is refused. Other
    shapes are left to GitHub: fine-grained tokens (``github_pat_``, no
    published checksum), the longer ``ghs_`` tokens GitHub introduced in 2026
    (``ghs_`` + app id + a JWT), and any future format.
    """
    if len(token) == 40 and token[:4] in GITHUB_CHECKSUMMED_PREFIXES:
        body = token[4:]
        if body.isascii() and body.isalnum():
            return github_checksum(body[:30]) == body[30:]
    return True


def google_access_token_plausible(token: str) -> bool:
    """Whether ``token`` may be a Google OAuth 2.0 access token (``ya29.``).

    Google documents access tokens of at most 2048 bytes; the characters after
    the prefix are those Google's tokens are made of (``[0-9A-Za-z._-]``).
    """
    return (
        len(token) <= GOOGLE_ACCESS_TOKEN_MAX_BYTES
        and _GOOGLE_BODY.fullmatch(token, len("ya29.")) is not None
    )


def facebook_token_plausible(token: str, prefix_length: int = 3) -> bool:
    """Whether ``token`` may be a Facebook user access token (``EAA``).

    Facebook calls its tokens opaque and their length variable; those it
    issues are letters and digits only, which is what is checked.
    """
    return _FACEBOOK_BODY.fullmatch(token, prefix_length) is not None
