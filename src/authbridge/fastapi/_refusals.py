"""Refusals a developer can understand: one log line per kind per minute, and explanations.

Uvicorn's default logging configures only its own loggers; a WARNING from any
other logger reaches stderr through Python's last-resort handler (bare
message, no logger name). So the first refusal of each (provider, reason) in
a minute is logged at WARNING, starting with ``authbridge:``; the others of
that minute at INFO, counted in the next warning.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import AuthBridgeError, _bounded
from ..jose import parse_compact

logger = logging.getLogger("authbridge.fastapi")

WARN_EVERY = 60.0
"""Seconds between two WARNING lines for the same (provider, reason)."""

MAX_KINDS = 1024
"""Bound on the (provider, reason) pairs remembered for rate limiting."""

_PATH_CHARS = 200
_DETAIL_CHARS = 600

DEFAULT_RETRY_AFTER = 5
MAX_RETRY_AFTER = 3600


def retry_after(error: AuthBridgeError) -> str:
    """The ``Retry-After`` of a 503: ``error.retry_after`` rounded up (at least 1), else 5."""
    value = error.retry_after
    if value is None or not math.isfinite(value):
        return str(DEFAULT_RETRY_AFTER)
    return str(min(MAX_RETRY_AFTER, max(1, math.ceil(value))))


def _kind(error: AuthBridgeError) -> tuple[str | None, str]:
    # Our own codes; a ":suffix" may name a header or an HTTP status, so it is left
    # out and the key space stays that of the codes times the configured providers.
    return error.provider, error.reason.partition(":")[0]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def render_detail(detail: Mapping[str, Any]) -> str:
    """``detail`` for a log line: ASCII only (control characters escaped), bounded."""
    return _clip(ascii(dict(detail)), _DETAIL_CHARS)


def bounded_detail(values: Mapping[str, Any]) -> dict[str, Any]:
    """Diagnostic values bounded like `AuthBridgeError.detail` (strings cut, lists capped)."""
    return {str(key): _bounded(value) for key, value in values.items()}


# Fixed advice for refusals whose cause the detail values alone do not show.
_HINTS = {
    "no_credentials": (
        "no Authorization header reached the app: send 'Authorization: Bearer <token>' "
        "(a proxy in front of the app may remove the header)"
    ),
    "no_bearer_credentials": (
        "the Authorization header does not use the Bearer scheme: send "
        "'Authorization: Bearer <token>'"
    ),
}


def refusal_detail(
    error: AuthBridgeError,
    *,
    issuers: Sequence[str],
    prefixes: Sequence[str] = (),
    token: Callable[[], str],
    max_bytes: int,
) -> dict[str, Any]:
    """``error.detail`` plus what the FastAPI layer knows: the configured issuers, ...

    ``token`` returns the presented token; it is read only for an unknown
    issuer, to show the ``iss`` it names (unverified, as a diagnostic).
    """
    hint = _HINTS.get(error.reason)
    if hint is not None:
        return {**error.detail, "hint": hint}
    if error.reason == "unknown_token_format":
        return bounded_detail(
            {
                "configured_prefixes": list(prefixes),
                "hint": (
                    "an opaque token must start with a prefix a provider declares, or go to a "
                    "provider accepting unprefixed opaque tokens (none here); JWTs are routed "
                    "by their iss"
                ),
                **error.detail,
            }
        )
    if error.reason != "unknown_issuer":
        return error.detail
    detail = dict(error.detail)
    detail.setdefault("configured", list(issuers))
    actual = detail.get("actual")
    if actual is None:
        actual = _unverified_issuer(token, max_bytes)
        if actual is not None:
            detail["actual"] = actual
    if isinstance(actual, str):
        near = [i for i in issuers if i.rstrip("/") == actual.rstrip("/") and i != actual]
        if near:
            detail["hint"] = (
                f"the token's iss and the configured issuer {near[0]!r} differ only by a "
                "trailing slash: configure the issuer exactly as the provider writes it in iss"
            )
    return bounded_detail(detail)


def _unverified_issuer(token: Callable[[], str], max_bytes: int) -> str | None:
    try:
        issuer = parse_compact(token(), max_bytes=max_bytes).claims.get("iss")
    except AuthBridgeError:
        return None
    return issuer if isinstance(issuer, str) else None


class RefusalLog:
    """Logs refusals: WARNING for the first of each kind per `WARN_EVERY` seconds, else INFO.

    Memory is bounded by `MAX_KINDS` pairs; when full it starts over, which at
    worst logs one extra warning per kind.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, every: float = WARN_EVERY
    ) -> None:
        self._clock = clock
        self._every = every
        self._last: dict[tuple[str | None, str], float] = {}
        self._quiet: dict[tuple[str | None, str], int] = {}

    def should_warn(self, error: AuthBridgeError) -> bool:
        """Whether this refusal gets the WARNING line (and counts it)."""
        kind = _kind(error)
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._every:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return False
        if last is None and len(self._last) >= MAX_KINDS:
            self._last.clear()
            self._quiet.clear()
        self._last[kind] = now
        return True

    def log(
        self,
        error: AuthBridgeError,
        *,
        status: int,
        method: str,
        path: str,
        detail: Mapping[str, Any],
        warn: bool,
    ) -> None:
        """Write the line for one refusal (``warn`` from `should_warn`)."""
        level = logging.WARNING if warn else logging.INFO
        if not logger.isEnabledFor(level):
            return
        quiet = self._quiet.pop(_kind(error), 0) if warn else 0
        parts = [
            f"authbridge: Request refused with {status} {error.code} ({error.reason})",
            f"on {method} {_clip(ascii(path), _PATH_CHARS)}",
        ]
        if error.provider is not None:
            parts.append(f"provider={error.provider}")
        if error.claim is not None:
            parts.append(f"claim={error.claim}")
        if detail:
            parts.append(f"detail={render_detail(detail)}")
        if quiet:
            parts.append(f"({quiet} more like it since the last warning, logged at INFO)")
        logger.log(level, " ".join(parts))


def explanation(
    error: AuthBridgeError, *, message: str, detail: Mapping[str, Any]
) -> dict[str, Any]:
    """The response body's ``detail`` when ``explain_refusals`` is on (development only).

    The values may come from the token: they travel JSON-encoded in the body,
    never in a header.
    """
    body: dict[str, Any] = {"message": message, "error": error.code, "reason": error.reason}
    if error.provider is not None:
        body["provider"] = error.provider
    if error.claim is not None:
        body["claim"] = error.claim
    if detail:
        body["detail"] = dict(detail)
    if error.retry_after is not None:
        body["retry_after"] = int(retry_after(error))
    return body
