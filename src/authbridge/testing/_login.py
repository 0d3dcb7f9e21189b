"""What the fakes' login pages share: users, approvals, codes, pages, client checks.

The fakes follow each provider's documented authorization-code flow: an
authorize page (plain HTML, no script, every value escaped) whose form picks
the user and approves, a redirect back with ``code`` and ``state``, and a token
endpoint that requires the app's secret, checks ``redirect_uri`` and the PKCE
``code_verifier`` when a challenge was sent, and accepts each code once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import re
import secrets
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import unquote_plus, urlencode, urlsplit

from ._wire import _Incoming, _Reply

__all__: list[str] = []

CODE_TTL = 600.0
"""Seconds an authorization code stays redeemable (GitHub's and Facebook's ten minutes)."""

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_PAGE_HEADERS = (
    ("content-type", "text/html; charset=utf-8"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
)


# -- codes and approvals -----------------------------------------------------------------


@dataclass(slots=True)
class _Code:
    """One issued authorization code: what the token endpoint checks and what it yields."""

    client_id: str
    redirect_uri: str | None
    user: str
    scopes: tuple[str, ...]
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    auth_time: float
    expires_at: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Approval:
    user: str
    callback: Mapping[str, str | None]


CodeState = Literal["active", "used", "expired", "unknown"]


class _Desk:
    """Codes (single use, expiring) and pending `approve_as` answers of one fake."""

    def __init__(self, clock: Callable[[], float], code_ttl: float) -> None:
        self._clock = clock
        self.code_ttl = code_ttl
        self._codes: dict[str, _Code] = {}
        self._used: set[str] = set()
        self._approvals: deque[_Approval] = deque()
        self._lock = threading.Lock()

    def approve(self, user: str, callback: Mapping[str, str | None]) -> None:
        with self._lock:
            self._approvals.append(_Approval(user, dict(callback)))

    def next_approval(self) -> _Approval | None:
        with self._lock:
            return self._approvals.popleft() if self._approvals else None

    def issue(self, code: str, record: _Code) -> str:
        with self._lock:
            self._codes[code] = record
        return code

    def take(self, code: str) -> tuple[CodeState, _Code | None]:
        """Take ``code`` (atomically: a second taker gets ``"used"``)."""
        with self._lock:
            record = self._codes.pop(code, None)
            if record is None:
                return ("used" if code in self._used else "unknown"), None
            self._used.add(code)
        if self._clock() >= record.expires_at:
            return "expired", record
        return "active", record

    def expiry(self) -> float:
        return self._clock() + self.code_ttl


# -- checks ------------------------------------------------------------------------------


def pkce_matches(challenge: str, method: str | None, verifier: str | None) -> bool:
    """RFC 7636 §4.6: the verifier's syntax, then S256 (or ``plain``) against the challenge."""
    if verifier is None or not _VERIFIER.match(verifier):
        return False
    if (method or "plain") == "plain":
        return hmac.compare_digest(verifier, challenge)
    if method != "S256":
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return hmac.compare_digest(computed, challenge)


@dataclass(frozen=True, slots=True)
class _ClientAuth:
    client_id: str | None
    secret: str | None
    method: Literal["basic", "post", "none", "both", "malformed"]


