"""Fake OpenID Connect UserInfo endpoint."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._fakeapi import FakeAPI
from ._wire import (
    _Grant,
    _Incoming,
    _json_reply,
    _Reply,
)

__all__ = ["FakeUserinfo"]

# -- OpenID Connect UserInfo -------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class _UserinfoGrant(_Grant):
    sub: str
    scopes: tuple[str, ...]
    claims: dict[str, Any]


class FakeUserinfo(FakeAPI[_UserinfoGrant]):
    """An OpenID Connect UserInfo endpoint (OIDC Core 1.0 section 5.3, RFC 6750).

    ``GET`` or ``POST`` with the token in ``Authorization: Bearer`` (or, for
    ``POST``, as ``access_token`` in a form-encoded body) answers the claims as
    JSON, always with ``sub``. Errors are RFC 6750 challenges: no token is
    ``401`` with ``WWW-Authenticate: Bearer`` and no error code; an unknown,
    revoked or expired token is ``401`` with ``error="invalid_token"``; a token
    without the ``openid`` scope is ``403`` with ``error="insufficient_scope"``;
    a token sent two ways at once is ``400`` with ``error="invalid_request"``.
    A token in the query string is ignored (RFC 6750 makes that method
    optional and discourages it), so the answer is the no-token 401.

    Args:
        issuer: The provider's root URL.
        userinfo_path: Path of the endpoint under ``issuer``.
        clock: Time source for expiry.
    """

    def __init__(
        self,
        issuer: str = "https://op.example.test",
        *,
        userinfo_path: str = "/userinfo",
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(issuer, clock=clock)
        self.userinfo_path = "/" + userinfo_path.lstrip("/")

    @property
    def issuer(self) -> str:
        """Alias of `base_url`."""
        return self.base_url

    @property
    def userinfo_endpoint(self) -> str:
        """The endpoint's URL."""
        return f"{self.base_url}{self.userinfo_path}"

    def issue_token(
        self,
        sub: str = "alice",
        scopes: Sequence[str] = ("openid", "profile", "email"),
        expires_in: float | None = 3600,
        **claims: Any,
    ) -> str:
        """Issue an opaque access token and return it.

        Args:
            sub: The subject (always in the answer).
            scopes: Granted scopes; without ``openid`` the endpoint answers 403.
            expires_in: Seconds until expiry (``None``: never).
            **claims: Further claims to answer (``name``, ``email``...).
        """
        grant = _UserinfoGrant(
            issued_at=self.clock(),
            expires_at=self._expires_at(expires_in),
            sub=sub,
            scopes=tuple(scopes),
            claims=dict(claims),
        )
        return self._issue(secrets.token_urlsafe(32), grant)

    @staticmethod
    def _challenge(
        status: int, error: str | None = None, description: str | None = None, **extra: str
    ) -> _Reply:
        params = {"error": error, "error_description": description, **extra}
        challenge = ", ".join(f'{k}="{v}"' for k, v in params.items() if v is not None)
        return _Reply(status, b"", (("www-authenticate", f"Bearer {challenge}".rstrip()),))

    def _not_found(self, request: _Incoming) -> _Reply:
        return _Reply(404, b"Not Found", (("content-type", "text/plain"),))

    def _server_error(self, status: int) -> _Reply:
        return _Reply(status, b"Service Unavailable", (("content-type", "text/plain"),))

    def _rate_limited(self, request: _Incoming, retry_after: int | None) -> _Reply:
        headers = (("retry-after", str(60 if retry_after is None else retry_after)),)
        return _Reply(429, b"Too Many Requests", (("content-type", "text/plain"), *headers))

    def _route(self, request: _Incoming) -> _Reply:
        if request.path != self.userinfo_path:
            return self._not_found(request)
        if request.method not in ("GET", "POST", "HEAD"):
            return _Reply(405, b"", (("allow", "GET, POST"),))
        header_token = request.header_token("bearer")
        body_token = request.form.get("access_token") if request.method == "POST" else None
        if header_token and body_token:
            return self._challenge(
                400, "invalid_request", "The access token was sent more than one way"
            )
        token = header_token or body_token
        if not token:
            return self._challenge(401)
        state = self.token_state(token)
        if state != "active":
            description = (
                "The access token expired" if state == "expired" else "The access token is invalid"
            )
            return self._challenge(401, "invalid_token", description)
        grant = self._grants[token]
        if "openid" not in grant.scopes:
            return self._challenge(
                403, "insufficient_scope", "The openid scope is required", scope="openid"
            )
        claims = {"sub": grant.sub, **grant.claims}
        return _json_reply(200, claims, content_type="application/json")
