"""Fake Google: access-token introspection (``tokeninfo``)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ._fakeapi import FakeAPI
from ._wire import (
    _Grant,
    _Incoming,
    _json_reply,
    _Reply,
)

__all__ = ["FakeGoogle"]

# -- Google ------------------------------------------------------------------------------

_GOOGLE_EMAIL_SCOPES = frozenset({"email", "https://www.googleapis.com/auth/userinfo.email"})


@dataclass(kw_only=True, slots=True)
class _GoogleGrant(_Grant):
    sub: str
    azp: str
    aud: str
    scopes: tuple[str, ...]
    email: str | None
    email_verified: bool
    access_type: str


class FakeGoogle(FakeAPI[_GoogleGrant]):
    """Google's access-token introspection: ``oauth2.googleapis.com/tokeninfo``.

    Accepts the token as ``GET ?access_token=``, as ``access_token`` in a
    form-encoded ``POST`` body, or in ``Authorization: Bearer`` (what Google's
    own Node.js client sends, with ``POST``). Answers like the live endpoint:
    ``azp``, ``aud``, ``sub``, ``scope`` (space separated), ``exp`` and
    ``expires_in`` (both *strings*), ``email`` and ``email_verified`` (the
    string ``"true"``/``"false"``, only when an email scope was granted) and
    ``access_type``. Unknown, expired and revoked tokens get
    ``400 {"error": "invalid_token", "error_description": "Invalid Value"}``;
    a request with no token gets 400 with ``"Either access_token, id_token, or
    token_handle required"``. ID tokens (``id_token=``) are not handled here.

    Args:
        base_url: Root of the endpoint (``/tokeninfo`` is appended).
        clock: Time source for expiry.
    """

    _credential_params: ClassVar[frozenset[str]] = frozenset(
        {"access_token", "id_token", "token_handle"}
    )

    def __init__(
        self,
        base_url: str = "https://oauth2.googleapis.com",
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(base_url, clock=clock)

    @property
    def tokeninfo_url(self) -> str:
        """The tokeninfo endpoint."""
        return f"{self.base_url}/tokeninfo"

    def issue_access_token(
        self,
        sub: str = "110169484474386276334",
        client_id: str = "1234567890-fake.apps.googleusercontent.com",
        scopes: Sequence[str] = ("openid", "https://www.googleapis.com/auth/userinfo.email"),
        expires_in: float = 3599,
        *,
        email: str | None = None,
        email_verified: bool = True,
        access_type: Literal["online", "offline"] = "online",
        aud: str | None = None,
    ) -> str:
        """Issue an access token (``ya29.`` and random characters) and return it.

        Args:
            sub: The Google account id.
            client_id: The OAuth client the token was issued to (``azp``, and
                ``aud`` unless given).
            scopes: Granted scopes.
            expires_in: Seconds until expiry (Google's tokens last one hour).
            email: The account email; reported only if an email scope
                (``email`` or ``.../auth/userinfo.email``) was granted.
            email_verified: Reported with ``email``.
            access_type: ``online`` or ``offline``.
            aud: ``aud`` if it differs from ``azp``.
        """
        grant = _GoogleGrant(
            issued_at=self.clock(),
            expires_at=self.clock() + expires_in,
            sub=sub,
            azp=client_id,
            aud=client_id if aud is None else aud,
            scopes=tuple(scopes),
            email=email,
            email_verified=email_verified,
            access_type=access_type,
        )
        return self._issue(f"ya29.{secrets.token_urlsafe(120)}", grant)

    def _error(self, status: int, error: str, description: str) -> _Reply:
        return _json_reply(
            status,
            {"error": error, "error_description": description},
            content_type="application/json; charset=UTF-8",
        )

    def _api_error(
        self, status: int, message: str, reason: str, headers: Sequence[tuple[str, str]] = ()
    ) -> _Reply:
        body = {"error": {"code": status, "message": message, "status": reason}}
        return _json_reply(status, body, headers, "application/json; charset=UTF-8")

    def _not_found(self, request: _Incoming) -> _Reply:
        page = b"<!DOCTYPE html><title>Error 404 (Not Found)!!1</title><p><b>404.</b> Not Found"
        return _Reply(404, page, (("content-type", "text/html; charset=UTF-8"),))

    def _server_error(self, status: int) -> _Reply:
        return self._api_error(status, "The service is currently unavailable.", "UNAVAILABLE")

    def _rate_limited(self, request: _Incoming, retry_after: int | None) -> _Reply:
        headers = () if retry_after is None else (("retry-after", str(retry_after)),)
        return self._api_error(429, "Quota exceeded.", "RESOURCE_EXHAUSTED", headers)

    def _route(self, request: _Incoming) -> _Reply:
        if request.path != "/tokeninfo" or request.method not in ("GET", "POST", "HEAD"):
            return self._not_found(request)
        token = (
            request.query.get("access_token")
            or request.form.get("access_token")
            or request.header_token("bearer")
        )
        if not token:
            if any(k in request.query or k in request.form for k in ("id_token", "token_handle")):
                return self._error(400, "invalid_token", "Invalid Value")
            return self._error(
                400, "invalid_token", "Either access_token, id_token, or token_handle required"
            )
        if self.token_state(token) != "active":
            return self._error(400, "invalid_token", "Invalid Value")
        grant = self._grants[token]
        assert grant.expires_at is not None  # noqa: S101 - Google tokens always expire
        info: dict[str, Any] = {
            "azp": grant.azp,
            "aud": grant.aud,
            "sub": grant.sub,
            "scope": " ".join(grant.scopes),
            "exp": str(int(grant.expires_at)),
            "expires_in": str(max(int(grant.expires_at - self.clock()), 0)),
        }
        if grant.email is not None and _GOOGLE_EMAIL_SCOPES.intersection(grant.scopes):
            info["email"] = grant.email
            info["email_verified"] = "true" if grant.email_verified else "false"
        info["access_type"] = grant.access_type
        return _json_reply(200, info, content_type="application/json; charset=UTF-8")
