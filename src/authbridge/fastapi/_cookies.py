"""The login's cookies: the browser binding and the session.

Both are HttpOnly, ``Path=/``, and on an https issuer ``Secure`` with the
``__Host-`` prefix (a sibling subdomain or a plain-http page cannot set or
shadow them). Whether the issuer is https comes from its configured URL,
never from the request.

A cookie sent twice under one name (a shadowing attempt, or a stale copy)
counts as absent: the login is then bound to a fresh browser value and a
callback started elsewhere fails its binding check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from starlette.requests import HTTPConnection
from starlette.responses import Response

BROWSER_COOKIE = "authbridge_browser"
"""Name of the browser-binding cookie (``__Host-`` prefixed on https)."""

BROWSER_COOKIE_MAX_AGE = 400 * 86400
"""Lifetime of the browser-binding cookie (the longest browsers keep one)."""

_VALUE_CHARS = 43  # 32 random bytes, base64url without padding
_CSRF_LABEL = b"authbridge login form\0"


def new_cookie_value() -> str:
    """256 bits from the OS CSPRNG, base64url."""
    return secrets.token_urlsafe(32)


def well_formed(value: str) -> bool:
    """Whether ``value`` has the shape of `new_cookie_value`."""
    return (
        len(value) == _VALUE_CHARS
        and value.isascii()
        and all(c.isalnum() or c in "-_" for c in value)
    )


def form_csrf_token(browser: str) -> str:
    """The CSRF token of the login forms of one browser: a hash of its binding cookie.

    The page carries the token and the browser the cookie; a form posted from
    another site has the cookie but cannot read the page, and the cookie
    cannot be computed back from the token (SHA-256, 256-bit input). No server
    secret is involved, so any instance checks it.
    """
    digest = hashlib.sha256(_CSRF_LABEL + browser.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def same_token(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the expected one."""
    if presented is None or not presented.isascii():
        return False
    return hmac.compare_digest(presented.encode("ascii"), expected.encode("ascii"))


@dataclass(frozen=True, slots=True)
class CookieJar:
    """Names and attributes of the login's cookies for one issuer.

    Attributes:
        secure: The issuer is https: ``Secure`` and ``__Host-`` names.
        session_name: The session cookie's configured name.
        same_site: The session cookie's ``SameSite``.
    """

    secure: bool
    session_name: str
    same_site: Literal["lax", "strict"] = "lax"

    def _name(self, base: str) -> str:
        return f"__Host-{base}" if self.secure else base

    @property
    def browser_cookie(self) -> str:
        """The browser-binding cookie's name as sent."""
        return self._name(BROWSER_COOKIE)

    @property
    def session_cookie(self) -> str:
        """The session cookie's name as sent."""
        return self._name(self.session_name)

    def browser(self, connection: HTTPConnection) -> str | None:
        """The request's browser-binding value, or ``None`` (absent, repeated, malformed)."""
        value = _single(connection, self.browser_cookie)
        return value if value is not None and well_formed(value) else None

    def session(self, connection: HTTPConnection) -> str | None:
        """The request's session cookie value, or ``None`` (absent, repeated, malformed)."""
        value = _single(connection, self.session_cookie)
        return value if value is not None and 0 < len(value) <= 256 and value.isascii() else None

    def set_browser(self, response: Response, value: str) -> None:
        """Send the browser-binding cookie (``SameSite=Lax``: it must come back from the
        provider's redirect to the callback)."""
        response.set_cookie(
            self.browser_cookie,
            value,
            max_age=BROWSER_COOKIE_MAX_AGE,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def set_session(self, response: Response, value: str, *, max_age: float) -> None:
        """Send the session cookie, expiring with the session's absolute lifetime."""
        response.set_cookie(
            self.session_cookie,
            value,
            max_age=max(1, int(max_age)),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite=self.same_site,
        )

    def clear_session(self, response: Response) -> None:
        """Tell the browser to drop the session cookie."""
        response.delete_cookie(
            self.session_cookie,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite=self.same_site,
        )


def _single(connection: HTTPConnection, name: str) -> str | None:
    """The value of cookie ``name`` if the request sends it exactly once."""
    found: list[str] = []
    for header, raw in connection.scope.get("headers", ()):
        if header != b"cookie":
            continue
        text = raw.decode("latin-1")
        for part in text.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                found.append(value.strip())
    return found[0] if len(found) == 1 else None
