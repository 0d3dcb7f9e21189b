"""Fake GitHub: the REST API that identifies a token."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from ._fakeapi import FakeAPI
from ._github_login import EMAIL_SCOPES, _GitHubFlow, _GitHubUser
from ._wire import (
    _base62,
    _Grant,
    _Incoming,
    _json_reply,
    _random_alnum,
    _Reply,
)

__all__ = ["FakeGitHub", "GitHubTokenKind"]

# -- GitHub ------------------------------------------------------------------------------

GitHubTokenKind = Literal["ghp", "gho", "ghu", "ghs", "ghr", "github_pat"]
"""GitHub token types by prefix: ``ghp`` personal access token (classic),
``github_pat`` fine-grained personal access token, ``gho`` OAuth app token,
``ghu`` GitHub App user token, ``ghs`` GitHub App installation token,
``ghr`` GitHub App refresh token."""

_GITHUB_KINDS: frozenset[str] = frozenset({"ghp", "gho", "ghu", "ghs", "ghr", "github_pat"})
_GITHUB_SCOPED: frozenset[str] = frozenset({"ghp", "gho"})  # tokens with OAuth scopes
_GITHUB_DOCS = "https://docs.github.com/rest"
_GITHUB_USER_DOCS = "https://docs.github.com/rest/users/users#get-the-authenticated-user"
_GITHUB_RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
_GITHUB_WINDOW = 3600.0
_WEB_PATHS = frozenset({"/login/oauth/authorize", "/login/oauth/access_token"})
_GITHUB_EMAILS_DOCS = (
    "https://docs.github.com/rest/users/emails#list-email-addresses-for-the-authenticated-user"
)
_GITHUB_APP_DOCS = "https://docs.github.com/rest/apps/oauth-applications#check-a-token"


@dataclass(kw_only=True, slots=True)
class _GitHubGrant(_Grant):
    kind: str
    login: str
    user_id: int
    scopes: tuple[str, ...]
    name: str | None
    email: str | None
    client_id: str | None
    emails: tuple[dict[str, Any], ...] = ()


def _github_token(kind: GitHubTokenKind) -> str:
    """A token in GitHub's format for ``kind`` (not a working GitHub token).

    Classic formats are the prefix, ``_`` and 36 characters of ``[0-9A-Za-z]``
    (40 in all), the last 6 a base62 CRC32 of the 30 before them. Fine-grained
    personal access tokens are ``github_pat_``, 22 characters, ``_``, 59
    characters (93 in all).
    """
    if kind == "github_pat":
        return f"github_pat_{_random_alnum(22)}_{_random_alnum(59)}"
    if kind not in _GITHUB_KINDS:
        raise ValueError(f"unknown GitHub token kind {kind!r}")
    payload = _random_alnum(30)
    return f"{kind}_{payload}{_base62(zlib.crc32(payload.encode('ascii')), 6)}"


class FakeGitHub(FakeAPI[_GitHubGrant]):
    """The parts of the GitHub REST API that identify a token.

    ``GET /user`` (the token in the Authorization header) and, for an OAuth
    app given as ``client_id``/``client_secret``, "Check a token":
    ``POST /applications/{client_id}/token`` with the app's Basic credentials
    and ``{"access_token": ...}`` in a JSON body; 200 with the token's app,
    scopes, expiry and user, 404 for a token that is not a valid token of that
    app, 422 for a malformed body, 401 for wrong app credentials.

    Follows GitHub's documentation: the token goes in ``Authorization: Bearer``
    (or the older ``token`` scheme; query-string tokens were removed in 2021 and
    answer 401); classic and OAuth tokens (``ghp_``, ``gho_``) get an
    ``X-OAuth-Scopes`` header listing their scopes (comma and space separated,
    empty when none); every authenticated answer carries ``x-ratelimit-*``
    headers; exhausting the primary limit answers 403 with
    ``x-ratelimit-remaining: 0``; requests without a ``User-Agent`` are refused.

    Beyond the docs (observed behaviour, not promised by GitHub): fine-grained
    (``github_pat_``), GitHub App user (``ghu_``) and installation (``ghs_``)
    tokens carry no ``X-OAuth-Scopes`` header; installation tokens get 403
    ``Resource not accessible by integration`` on ``/user``; a refresh token
    (``ghr_``) is not accepted as an access token.

    Logging in (the OAuth web application flow, on ``web_base``):
    ``GET /login/oauth/authorize`` answers a page whose form picks one of the
    users added with `add_user` and approves (then 302 to ``redirect_uri``
    with ``code`` and ``state``) or denies (``error=access_denied``);
    `approve_as` makes the next request redirect at once.
    ``POST /login/oauth/access_token`` needs ``client_id`` and
    ``client_secret`` (form, query, JSON body or Basic), checks
    ``redirect_uri`` and the PKCE ``code_verifier`` when a challenge was
    sent, accepts each code once within ``code_ttl``, answers form-encoded
    unless ``Accept: application/json`` and, like GitHub, reports errors
    with status 200 and ``error`` (``bad_verification_code``,
    ``incorrect_client_credentials``, ``redirect_uri_mismatch``). The
    tokens it issues answer ``GET /user`` and ``GET /user/emails`` (which
    needs the ``user:email`` or ``user`` scope). No answer carries CORS
    headers.

    Args:
        api_base: The API root; a GitHub Enterprise Server root such as
            ``https://ghe.example.test/api/v3`` works too.
        rate_limit: Requests per user per hour before the primary rate limit
            answers 403.
        clock: Time source for expiry and the rate-limit window.
        client_id: The OAuth app's client id.
        client_secret: The OAuth app's secret (random if omitted).
        web_base: Where the login pages are (``serve()`` moves it to the
            served origin, beside the API).
        callback_url: The app's registered callback URL; ``redirect_uri``
            must be it or a path below it (GitHub's rule), and the authorize
            page falls back to it. ``None`` accepts any http(s) URL.
        code_ttl: Seconds an authorization code stays redeemable.
    """

    def __init__(
        self,
        api_base: str = "https://api.github.com",
        *,
        rate_limit: int = 5000,
        clock: Callable[[], float] | None = None,
        client_id: str = "Iv1.fake0client0id",
        client_secret: str | None = None,
        web_base: str = "https://github.com",
        callback_url: str | None = None,
        code_ttl: float = 600.0,
    ) -> None:
        super().__init__(api_base, clock=clock)
        self.rate_limit = rate_limit
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_hex(20)
        self.callback_url = callback_url
        self._usage: dict[int, tuple[float, int]] = {}
        self._add_base("web", web_base, _WEB_PATHS.__contains__)
        self._login = _GitHubFlow(self, code_ttl)

    @property
    def web_base(self) -> str:
        """Where the login pages are (``GitHubProvider(web_base=...)``)."""
        return self._base("web")

    @property
    def authorize_url(self) -> str:
        """``{web_base}/login/oauth/authorize``."""
        return f"{self.web_base}/login/oauth/authorize"

    @property
    def access_token_url(self) -> str:
        """``{web_base}/login/oauth/access_token``."""
        return f"{self.web_base}/login/oauth/access_token"

    def add_user(
        self,
        login: str = "octocat",
        user_id: int | None = None,
        *,
        name: str | None = None,
        email: str | None = None,
        emails: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Add a user who can log in on the authorize page.

        Args:
            login: The login name (what the page's form names).
            user_id: The numeric id (next free one if omitted).
            name: Profile name.
            email: Public profile email of ``/user`` (``None``, GitHub's
                default, hides it).
            emails: What ``/user/emails`` answers: mappings with ``email``,
                ``primary``, ``verified`` and ``visibility`` (missing flags
                are false, visibility ``None``). Omitted: ``email`` as the one
                primary, verified address, or none.
        """
        if user_id is None:
            user_id = max((u.user_id for u in self._login.users.values()), default=0) + 1
        if emails is None:
            listed = [{"email": email, "primary": True, "verified": True, "visibility": "public"}]
            emails = listed if email else []
        rows = tuple(
            {
                "email": str(row["email"]),
                "primary": bool(row.get("primary", False)),
                "verified": bool(row.get("verified", False)),
                "visibility": row.get("visibility"),
            }
            for row in emails
        )
        self._login.add(login, _GitHubUser(login, user_id, name, email, rows))

    def approve_as(self, login: str, **callback: str | None) -> None:
        """Make the next authorize request redirect at once, approved by ``login``.

        Keyword arguments override the callback's parameters (``state=``,
        ``code=``; ``None`` removes one), for tests of a client's checks.

        Raises:
            KeyError: No user ``login`` was added.
        """
        self._login.approve_as(login, callback)

    def _route_web(self, request: _Incoming) -> _Reply | None:
        path = self._under(request, "web")
        if path == "/login/oauth/authorize":
            return self._login.authorize(request, self.authorize_url)
        if path == "/login/oauth/access_token":
            return self._login.token(request)
        return None

    def _secrets(self) -> set[str]:
        return {*super()._secrets(), self.client_secret}

    @property
    def api_base(self) -> str:
        """Alias of `base_url`."""
        return self.base_url

    def issue_token(
        self,
        login: str = "octocat",
        user_id: int = 1,
        scopes: Sequence[str] = ("read:user",),
        kind: GitHubTokenKind = "gho",
        *,
        expires_in: float | None = None,
        name: str | None = None,
        email: str | None = None,
        client_id: str | None = None,
        emails: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """Issue a token for a user and return it.

        Args:
            login: The user's login.
            user_id: The user's numeric id.
            scopes: OAuth scopes (reported only for ``ghp``/``gho`` tokens).
            kind: Token type (its prefix), see `GitHubTokenKind`.
            expires_in: Seconds until the token expires (``None``: never). An
                expiring token's answers carry ``github-authentication-token-expiration``.
            name: Profile name.
            email: Public profile email.
            client_id: The OAuth app the token was issued to (this fake's
                `client_id` by default; another value makes a token of
                another app).
            emails: What ``/user/emails`` answers (as in `add_user`);
                omitted: ``email`` as the primary verified address, or none.
        """
        if emails is None:
            emails = (
                [{"email": email, "primary": True, "verified": True, "visibility": "public"}]
                if email
                else []
            )
        grant = _GitHubGrant(
            issued_at=self.clock(),
            expires_at=self._expires_at(expires_in),
            kind=kind,
            login=login,
            user_id=user_id,
            scopes=tuple(scopes),
            name=name,
            email=email,
            client_id=self.client_id if client_id is None else client_id,
            emails=tuple(dict(row) for row in emails),
        )
        return self._issue(_github_token(kind), grant)

    @staticmethod
    def well_formed_token(kind: GitHubTokenKind = "gho") -> str:
        """A made-up token in GitHub's format, checksum included, that was never issued.

        A local format check cannot tell it from a real token; GitHub (and this
        fake) answers it as bad credentials. Floods of such tokens are what a
        resource server's concurrency limit is for.
        """
        return _github_token(kind)

    # -- answers -------------------------------------------------------------------------

    def _error(
        self,
        status: int,
        message: str,
        docs: str = _GITHUB_DOCS,
        headers: Sequence[tuple[str, str]] = (),
    ) -> _Reply:
        body = {"message": message, "documentation_url": docs, "status": str(status)}
        return _json_reply(
            status, body, (("x-github-media-type", "github.v3; format=json"), *headers)
        )

    def _not_found(self, request: _Incoming) -> _Reply:
        return self._error(404, "Not Found")

    def _server_error(self, status: int) -> _Reply:
        return _json_reply(status, {"message": "Server Error"})

    def _rate_headers(self, used: int, reset: float) -> tuple[tuple[str, str], ...]:
        return (
            ("x-ratelimit-limit", str(self.rate_limit)),
            ("x-ratelimit-remaining", str(max(self.rate_limit - used, 0))),
            ("x-ratelimit-reset", str(int(reset))),
            ("x-ratelimit-used", str(used)),
            ("x-ratelimit-resource", "core"),
        )

    def _grant_of(self, request: _Incoming) -> _GitHubGrant | None:
        token = request.header_token("bearer", "token")
        if token is None or self.token_state(token) != "active":
            return None
        return self._grants[token]

    def _primary_limited(self, user_id: int, status: int, reset: float) -> _Reply:
        return self._error(
            status,
            f"API rate limit exceeded for user ID {user_id}.",
            _GITHUB_RATE_DOCS,
            self._rate_headers(self.rate_limit, reset),
        )

    def _rate_limited(self, request: _Incoming, retry_after: int | None) -> _Reply:
        grant = self._grant_of(request)
        reset = self.clock() + (60 if retry_after is None else retry_after)
        return self._primary_limited(grant.user_id if grant else 1, 403, reset)

    def rate_limit_next(
        self,
        count: int | None = 1,
        *,
        retry_after: int | None = None,
        secondary: bool = False,
        status: Literal[403, 429] = 403,
    ) -> None:
        """Answer the next ``count`` requests as rate limited.

        Args:
            count: How many requests (``None``: until `clear_failures`).
            retry_after: Primary limit: seconds until ``x-ratelimit-reset``
                (60 if omitted). Secondary limit: the ``retry-after`` header
                (omitted if ``None``, which GitHub also does sometimes).
            secondary: A secondary rate limit (burst/concurrency) instead of
                the primary one: an explanatory message, ``x-ratelimit-remaining``
                not 0.
            status: GitHub documents both 403 and 429.
        """
        if not secondary:
            self._push(
                lambda request: replace(self._rate_limited(request, retry_after), status=status),
                count,
            )
            return

        def make(request: _Incoming) -> _Reply:
            grant = self._grant_of(request)
            used = 1 if grant is None else self._usage.get(grant.user_id, (0.0, 1))[1]
            headers = self._rate_headers(used, self.clock() + _GITHUB_WINDOW)
            if retry_after is not None:
                headers = (("retry-after", str(retry_after)), *headers)
            message = (
                "You have exceeded a secondary rate limit. "
                "Please wait a few minutes before you try again."
            )
            return self._error(
                status, message, f"{_GITHUB_RATE_DOCS}#about-secondary-rate-limits", headers
            )

        self._push(make, count)

    def _route(self, request: _Incoming) -> _Reply:
        if not request.headers.get("user-agent"):
            message = (
                "Request forbidden by administrative rules. "
                "Please make sure your request has a User-Agent header."
            )
            return _Reply(403, message.encode(), (("content-type", "text/plain"),))
        if request.path == "/user" and request.method in ("GET", "HEAD"):
            return self._get_user(request)
        if request.path == "/user/emails" and request.method in ("GET", "HEAD"):
            return self._get_emails(request)
        parts = request.path.split("/")
        if (
            request.method == "POST"
            and len(parts) == 4
            and parts[1::2] == ["applications", "token"]
        ):
            return self._check_token(request, parts[2])
        return self._not_found(request)

    def _check_token(self, request: _Incoming, client_id: str) -> _Reply:
        auth = request.authorization()
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if client_id != self.client_id or auth is None or auth != ("basic", expected):
            return self._error(401, "Requires authentication", _GITHUB_APP_DOCS)
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            return self._error(422, "Invalid request.", _GITHUB_APP_DOCS)
        grant = self._grants.get(token)
        if grant is None or self.token_state(token) != "active" or grant.client_id != client_id:
            return self._error(404, "Not Found", _GITHUB_APP_DOCS)
        expires = (
            datetime.fromtimestamp(grant.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if grant.expires_at is not None
            else None
        )
        answer = {
            "id": 1,
            "url": f"{self.base_url}/authorizations/1",
            "app": {"client_id": client_id, "name": "fake app", "url": "https://example.test"},
            "token": token,
            "hashed_token": hashlib.sha256(token.encode()).hexdigest(),
            "token_last_eight": token[-8:],
            "note": None,
            "note_url": None,
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "scopes": list(grant.scopes),
            "fingerprint": None,
            "expires_at": expires,
            "user": self._user(grant),
        }
        return _json_reply(200, answer, (("x-github-media-type", "github.v3; format=json"),))

    def _get_user(self, request: _Incoming) -> _Reply:
        answer = self._authenticated(request)
        if isinstance(answer, _Reply):
            return answer
        grant, headers = answer
        return _json_reply(200, self._user(grant), headers)

    def _get_emails(self, request: _Incoming) -> _Reply:
        answer = self._authenticated(request)
        if isinstance(answer, _Reply):
            return answer
        grant, headers = answer
        if grant.kind in _GITHUB_SCOPED and not EMAIL_SCOPES.intersection(grant.scopes):
            return self._error(404, "Not Found", _GITHUB_EMAILS_DOCS)
        return _json_reply(200, [dict(row) for row in grant.emails], headers)

    def _authenticated(
        self, request: _Incoming
    ) -> tuple[_GitHubGrant, list[tuple[str, str]]] | _Reply:
        """The grant and answer headers of an authenticated request, or the refusal."""
        token = request.header_token("bearer", "token")
        if token is None:
            return self._error(401, "Requires authentication", _GITHUB_USER_DOCS)
        grant = self._grants.get(token)
        if grant is None or self.token_state(token) != "active" or grant.kind == "ghr":
            return self._error(401, "Bad credentials")
        if grant.kind == "ghs":
            return self._error(403, "Resource not accessible by integration", _GITHUB_USER_DOCS)
        now = self.clock()
        start, used = self._usage.get(grant.user_id, (now, 0))
        if now >= start + _GITHUB_WINDOW:
            start, used = now, 0
        if used >= self.rate_limit:
            return self._primary_limited(grant.user_id, 403, start + _GITHUB_WINDOW)
        used += 1
        self._usage[grant.user_id] = (start, used)
        headers = [
            ("x-github-media-type", "github.v3; format=json"),
            ("x-github-request-id", secrets.token_hex(8).upper()),
            *self._rate_headers(used, start + _GITHUB_WINDOW),
        ]
        if grant.kind in _GITHUB_SCOPED:
            headers += [
                ("x-oauth-scopes", ", ".join(grant.scopes)),
                ("x-accepted-oauth-scopes", ""),
            ]
        if grant.expires_at is not None:
            expiry = datetime.fromtimestamp(grant.expires_at, UTC)
            headers.append(
                ("github-authentication-token-expiration", expiry.strftime("%Y-%m-%d %H:%M:%S UTC"))
            )
        return grant, headers

    def _user(self, grant: _GitHubGrant) -> dict[str, Any]:
        api = self.base_url
        return {
            "login": grant.login,
            "id": grant.user_id,
            "node_id": base64.b64encode(f"04:User{grant.user_id}".encode()).decode("ascii"),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{grant.user_id}?v=4",
            "gravatar_id": "",
            "url": f"{api}/users/{grant.login}",
            "html_url": f"https://github.com/{grant.login}",
            "type": "User",
            "site_admin": False,
            "name": grant.name,
            "company": None,
            "blog": "",
            "location": None,
            "email": grant.email,
            "hireable": None,
            "bio": None,
            "twitter_username": None,
            "public_repos": 0,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": "2011-01-25T18:44:36Z",
            "updated_at": "2024-01-01T00:00:00Z",
        }
