"""Fake Facebook: Graph API token inspection."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx

from ._facebook_login import DIALOG, _FacebookFlow, _FacebookUser, appsecret_proof
from ._fakeapi import FakeAPI
from ._wire import (
    _LOGIN_CREDENTIALS,
    _Grant,
    _Incoming,
    _json_reply,
    _random_alnum,
    _Reply,
)

__all__ = ["FakeFacebook"]

# -- Facebook ----------------------------------------------------------------------------

_PACIFIC = timezone(timedelta(hours=-8), "PST")
_GRAPH_VERSIONED = re.compile(r"^/v\d+\.\d+(/.*)?$")
_FB_JSON = "application/json; charset=UTF-8"
_FB_NEEDS_APP_TOKEN = (
    "(#100) You must provide an app access token, "
    "or a user access token that is an owner or developer of the app"
)

_FB_CANNOT_PARSE = "Invalid OAuth access token - Cannot parse access token"
_FB_BATCH_LIMIT = 50


@dataclass(kw_only=True, slots=True)
class _FacebookGrant(_Grant):
    user_id: str
    app_id: str
    scopes: tuple[str, ...]
    data_access_expires_at: int


class FakeFacebook(FakeAPI[_FacebookGrant]):
    """Facebook Graph API token inspection: ``GET /{version}/debug_token``.

    As documented: ``input_token`` (the token to inspect) and ``access_token``
    (the app access token ``APP_ID|APP_SECRET``) are query parameters; a good
    answer is ``{"data": {"app_id", "type", "application",
    "data_access_expires_at", "expires_at", "is_valid", "issued_at",
    "scopes", "user_id"}}`` (ids are strings, times are epoch seconds,
    ``expires_at`` 0 for a token that never expires). A bad *input* token still
    answers 200, with ``is_valid: false`` and ``data.error`` (code 190, with
    subcode 463 once expired, 460 once invalidated); a bad *app* token answers
    400 with a top-level Graph API error object (``message``, ``type``,
    ``code``, ``fbtrace_id``). The answer is about whichever app the token
    belongs to: a token of another app is ``is_valid: true`` with that app's
    ``app_id``, which the caller must check.

    Keeping credentials out of the request URL: the app token is also accepted
    in ``Authorization: Bearer`` (or ``OAuth``), as Meta documents for other
    APIs on graph.facebook.com (the debug_token page itself only shows the
    query form); and a batch request, which Meta documents (``POST`` to the
    Graph root with form fields ``batch`` and ``access_token``), carries
    ``debug_token?input_token=...`` inside its body, answering a list of
    ``{"code", "headers", "body"}`` with ``body`` a JSON *string*.
    ``POST /debug_token`` with form fields is *not* documented; it is refused
    unless ``accept_post=True``.

    Logging in ("Manually Build a Login Flow"): ``GET
    {www_base}/{version}/dialog/oauth`` answers a login dialog page (the users
    added with `add_user`; `approve_as` skips it), then 302 to
    ``redirect_uri`` with ``code`` and ``state`` (a denial is
    ``error=access_denied&error_reason=user_denied``). ``GET`` (query, as
    documented) or ``POST`` ``{graph_base}/{version}/oauth/access_token``
    needs ``client_id``, ``client_secret``, the dialog's ``redirect_uri``
    and, after a PKCE challenge, ``code_verifier``; each code works once
    within ``code_ttl``. ``GET /{version}/me?fields=id,name,email`` answers
    the user (``email`` only with that permission); ``appsecret_proof`` is
    checked when sent and required with ``require_appsecret_proof``.
    Errors are Graph API error objects; no CORS headers.

    Args:
        app_id: Your app's id.
        app_secret: Your app's secret (random if omitted).
        graph_base: The Graph API root.
        version: Graph API version used in `debug_token_url` (any
            ``vN.N`` prefix, or none, is accepted).
        app_name: Reported as ``application``.
        accept_post: Also answer ``POST /debug_token`` with form parameters.
        clock: Time source for expiry.
        redirect_uris: Valid OAuth redirect URIs (exact match); ``None``
            accepts any http(s) URL.
        www_base: Where the login dialog is.
        require_appsecret_proof: The app's "Require App Secret" setting.
        code_ttl: Seconds an authorization code stays redeemable.
    """

    _credential_params: ClassVar[frozenset[str]] = (
        frozenset({"access_token", "input_token"}) | _LOGIN_CREDENTIALS
    )

    def __init__(
        self,
        app_id: str = "1234567890123456",
        app_secret: str | None = None,
        graph_base: str = "https://graph.facebook.com",
        version: str = "v19.0",
        *,
        app_name: str = "authbridge-test",
        accept_post: bool = False,
        clock: Callable[[], float] | None = None,
        redirect_uris: Sequence[str] | None = None,
        www_base: str = "https://www.facebook.com",
        require_appsecret_proof: bool = False,
        code_ttl: float = 600.0,
    ) -> None:
        super().__init__(graph_base, clock=clock)
        self.redirect_uris = None if redirect_uris is None else tuple(redirect_uris)
        self.require_appsecret_proof = require_appsecret_proof
        self._add_base("www", www_base, lambda path: DIALOG.match(path) is not None)
        self._login = _FacebookFlow(self, code_ttl)
        self.app_id = app_id
        self.app_secret = app_secret or secrets.token_hex(16)
        self.version = version
        self.app_name = app_name
        self.accept_post = accept_post

    @property
    def graph_base(self) -> str:
        """Alias of `base_url`."""
        return self.base_url

    @property
    def debug_token_url(self) -> str:
        """``{graph_base}/{version}/debug_token``."""
        return f"{self.base_url}/{self.version}/debug_token"

    @property
    def dialog_url(self) -> str:
        """``{www_base}/{version}/dialog/oauth``."""
        return f"{self._base('www')}/{self.version}/dialog/oauth"

    @property
    def access_token_url(self) -> str:
        """``{graph_base}/{version}/oauth/access_token``."""
        return f"{self.base_url}/{self.version}/oauth/access_token"

    def appsecret_proof(self, access_token: str) -> str:
        """The ``appsecret_proof`` of ``access_token`` for this app."""
        return appsecret_proof(self.app_secret, access_token)

    def add_user(
        self,
        name: str = "Alice Example",
        user_id: str | None = None,
        *,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
    ) -> str:
        """Add a user to the login dialog and return the app-scoped id (the dialog's key).

        Args:
            name: Display name.
            user_id: The app-scoped user id (a fresh number if omitted).
            email: Answered by ``/me`` with the ``email`` permission (Facebook
                says nothing of its verification).
            first_name: First name.
            last_name: Last name.
        """
        user_id = user_id or str(10_000_000_000 + len(self._login.users) + 1)
        self._login.add(user_id, _FacebookUser(user_id, name, email, first_name, last_name))
        return user_id

    def approve_as(self, user_id: str, **callback: str | None) -> None:
        """Make the next dialog request redirect at once, approved by ``user_id``.

        Keyword arguments override the callback's parameters (``None``
        removes one).

        Raises:
            KeyError: No user ``user_id`` was added.
        """
        self._login.approve_as(user_id, callback)

    def _route_web(self, request: _Incoming) -> _Reply | None:
        path = self._under(request, "www")
        if path is not None and DIALOG.match(path):
            return self._login.authorize(request, f"{self._base('www')}{path}")
        return None

    def _json(self, status: int, payload: Any) -> _Reply:
        return _json_reply(status, payload, content_type=_FB_JSON)

    @property
    def app_access_token(self) -> str:
        """The app access token, ``APP_ID|APP_SECRET``."""
        return f"{self.app_id}|{self.app_secret}"

    def _secrets(self) -> set[str]:
        return {*super()._secrets(), self.app_secret}

    def issue_token(
        self,
        user_id: str = "10001",
        scopes: Sequence[str] = ("public_profile", "email"),
        expires_in: float | None = 60 * 24 * 3600,
        *,
        app_id: str | None = None,
    ) -> str:
        """Issue a user access token (``EAA`` and random characters) and return it.

        Args:
            user_id: The app-scoped user id.
            scopes: Granted permissions.
            expires_in: Seconds until expiry (long-lived tokens last 60 days;
                ``None``: never, reported as ``expires_at: 0``).
            app_id: The app the token belongs to (this fake's app if omitted).
        """
        now = self.clock()
        grant = _FacebookGrant(
            issued_at=now,
            expires_at=self._expires_at(expires_in),
            user_id=user_id,
            app_id=self.app_id if app_id is None else app_id,
            scopes=tuple(scopes),
            data_access_expires_at=int(now + 90 * 24 * 3600),
        )
        return self._issue(f"EAA{_random_alnum(180)}", grant)

    # -- answers -------------------------------------------------------------------------

    def _error(
        self,
        status: int,
        code: int,
        message: str,
        *,
        kind: str = "OAuthException",
        subcode: int | None = None,
        transient: bool = False,
        headers: Sequence[tuple[str, str]] = (),
    ) -> _Reply:
        error: dict[str, Any] = {"message": message, "type": kind, "code": code}
        if subcode is not None:
            error["error_subcode"] = subcode
        if transient:
            error["is_transient"] = True
        error["fbtrace_id"] = _random_alnum(23)
        return _json_reply(status, {"error": error}, headers, _FB_JSON)

    def _not_found(self, request: _Incoming) -> _Reply:
        return self._error(400, 2500, f"Unknown path components: {request.path}")

    def _server_error(self, status: int) -> _Reply:
        message = "An unexpected error has occurred. Please retry your request later."
        return self._error(status, 2, message, transient=True)

    def _rate_limited(self, request: _Incoming, retry_after: int | None) -> _Reply:
        usage = json.dumps({"call_count": 100, "total_cputime": 25, "total_time": 25})
        return self._error(
            403,
            4,
            "(#4) Application request limit reached",
            transient=True,
            headers=(("x-app-usage", usage),),
        )

    @staticmethod
    def _graph_path(path: str) -> str:
        """``path`` without its ``/vN.N`` version prefix."""
        versioned = _GRAPH_VERSIONED.match(path)
        return (versioned.group(1) or "/") if versioned else path

    def _route(self, request: _Incoming) -> _Reply:
        path = self._graph_path(request.path)
        params = {**request.query, **request.form}
        if request.method == "POST" and "batch" in params:
            return self._batch(request, params)
        if path == "/oauth/access_token" and request.method in ("GET", "POST"):
            return self._login.token(request)
        if path == "/me" and request.method in ("GET", "POST"):
            return self._login.me(request)
        if path != "/debug_token":
            return self._not_found(request)
        if request.method == "POST" and not self.accept_post:
            message = (
                "Unsupported post request. Object with ID 'debug_token' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this operation."
            )
            return self._error(400, 100, message, kind="GraphMethodException", subcode=33)
        status, payload = self._debug_token(params, request.header_token("bearer", "oauth"))
        if "error" in payload:
            return self._error(status, payload["error"]["code"], payload["error"]["message"])
        return _json_reply(status, payload, content_type=_FB_JSON)

    def _debug_token(
        self, params: Mapping[str, str], header_token: str | None
    ) -> tuple[int, dict[str, Any]]:
        """``(status, body)``; a 400 body is ``{"error": {"code", "message"}}``."""
        app_token = params.get("access_token") or header_token
        if not app_token or app_token in self._grants:
            return 400, {"error": {"code": 100, "message": _FB_NEEDS_APP_TOKEN}}
        if app_token != self.app_access_token:
            same_app = app_token.partition("|")[0] == self.app_id
            message = "Invalid OAuth access token signature." if same_app else _FB_CANNOT_PARSE
            return 400, {"error": {"code": 190, "message": message}}
        input_token = params.get("input_token")
        if not input_token:
            return 400, {
                "error": {"code": 100, "message": "(#100) The parameter input_token is required"}
            }
        state = self.token_state(input_token)
        if state == "unknown":
            return 200, {
                "data": {
                    "error": {"code": 190, "message": _FB_CANNOT_PARSE},
                    "is_valid": False,
                    "scopes": [],
                }
            }
        grant = self._grants[input_token]
        data: dict[str, Any] = {
            "app_id": grant.app_id,
            "type": "USER",
            "application": self.app_name if grant.app_id == self.app_id else f"App {grant.app_id}",
            "data_access_expires_at": grant.data_access_expires_at,
            "expires_at": 0 if grant.expires_at is None else int(grant.expires_at),
            "is_valid": state == "active",
            "issued_at": int(grant.issued_at),
            "scopes": list(grant.scopes),
            "user_id": grant.user_id,
        }
        if state == "expired":
            assert grant.expires_at is not None  # noqa: S101 - only expiring tokens expire
            data["error"] = {
                "code": 190,
                "message": (
                    "Error validating access token: Session has expired on "
                    f"{self._pacific(grant.expires_at)}. "
                    f"The current time is {self._pacific(self.clock())}."
                ),
                "subcode": 463,
            }
        elif state == "revoked":
            data["error"] = {
                "code": 190,
                "message": (
                    "Error validating access token: The session has been invalidated because "
                    "the user changed their password or Facebook has changed the session for "
                    "security reasons."
                ),
                "subcode": 460,
            }
        return 200, {"data": data}

    @staticmethod
    def _pacific(when: float) -> str:
        return datetime.fromtimestamp(when, _PACIFIC).strftime("%A, %d-%b-%y %H:%M:%S PST")

    def _batch(self, request: _Incoming, params: Mapping[str, str]) -> _Reply:
        invalid = "(#100) param batch must be a valid JSON array"
        try:
            operations = json.loads(params["batch"])
        except json.JSONDecodeError:
            return self._error(400, 100, invalid)
        if not isinstance(operations, list):
            return self._error(400, 100, invalid)
        if len(operations) > _FB_BATCH_LIMIT:
            message = "(#100) Too many requests in batch message. Maximum batch size is 50"
            return self._error(400, 100, message)
        include_headers = params.get("include_headers", "true").lower() != "false"
        app_token = params.get("access_token") or request.header_token("bearer", "oauth") or ""
        results = [self._batch_operation(op, app_token, include_headers) for op in operations]
        return _json_reply(200, results, content_type=_FB_JSON)

    def _batch_operation(
        self, operation: Any, app_token: str, include_headers: bool
    ) -> dict[str, Any]:
        """One logical response: ``{"code", "headers"?, "body": "<JSON text>"}``."""
        if not isinstance(operation, dict):
            status, payload = (
                400,
                {"error": {"code": 100, "message": "(#100) Invalid batch operation"}},
            )
        else:
            method = str(operation.get("method", "GET")).upper()
            relative = httpx.URL("/" + str(operation.get("relative_url", "")).lstrip("/"))
            path = self._graph_path(relative.path)
            if method == "GET" and path == "/debug_token":
                query = dict(parse_qsl(relative.query.decode("latin-1"), keep_blank_values=True))
                status, payload = self._debug_token({"access_token": app_token, **query}, None)
            else:
                message = f"Unknown path components: {path}"
                status, payload = 400, {"error": {"code": 2500, "message": message}}
        if "error" in payload:
            error = {**payload["error"], "type": "OAuthException", "fbtrace_id": _random_alnum(23)}
            payload = {"error": error}
        result: dict[str, Any] = {"code": status}
        if include_headers:
            result["headers"] = [
                {"name": "Content-Type", "value": "text/javascript; charset=UTF-8"}
            ]
        result["body"] = json.dumps(payload, separators=(",", ":"))
        return result