def client_auth(request: _Incoming, params: Mapping[str, str]) -> _ClientAuth:
    """The client's credentials: HTTP Basic (RFC 6749 §2.3.1 form-encoding) or the body."""
    basic = request.authorization()
    posted = params.get("client_secret")
    if basic is not None and basic[0] == "basic":
        if posted is not None:
            return _ClientAuth(None, None, "both")
        try:
            decoded = base64.b64decode(basic[1], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _ClientAuth(None, None, "malformed")
        user, colon, password = decoded.partition(":")
        if not colon:
            return _ClientAuth(None, None, "malformed")
        client_id = unquote_plus(user)
        if params.get("client_id", client_id) != client_id:
            return _ClientAuth(None, None, "malformed")
        return _ClientAuth(client_id, unquote_plus(password), "basic")
    if posted is not None:
        return _ClientAuth(params.get("client_id"), posted, "post")
    return _ClientAuth(params.get("client_id"), None, "none")


def secret_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def redirect_allowed(allowed: Sequence[str] | None, redirect_uri: str | None) -> bool:
    """Exact match against the registered URIs; any absolute http(s) URL when none are."""
    if not redirect_uri:
        return False
    if allowed is not None:
        return redirect_uri in allowed
    parts = urlsplit(redirect_uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment


def split_scopes(value: str | None, separators: str = " ") -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(s for s in re.split(f"[{re.escape(separators)}]+", value) if s)


def random_code(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


# -- pages and redirects -----------------------------------------------------------------


def esc(value: object) -> str:
    """Escape for HTML text and double-quoted attributes."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str, status: int = 200) -> _Reply:
    """A complete HTML page (no script, no style) with restrictive headers."""
    text = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )
    return _Reply(status, text.encode("utf-8"), _PAGE_HEADERS)


def error_page(title: str, message: str, status: int = 400) -> _Reply:
    return page(title, f"<h1>{esc(title)}</h1>\n<p>{esc(message)}</p>", status)


def hidden_fields(values: Mapping[str, str]) -> str:
    return "\n".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in values.items()
    )


def approval_page(
    *,
    title: str,
    action: str,
    carried: Mapping[str, str],
    users: Sequence[tuple[str, str]],
    app: str,
    scopes: Sequence[str],
    password: bool = False,
    error: str | None = None,
    prefill: str | None = None,
) -> _Reply:
    """The authorize page: a form that names the user (and password) and approves or denies.

    It POSTs to ``action`` with the authorization request's parameters in hidden
    fields, ``user`` (or ``username`` + ``password``) and ``decision``.
    """
    name = "username" if password else "user"
    options = "".join(f'<option value="{esc(v)}">{esc(label)}</option>' for v, label in users)
    value = f' value="{esc(prefill)}"' if prefill else ""
    secret = (
        '<p><label>Password <input type="password" name="password" autocomplete="current-password">'
        "</label></p>\n"
        if password
        else ""
    )
    listed = "".join(f"<li>{esc(s)}</li>" for s in scopes)
    body = (
        f"<h1>{esc(title)}</h1>\n"
        + (f'<p role="alert">{esc(error)}</p>\n' if error else "")
        + f"<p>{esc(app)} asks to sign you in.</p>\n"
        + (f"<ul>{listed}</ul>\n" if listed else "")
        + f'<form method="post" action="{esc(action)}">\n{hidden_fields(carried)}\n'
        + f"<p><label>{'Username' if password else 'User'} "
        + f'<input name="{name}" list="known-users" autocomplete="username" required{value}>'
        + f'</label></p>\n<datalist id="known-users">{options}</datalist>\n{secret}'
        + '<p><button type="submit" name="decision" value="approve">Approve</button>\n'
        + '<button type="submit" name="decision" value="deny" formnovalidate>Deny</button></p>\n'
        + "</form>"
    )
    return page(title, body)


def form_post_page(action: str, fields: Mapping[str, str]) -> _Reply:
    """OAuth 2.0 Form Post Response Mode: a form POSTing ``fields`` to ``action``."""
    body = (
        "<h1>Continue</h1>\n"
        f'<form method="post" action="{esc(action)}">\n{hidden_fields(fields)}\n'
        '<p><button type="submit">Continue</button></p>\n</form>'
    )
    return page("Continue", body)


def redirect(url: str, params: Mapping[str, str | None], status: int = 302) -> _Reply:
    """``url`` with ``params`` added to its query (``None`` values left out)."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    separator = "&" if urlsplit(url).query else "?"
    location = f"{url}{separator}{query}" if query else url
    return _Reply(
        status,
        b"",
        (("location", location), ("cache-control", "no-store"), ("referrer-policy", "no-referrer")),
    )


def with_overrides(
    params: Mapping[str, str | None], overrides: Mapping[str, str | None]
) -> dict[str, str | None]:
    """``params`` with ``overrides`` applied (``None`` removes a parameter)."""
    return {**params, **overrides}


# -- the authorize endpoint --------------------------------------------------------------

_U = TypeVar("_U")
_FORM_ONLY = frozenset({"user", "username", "password", "decision"})


class _Flow(ABC, Generic[_U]):
    """One fake's authorize endpoint: validation, the page, approvals, the callback.

    Subclasses say what is a valid request (`check`), issue the code (`issue`)
    and build the callback's parameters (`callback_fields`); errors after
    validation go back to the client (`deny`), errors before are a page.
    """

    title = "Sign in"
    password = False

    def __init__(self, clock: Callable[[], float], code_ttl: float) -> None:
        self.desk = _Desk(clock, code_ttl)
        self.users: dict[str, _U] = {}
        self.clock = clock

    def add(self, key: str, user: _U) -> None:
        self.users[key] = user

    def approve_as(self, key: str, callback: Mapping[str, str | None]) -> None:
        if key not in self.users:
            raise KeyError(f"no user {key!r}: add it with add_user() first")
        self.desk.approve(key, callback)

    def authorize(self, request: _Incoming, action: str) -> _Reply:
        posted = request.method == "POST"
        if request.method not in ("GET", "HEAD", "POST"):
            return _Reply(405, b"", (("allow", "GET, POST"),))
        source = request.form if posted else request.query
        params = {k: v for k, v in source.items() if k not in _FORM_ONLY}
        problem = self.check(params)
        if problem is not None:
            return problem
        if not posted:
            approval = self.desk.next_approval()
            if approval is not None:
                return self.approve(params, approval.user, approval.callback)
            return self.render(params, action)
        if source.get("decision") == "deny":
            return self.deny(params)
        user = self.login(source)
        if user is None:
            return self.render(params, action, error=self.login_error)
        return self.approve(params, user, {})

    login_error = "Unknown user."

    def login(self, form: Mapping[str, str]) -> str | None:
        """The user the page's form names, or ``None``."""
        key = form.get("user", "")
        return key if key in self.users else None

    def render(self, params: Mapping[str, str], action: str, error: str | None = None) -> _Reply:
        return approval_page(
            title=self.title,
            action=action,
            carried=params,
            users=self.labels(),
            app=params.get("client_id", ""),
            scopes=self.scopes_of(params),
            password=self.password,
            error=error,
            prefill=params.get("login_hint") or params.get("login"),
        )

    def labels(self) -> list[tuple[str, str]]:
        """The page's suggestions: ``(form value, label)`` per user."""
        return [(key, key) for key in self.users]

    def approve(
        self, params: Mapping[str, str], user: str, overrides: Mapping[str, str | None]
    ) -> _Reply:
        code = self.issue(params, user)
        fields = with_overrides(self.callback_fields(params, code, user), overrides)
        return self.respond(params, fields)

    def respond(self, params: Mapping[str, str], fields: Mapping[str, str | None]) -> _Reply:
        """Send the callback: a redirect with the fields in the query."""
        return redirect(self.redirect_uri(params), fields)

    def redirect_uri(self, params: Mapping[str, str]) -> str:
        return params["redirect_uri"]

    def scopes_of(self, params: Mapping[str, str]) -> tuple[str, ...]:
        return split_scopes(params.get("scope"))

    @abstractmethod
    def check(self, params: Mapping[str, str]) -> _Reply | None:
        """An error page or error redirect for a bad request, or ``None``."""

    @abstractmethod
    def issue(self, params: Mapping[str, str], user: str) -> str:
        """Record and return a new code for ``user``."""

    @abstractmethod
    def callback_fields(
        self, params: Mapping[str, str], code: str, user: str
    ) -> dict[str, str | None]:
        """The successful callback's parameters."""

    @abstractmethod
    def deny(self, params: Mapping[str, str]) -> _Reply:
        """The callback when the user denies."""

    def code_record(
        self, params: Mapping[str, str], user: str, *, scopes: Sequence[str], **extra: Any
    ) -> _Code:
        return _Code(
            client_id=params.get("client_id", ""),
            redirect_uri=params.get("redirect_uri"),
            user=user,
            scopes=tuple(scopes),
            code_challenge=params.get("code_challenge"),
            code_challenge_method=params.get("code_challenge_method"),
            nonce=params.get("nonce"),
            auth_time=self.clock(),
            expires_at=self.desk.expiry(),
            extra=dict(extra),
        )
