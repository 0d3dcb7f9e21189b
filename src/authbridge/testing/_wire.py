"""What goes in and out of the fake provider APIs: requests, replies, records."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx

__all__ = ["RecordedRequest", "TokenState"]

_ALNUM = string.digits + string.ascii_uppercase + string.ascii_lowercase
_REDACTED = "<redacted>"
_FORM = "application/x-www-form-urlencoded"
_LOGIN_CREDENTIALS = frozenset(
    {"client_secret", "code", "code_verifier", "password", "refresh_token", "client_assertion"}
)
_MIN_SECRET = 8  # shorter values are not searched for in URLs (too many false hits)


def _random_alnum(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def _base62(value: int, width: int) -> str:
    digits = ""
    while value:
        value, rest = divmod(value, 62)
        digits = _ALNUM[rest] + digits
    return digits.rjust(width, "0")


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


# -- what goes in and out ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0

    def to_response(self) -> httpx.Response:
        return httpx.Response(self.status, headers=list(self.headers), content=self.body)


def _json_reply(
    status: int,
    payload: Any,
    headers: Sequence[tuple[str, str]] = (),
    content_type: str = "application/json; charset=utf-8",
) -> _Reply:
    return _Reply(status, _dumps(payload), (("content-type", content_type), *headers))


@dataclass(frozen=True, slots=True)
class _Incoming:
    method: str
    path: str
    """Path relative to the fake's base URL (always starts with ``/``)."""
    query: Mapping[str, str]
    form: Mapping[str, str]
    headers: httpx.Headers
    body: bytes
    url: httpx.URL
    """The whole URL requested."""

    def authorization(self) -> tuple[str, str] | None:
        """``(scheme in lower case, credentials)`` of the Authorization header."""
        value = self.headers.get("authorization")
        if not value:
            return None
        scheme, _, credentials = value.strip().partition(" ")
        return scheme.lower(), credentials.strip()

    def header_token(self, *schemes: str) -> str | None:
        auth = self.authorization()
        if auth is None or auth[0] not in schemes or not auth[1]:
            return None
        return auth[1]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request a fake received, with every credential redacted.

    Attributes:
        method: HTTP method.
        path: Full URL path (not relative to the fake's base URL).
        query: Query parameters; credential values replaced by ``"<redacted>"``.
        form: Form-encoded body parameters, redacted the same way.
        headers: Request headers (lower-case names); the Authorization value
            is reduced to its scheme.
        auth_scheme: Scheme of the Authorization header (as sent), if any.
        token_in_url: Whether a credential travelled in the URL: a credential
            parameter (``access_token``, ``input_token``...) in the query, or
            any token the fake issued, or its app secret, anywhere in the URL.
        credential_locations: Where credentials were found: ``"header"``
            (Authorization), ``"query"`` (the URL) and/or ``"body"``.
        via: ``"transport"`` (in process) or ``"http"`` (through `FakeAPI.serve`).
    """

    method: str
    path: str
    query: Mapping[str, str]
    form: Mapping[str, str]
    headers: Mapping[str, str]
    auth_scheme: str | None
    token_in_url: bool
    credential_locations: frozenset[Literal["header", "query", "body"]]
    via: Literal["transport", "http"]


# -- failure injection -------------------------------------------------------------------


@dataclass(slots=True)
class _Failure:
    make: Callable[[_Incoming], _Reply] | None
    """Builds the reply; ``None`` answers normally (after ``delay``)."""
    delay: float
    remaining: int | None
    """Requests left to fail; ``None`` means until `FakeAPI.clear_failures`."""


# -- token registry ----------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class _Grant:
    issued_at: float
    expires_at: float | None


_G = TypeVar("_G", bound=_Grant)
TokenState = Literal["unknown", "revoked", "expired", "active"]
