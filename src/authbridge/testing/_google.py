"""Fake Google: access-token introspection (``tokeninfo``)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from cryptography.hazmat.primitives.asymmetric import rsa

from ._fakeapi import FakeAPI
from ._google_login import GOOGLE_ISSUER, _GoogleFlow, _GoogleUser
from ._jwt import _Signer
from ._wire import (
    _LOGIN_CREDENTIALS,
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

    Logging in (Google's OpenID Connect web server flow): ``GET
    {accounts_base}/o/oauth2/v2/auth`` answers an account chooser page (the
    users added with `add_user`; `approve_as` skips it), then 302 to
    ``redirect_uri`` with ``code``, ``state`` and ``scope``. ``POST
    {base_url}/token`` (``grant_type=authorization_code``) needs the client
    secret (Basic or body), the same ``redirect_uri``, and the PKCE verifier
    when a challenge was sent; each code works once within ``code_ttl``.
    It answers an access token (also known to ``/tokeninfo``) and, with the
    ``openid`` scope, an ID token signed with the fake's RSA key
    (`jwks_uri`), with ``at_hash``, the ``nonce``,
    ``email_verified`` as a boolean and ``hd``; ``{userinfo_base}/v1/userinfo``
    answers the same person. On Google's other hosts the fake answers only
    these paths, so a `FakeIssuer` standing for ``https://accounts.google.com``
    can still answer the rest of that host through the same routing.
    Errors have Google's shapes (``invalid_grant``/``Bad Request``,
    ``invalid_client`` 401, ``redirect_uri_mismatch``); no CORS headers.

    Args:
        base_url: Root of ``/tokeninfo`` and ``/token``.
        clock: Time source for expiry.
        client_id: The app's OAuth client id.
        client_secret: Its secret (random if omitted).
        redirect_uris: The client's registered redirect URIs (exact match);
            ``None`` accepts any http(s) URL.
        key: RSA key signing ID tokens (made on first use if omitted).
        kid: Its key id.
        accounts_base: Where the authorize page is.
        userinfo_base: Where ``/v1/userinfo`` is.
        certs_base: Where ``/oauth2/v3/certs`` is: ``accounts_base`` if
            omitted, so that a `GoogleProvider` left at Google's real key
            address (``https://www.googleapis.com``) reaches no fake, as
            before; pass that address to serve the keys there too.
        code_ttl: Seconds an authorization code stays redeemable.
    """

    _credential_params: ClassVar[frozenset[str]] = (
        frozenset({"access_token", "id_token", "token_handle"}) | _LOGIN_CREDENTIALS
    )

    def __init__(
        self,
        base_url: str = "https://oauth2.googleapis.com",
        *,
        clock: Callable[[], float] | None = None,
        client_id: str = "1234567890-fake.apps.googleusercontent.com",
        client_secret: str | None = None,
        redirect_uris: Sequence[str] | None = None,
        key: rsa.RSAPrivateKey | None = None,
        kid: str = "fake-google-1",
        accounts_base: str = "https://accounts.google.com",
        userinfo_base: str = "https://openidconnect.googleapis.com",
        certs_base: str | None = None,
        code_ttl: float = 600.0,
    ) -> None:
        super().__init__(base_url, clock=clock)
        self.client_id = client_id
        self.client_secret = client_secret or f"GOCSPX-{secrets.token_urlsafe(21)}"
        self.redirect_uris = None if redirect_uris is None else tuple(redirect_uris)
        self.issuer = GOOGLE_ISSUER
        self._signer = _Signer(key, kid)
        self._add_base("accounts", accounts_base, {"/o/oauth2/v2/auth"}.__contains__)
        self._add_base("userinfo", userinfo_base, {"/v1/userinfo"}.__contains__)
        certs = accounts_base if certs_base is None else certs_base
        self._add_base("certs", certs, {"/oauth2/v3/certs"}.__contains__)
        self._login = _GoogleFlow(self, code_ttl)

    def _secrets(self) -> set[str]:
        return {*super()._secrets(), self.client_secret}

    @property
    def authorization_endpoint(self) -> str:
        """``{accounts_base}/o/oauth2/v2/auth``."""
        return f"{self._base('accounts')}/o/oauth2/v2/auth"

    @property
    def token_endpoint(self) -> str:
        """``{base_url}/token``."""
        return f"{self.base_url}/token"

    @property
    def userinfo_endpoint(self) -> str:
        """``{userinfo_base}/v1/userinfo``."""
        return f"{self._base('userinfo')}/v1/userinfo"

    @property
    def jwks_uri(self) -> str:
        """``{certs_base}/oauth2/v3/certs``: the keys of the ID tokens."""
        return f"{self._base('certs')}/oauth2/v3/certs"

    def jwks(self) -> dict[str, Any]:
        """The published keys."""
        return self._signer.jwks()

    def add_user(
        self,
        email: str = "alice@example.test",
        sub: str | None = None,
        *,
        email_verified: bool = True,
        name: str | None = None,
        given_name: str | None = None,
        family_name: str | None = None,
        picture: str | None = None,
        hd: str | None = None,
    ) -> str:
        """Add an account to the chooser and return its ``sub``.

        Args:
            email: The address (what the chooser's form names).
            sub: The account id (21 random digits if omitted).
            email_verified: The ID token's and userinfo's ``email_verified``.
            name: Display name (with the ``profile`` scope).
            given_name: Given name.
            family_name: Family name.
            picture: Picture URL.
            hd: The Google Workspace domain (``None``: a consumer account).
        """
        sub = sub or "1" + "".join(secrets.choice("0123456789") for _ in range(20))
        user = _GoogleUser(email, sub, email_verified, name, given_name, family_name, picture, hd)
        self._login.add(email, user)
        return sub

    def approve_as(self, email: str, **callback: str | None) -> None:
        """Make the next authorize request redirect at once, approved by ``email``.

        Keyword arguments override the callback's parameters (``None``
        removes one).

        Raises:
            KeyError: No account ``email`` was added.
        """
        self._login.approve_as(email, callback)

    def tamper_next_id_token(self, header: Mapping[str, Any] | None = None, **claims: Any) -> None:
        """Change the next ID token: header members and claims (``None`` removes one).

        ``header={"alg": "none"}`` leaves it unsigned.
        """
        self._signer.tamper_next(header, claims)

    def _route_web(self, request: _Incoming) -> _Reply | None:
        return self._login.route(request)

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
        if request.path == "/token":
            return self._login.token(request)
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
