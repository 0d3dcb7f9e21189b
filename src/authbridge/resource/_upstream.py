"""Values from providers' APIs, range-checked before anything uses them.

A provider's answer is data from the network: a date may be year 1 or 10000, a
number may have four thousand digits, an id may be a boolean. Every value the
verifiers use goes through one of these functions, which either return a value
inside the range the rest of the code can handle (a datetime can hold, a log
line can carry) or say it is unusable; the verifier then refuses the token or
treats the provider as unavailable. Never a crash (a 500).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from .. import _json
from .._http import RawResponse
from ..errors import InvalidToken, ProviderUnavailable
from ..jose._jwt import numeric_date

LATEST = 253402300799.0
"""9999-12-31T23:59:59Z: the last second a `datetime` can hold."""

MAX_ID = 2**63 - 1
"""Largest numeric id accepted (GitHub and Facebook ids are 64-bit integers)."""

MAX_ID_DIGITS = 32
"""Longest id accepted as a string of digits (Facebook sends its ids as strings)."""

MAX_SUBJECT = 255
"""Longest ``sub`` accepted (OpenID Connect Core §5.1: at most 255 ASCII characters)."""

_NUMERIC_RANGE = 1e11
"""NumericDates beyond ±1e11 s are out of range (as for JWT claims)."""

MAX_RETRY_AFTER = 3600.0
"""Longest wait a provider's rate-limit answer may ask for before it is capped."""


def numeric(value: Any) -> float | None:
    """A NumericDate given as a JSON number or a string of digits (Google sends strings).

    ``None`` for anything else, including numbers beyond ±1e11 s (year 5138).
    """
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 12):
            return None
        value = int(value)
    return numeric_date(value)


def expiry_time(value: Any) -> float | None:
    """A provider-reported expiry (a JSON number, or a string of digits) in POSIX seconds.

    Long past (before -1e11 s) is still past: -1e11, so expired. Beyond 1e11 s
    (year 5138) there is no usable expiry: ``None``, as if none was given (reuse
    of the answer stays bounded by the cache TTL).

    Raises:
        ValueError: not a number at all (a boolean, NaN, other text...).
    """
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a NumericDate")
    if isinstance(value, float) and math.isnan(value):
        raise ValueError("not a NumericDate")
    if value < -_NUMERIC_RANGE:  # compared before any float(): 10**400 would overflow
        return -_NUMERIC_RANGE
    if value > _NUMERIC_RANGE:
        return None
    return float(value)


def iso_time(value: Any) -> float | None:
    """An ISO 8601 date-time (``Z`` or an offset; none means UTC) as POSIX seconds, or ``None``."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return numeric_date(moment.timestamp())
    except (ValueError, OverflowError, OSError):  # e.g. year 10000 once in UTC
        return None


def github_expiry(value: str | None) -> float | None:
    """GitHub's ``github-authentication-token-expiration`` header, or ``None``.

    The header reads ``2023-02-23 16:06:26 UTC`` on tokens that expire.
    """
    if not value:
        return None
    return iso_time(value.replace(" UTC", "+00:00").replace(" ", "T", 1))


def check_expiry(expires_at: float | None, now: float, *, provider: str) -> None:
    """Refuse a token whose provider-reported expiry has passed (or is before 1970).

    Raises:
        InvalidToken: ``expired``.
    """
    if expires_at is not None and now >= expires_at:
        raise InvalidToken("expired", provider=provider, claim="exp")


def utc(timestamp: float | None) -> datetime | None:
    """``timestamp`` as an aware UTC datetime; ``None`` if absent or beyond what one holds."""
    if timestamp is None or not 0 <= timestamp <= LATEST:
        return None
    try:
        return datetime.fromtimestamp(timestamp, UTC)
    except (ValueError, OverflowError, OSError):  # pragma: no cover - the range is checked
        return None


def numeric_id(value: Any) -> str | None:
    """A positive 64-bit id, given as a JSON integer or a string of digits, as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 < value <= MAX_ID else None
    if (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ID_DIGITS
        and value.isascii()
        and value.isdigit()
    ):
        return value
    return None


def subject(value: Any) -> str | None:
    """A usable ``sub``: a non-empty string of at most 255 characters, else ``None``."""
    if isinstance(value, str) and 0 < len(value) <= MAX_SUBJECT:
        return value
    return None


def rate_limited(response: RawResponse) -> bool:
    """Whether ``response`` says we are rate limited (429, or GitHub's 403 with the headers)."""
    headers = response.headers
    return response.status == 429 or (
        response.status == 403
        and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)
    )


def retry_after(response: RawResponse, now: float) -> float | None:
    """Seconds until a rate-limited request may be retried, from the response, at most 1 hour.

    ``Retry-After`` in delta-seconds (RFC 9110 §10.2.3), else GitHub's
    ``x-ratelimit-reset`` (POSIX seconds); ``None`` if neither is usable.
    """
    delay = _small_number(response.headers.get("retry-after"))
    if delay is None:
        reset = _small_number(response.headers.get("x-ratelimit-reset"))
        if reset is None:
            return None
        delay = max(0.0, reset - now)
    return min(delay, MAX_RETRY_AFTER)


def _small_number(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 12 or not value.isascii() or not value.isdigit():
        return None
    return float(value)


def unavailable(response: RawResponse, provider: str, now: float) -> ProviderUnavailable:
    """The error for a provider answer that is neither a verdict nor usable."""
    if rate_limited(response):
        return ProviderUnavailable(
            "rate_limited", provider=provider, retry_after=retry_after(response, now)
        )
    return ProviderUnavailable(f"http_status:{response.status}", provider=provider)


def batch_body(result: Any) -> tuple[int, dict[str, Any]] | None:
    """``(code, body)`` of one Graph API batch result, or ``None`` if malformed."""
    if not isinstance(result, dict):
        return None
    code, text = result.get("code"), result.get("body")
    if isinstance(code, bool) or not isinstance(code, int) or not isinstance(text, str):
        return None
    try:
        # The inner body is JSON inside a JSON string: parsed as strictly as any
        # provider answer (its escapes, e.g. a lone surrogate, only appear now).
        body = _json.loads(text)
    except (ValueError, RecursionError):
        return None
    return (code, body) if isinstance(body, dict) else None


def facebook_reason(error: Any) -> str:
    """A log-safe reason for a Graph API error object (its code, when a sane integer)."""
    if isinstance(error, dict):
        code = error.get("code")
        if not isinstance(code, bool) and isinstance(code, int) and 0 <= code < 10**9:
            return f"graph_error:{code}"
    return "graph_error"
