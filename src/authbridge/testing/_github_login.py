"""FakeGitHub's OAuth web application flow (GitHub's "Authorizing OAuth apps").

``GET {web}/login/oauth/authorize`` shows a page that picks the user and
approves; ``POST {web}/login/oauth/access_token`` redeems the code. As GitHub
documents: the token endpoint needs ``client_id`` and ``client_secret``
(form fields, the query, a JSON body, or HTTP Basic), answers form-encoded
unless ``Accept: application/json``, and reports errors with status 200 and an
``error`` field (``bad_verification_code``, ``incorrect_client_credentials``,
``redirect_uri_mismatch``); PKCE is S256; codes last ten minutes and work once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from ._login import (
    _Flow,
    client_auth,
    error_page,
    pkce_matches,
    redirect,
    secret_ok,
    split_scopes,
)
from ._wire import _Incoming, _json_reply, _Reply

if TYPE_CHECKING:
    from ._github import FakeGitHub

__all__: list[str] = []

_DOCS = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"
_AUTH_DOCS = (
    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors"
)
_MISMATCH = "The redirect_uri MUST match the registered callback URL for this application."
_TOKEN_ERRORS = {
    "incorrect_client_credentials": "The client_id and/or client_secret passed are incorrect.",
    "redirect_uri_mismatch": _MISMATCH,
    "bad_verification_code": "The code passed is incorrect or expired.",
}
_AUTHORIZE_ERRORS = {
    "redirect_uri_mismatch": _MISMATCH,
    "access_denied": "The user has denied your application access.",
    "invalid_request": "code_challenge_method must be S256.",
}
_FORM_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
EMAIL_SCOPES = frozenset({"user", "user:email"})


@dataclass(slots=True)
class _GitHubUser:
    login: str
    user_id: int
    name: str | None
    email: str | None
    emails: tuple[dict[str, Any], ...]


def callback_matches(registered: str, redirect_uri: str) -> bool:
    """GitHub's rule: same scheme, host and port; the path is the callback's or below it."""
    want, got = urlsplit(registered), urlsplit(redirect_uri)
    if (want.scheme, want.netloc) != (got.scheme, got.netloc) or got.fragment:
        return False
    base = want.path.rstrip("/")
    return got.path in (want.path, base) or got.path.startswith(base + "/")


class _GitHubFlow(_Flow[_GitHubUser]):
    title = "Sign in to GitHub"
    login_error = "Incorrect username or password."

    def __init__(self, fake: FakeGitHub, code_ttl: float) -> None:
        super().__init__(fake.clock, code_ttl)
        self.fake = fake

    # -- authorize -------------------------------------------------------------------

    def redirect_uri(self, params: Mapping[str, str]) -> str:
        given = params.get("redirect_uri")
        if given:
            return given
        assert self.fake.callback_url is not None  # noqa: S101 - check() refused this case
        return self.fake.callback_url

    def scopes_of(self, params: Mapping[str, str]) -> tuple[str, ...]:
        return split_scopes(params.get("scope"), " ,")

    def check(self, params: Mapping[str, str]) -> _Reply | None:
        fake = self.fake
        if params.get("client_id") != fake.client_id:
            return error_page("Not Found", "This OAuth application does not exist.", 404)
        given, registered = params.get("redirect_uri"), fake.callback_url
        if registered is None:
            if not given or urlsplit(given).scheme not in ("http", "https"):
                return error_page("Bad request", "The redirect_uri is missing or invalid.", 400)
        elif given and not callback_matches(registered, given):
            return redirect(registered, self._error_fields(params, "redirect_uri_mismatch"))
        method = params.get("code_challenge_method")
        if params.get("code_challenge") and method not in (None, "S256"):
            return redirect(
                self.redirect_uri(params), self._error_fields(params, "invalid_request")
            )
        return None

    def _error_fields(self, params: Mapping[str, str], error: str) -> dict[str, str | None]:
        return {
            "error": error,
            "error_description": _AUTHORIZE_ERRORS[error],
            "error_uri": f"{_AUTH_DOCS}#{error.replace('_', '-')}",
            "state": params.get("state"),
        }

    def deny(self, params: Mapping[str, str]) -> _Reply:
        return redirect(self.redirect_uri(params), self._error_fields(params, "access_denied"))

    def issue(self, params: Mapping[str, str], user: str) -> str:
        record = self.code_record(params, user, scopes=self.scopes_of(params))
        return self.desk.issue(secrets.token_hex(10), record)

    def callback_fields(
        self, params: Mapping[str, str], code: str, user: str
    ) -> dict[str, str | None]:
        return {"code": code, "state": params.get("state")}

    # -- token -----------------------------------------------------------------------

    def token(self, request: _Incoming) -> _Reply:
        if request.method != "POST":
            return self.fake._error(404, "Not Found")
        params = {**request.query, **request.form, **_json_fields(request)}
        as_json = "application/json" in request.headers.get("accept", "").lower()
        auth = client_auth(request, params)
        fake = self.fake
        if auth.client_id != fake.client_id or not secret_ok(fake.client_secret, auth.secret):
            return _token_error("incorrect_client_credentials", as_json)
        state, record = self.desk.take(params.get("code", ""))
        if state != "active" or record is None or record.client_id != auth.client_id:
            return _token_error("bad_verification_code", as_json)
        if not self._same_redirect(record.redirect_uri, params.get("redirect_uri")):
            return _token_error("redirect_uri_mismatch", as_json)
        challenge, method = record.code_challenge, record.code_challenge_method or "S256"
        if challenge and not pkce_matches(challenge, method, params.get("code_verifier")):
            return _token_error("bad_verification_code", as_json)
        user = self.users[record.user]
        token = fake.issue_token(
            user.login,
            user.user_id,
            record.scopes,
            "gho",
            name=user.name,
            email=user.email,
            emails=user.emails,
        )
        answer = {"access_token": token, "token_type": "bearer", "scope": ",".join(record.scopes)}
        return _token_answer(answer, as_json)

    def _same_redirect(self, authorized: str | None, given: str | None) -> bool:
        """GitHub's token ``redirect_uri`` is optional; when sent it must match."""
        if not given:
            return True
        if authorized is not None:
            return given == authorized
        registered = self.fake.callback_url
        return registered is None or callback_matches(registered, given)


def _json_fields(request: _Incoming) -> dict[str, str]:
    if not request.headers.get("content-type", "").lower().startswith("application/json"):
        return {}
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    return {k: v for k, v in body.items() if isinstance(k, str) and isinstance(v, str)}


def _token_answer(answer: Mapping[str, str], as_json: bool) -> _Reply:
    if as_json:
        return _json_reply(200, answer)
    body = urlencode(answer).encode("ascii")
    return _Reply(
        200, body, (("content-type", "application/x-www-form-urlencoded; charset=utf-8"),)
    )


def _token_error(error: str, as_json: bool) -> _Reply:
    answer = {
        "error": error,
        "error_description": _TOKEN_ERRORS[error],
        "error_uri": f"{_DOCS}#{error.replace('_', '-')}",
    }
    return _token_answer(answer, as_json)
