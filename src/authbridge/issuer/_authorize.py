"""The authorization endpoint's request and answer (RFC 6749 §4.1, RFC 7636, RFC 9207).

Framework-free: the HTTP layer hands `parse_authorize` the query parameters,
logs the user in (a password form, or a provider through a login
transaction that keeps the request as `AuthorizeRequest.to_dict`), then calls
`complete`, which issues the code and returns the URL to send the browser to.

Which refusals redirect (RFC 6749 §4.1.2.1):

- never, when the request cannot be tied to a client's registered redirect
  URI: a duplicated parameter, a missing, unknown or disabled client, a client
  without the ``authorization_code`` grant, a missing or unregistered
  ``redirect_uri``. The HTTP layer shows an error page; sending the browser
  anywhere would make the endpoint an open redirector;
- otherwise to the registered redirect URI with ``error``,
  ``error_description``, ``state`` and ``iss``: ``unsupported_response_type``
  (only ``code``), ``invalid_request`` (PKCE with S256 is required; ``plain``
  is refused), ``invalid_scope``, ``invalid_target``.

Redirect URIs match a registered value exactly, character for character (no
normalisation of case, trailing slash, percent-encoding, query or port). One
exception, RFC 8252 §7.3: for a registered loopback IP URI
(``http://127.0.0.1/...``, ``http://[::1]/...``) a native app may name any
port, everything else unchanged.

A code is `CODE_PREFIX` + 256 random bits, kept only as its hash in the
one-time store (kind ``"code"``) for ``authorization_code_ttl`` seconds, with
the client, the redirect URI, the PKCE challenge, the account, the scopes,
the audiences, the authentication time and method and the nonce. A marker
that the code was issued (``code-issued:<hash>`` in the replay store) lets the
code grant tell a replayed code from a made-up one.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

from ..errors import AuthBridgeError
from ..store import ClientRecord, UserRecord
from ._errors import OAuthError
from ._secrets import CODE_PREFIX, hash_secret, new_secret

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime

__all__ = [
    "CODE_KIND",
    "AuthorizeError",
    "AuthorizeRequest",
    "code_hash",
    "complete",
    "error_redirect",
    "parse_authorize",
]

CODE_KIND = "code"
"""Kind of the authorization codes in the one-time store."""

CODE_REPLAY_WINDOW = 600.0
"""Seconds past a code's expiry during which presenting it again still counts as a replay."""

MAX_CLIENT_ID_CHARS = 255
MAX_REDIRECT_URI_CHARS = 2048
MAX_STATE_CHARS = 2048
MAX_NONCE_CHARS = 512
MAX_LOGIN_HINT_CHARS = 256
MAX_IDP_CHARS = 128
MAX_SCOPE_CHARS = 2048

PROMPT_VALUES = frozenset({"none", "login", "consent", "select_account"})
"""OpenID Connect Core §3.1.2.1 ``prompt`` values."""

# RFC 7636 §4.2: BASE64URL(SHA-256(verifier)) is 43 characters, no padding.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
# RFC 6749 Appendix A: client_id and state are *VSCHAR (printable ASCII and space).
_VSCHAR = frozenset(chr(c) for c in range(0x20, 0x7F))
# RFC 8252 §7.3: loopback IP literals (never "localhost", §8.3), any port.
_LOOPBACK = re.compile(r"http://(127\.0\.0\.1|\[::1\])(?::([0-9]{1,5}))?([/?][^#]*)?", re.DOTALL)

# An error answer redirected to the client: (error, description, reason) -> the error.
_Refuse = Callable[[str, str, str], "AuthorizeError"]


class AuthorizeError(AuthBridgeError):
    """A refused authorization request (RFC 6749 §4.1.2.1).

    Attributes:
        error: The OAuth error code (``invalid_request``,
            ``unauthorized_client``, ``unsupported_response_type``,
            ``invalid_scope``, ``invalid_target``, ``access_denied``).
        description: Fixed English text for ``error_description`` (never a
            request value).
        redirect: Where to send the browser with the error (the client's
            registered redirect URI carrying ``error``, ``state`` and
            ``iss``), or ``None``: the request names no trustworthy redirect
            URI, show an error page and never redirect.
        status: 400 (for the error page).
    """

    code: ClassVar[str] = "authorize_error"
    status: ClassVar[int] = 400

    def __init__(
        self, error: str, description: str, redirect: str | None, *, reason: str | None = None
    ) -> None:
        self.error = error
        self.description = description
        self.redirect = redirect
        super().__init__(reason or error)


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A validated authorization request, kept while the user logs in.

    Attributes:
        client_id: The client.
        redirect_uri: The redirect URI as requested (a registered one, or a
            registered loopback one with another port); the token request
            must repeat it exactly.
        state: The client's ``state``, returned as is (``None`` when absent).
        scopes: Requested ∩ the client's ∩ the issuer's scopes (every one the
            client may have when none was requested); the code gets these ∩
            the user's.
        code_challenge: The PKCE S256 challenge.
        audiences: The tokens' ``aud`` (RFC 8707 ``resource``, or the
            issuer's default audience).
        nonce: The client's ``nonce``, if any.
        idp: The provider the client asked to log in with (``idp``), if any.
        prompt: ``prompt`` (space-separated OpenID Connect values), if any.
        login_hint: ``login_hint``, if any.
        issuer: The issuer identifier, sent as ``iss`` with every answer
            (RFC 9207).
    """

    client_id: str
    redirect_uri: str
    state: str | None
    scopes: frozenset[str]
    code_challenge: str
    audiences: tuple[str, ...]
    nonce: str | None = None
    idp: str | None = None
    prompt: str | None = None
    login_hint: str | None = None
    issuer: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (kept in a login transaction); see `from_dict`."""
        return {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": self.state,
            "scopes": sorted(self.scopes),
            "code_challenge": self.code_challenge,
            "audiences": list(self.audiences),
            "nonce": self.nonce,
            "idp": self.idp,
            "prompt": self.prompt,
            "login_hint": self.login_hint,
            "issuer": self.issuer,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthorizeRequest:
        """The request `to_dict` gave.

        Raises:
            ValueError: ``data`` is not such a dictionary.
        """
        try:
            request = cls(
                client_id=_text(data["client_id"]),
                redirect_uri=_text(data["redirect_uri"]),
                state=_optional(data.get("state")),
                scopes=frozenset(_texts(data["scopes"])),
                code_challenge=_text(data["code_challenge"]),
                audiences=tuple(_texts(data["audiences"])),
                nonce=_optional(data.get("nonce")),
                idp=_optional(data.get("idp")),
                prompt=_optional(data.get("prompt")),
                login_hint=_optional(data.get("login_hint")),
                issuer=_optional(data.get("issuer")) or "",
            )
        except (KeyError, TypeError) as exc:
            raise ValueError("not an authorization request") from exc
        if not request.audiences or not _S256_CHALLENGE.fullmatch(request.code_challenge):
            raise ValueError("not an authorization request")
        return request


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("a non-empty string is expected")
    return value


def _optional(value: Any) -> str | None:
    return None if value is None else _text(value)


def _texts(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise TypeError("a list is expected")
    return [_text(item) for item in value]


def code_hash(code: str) -> str:
    """The stored form of an authorization code."""
    return hash_secret(code, CODE_KIND)


def with_query(uri: str, params: Sequence[tuple[str, str | None]]) -> str:
    """``uri`` with ``params`` added to its query (which is kept, RFC 6749 §3.1.2).

    ``None`` values are left out.
    """
    query = urlencode([(name, value) for name, value in params if value is not None])
    if not query:
        return uri
    if "?" not in uri:
        return f"{uri}?{query}"
    return uri + query if uri.endswith(("?", "&")) else f"{uri}&{query}"


def error_redirect(request: AuthorizeRequest, error: str, description: str) -> str:
    """The redirect URI carrying an error answer (RFC 6749 §4.1.2.1, RFC 9207 ``iss``).

    Args:
        request: The validated request (its redirect URI, state and issuer).
        error: The OAuth error code (``access_denied``, ``login_required``, ...).
        description: Fixed text for ``error_description`` (never a request value).
    """
    return with_query(
        request.redirect_uri,
        [
            ("error", error),
            ("error_description", description),
            ("state", request.state),
            ("iss", request.issuer or None),
        ],
    )


# --- parsing ------------------------------------------------------------------------------


def _page(error: str, description: str, reason: str) -> AuthorizeError:
    """A refusal shown as a page: no redirect URI can be trusted."""
    return AuthorizeError(error, description, None, reason=reason)


def _single(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Each parameter once (RFC 6749 §3.1); empty values count as absent."""
    counts = Counter(name for name, _ in params)
    if any(count > 1 for count in counts.values()):
        raise _page("invalid_request", "A parameter is repeated", "duplicate_parameter")
    return {name: value for name, value in params if value != ""}


def redirect_uri_matches(registered: str, requested: str) -> bool:
    """Whether ``requested`` is ``registered`` (exactly, or a loopback URI with another port)."""
    if requested == registered:
        return True
    mine = _LOOPBACK.fullmatch(registered)
    theirs = _LOOPBACK.fullmatch(requested)
    if mine is None or theirs is None:
        return False
    if mine.group(1) != theirs.group(1) or (mine.group(3) or "") != (theirs.group(3) or ""):
        return False
    port = theirs.group(2)
    return port is None or (not port.startswith("0") and int(port) <= 65535)


async def _client(runtime: IssuerRuntime, client_id: str | None) -> ClientRecord:
    if not client_id:
        raise _page("invalid_request", "client_id is required", "no_client_id")
    if len(client_id) > MAX_CLIENT_ID_CHARS or not set(client_id) <= _VSCHAR:
        raise _page("invalid_request", "Unknown client", "invalid_client_id")
    client = await runtime.client(client_id)  # StoreUnavailable: the HTTP layer's 503
    if client is None:
        raise _page("invalid_request", "Unknown client", "unknown_client")
    if client.disabled:
        raise _page("invalid_request", "Unknown client", "client_disabled")
    if "authorization_code" not in client.grant_types:
        raise _page(
            "unauthorized_client",
            "This client may not use the authorization code flow",
            "grant_not_allowed_for_client",
        )
    return client


def _redirect_uri(client: ClientRecord, requested: str | None) -> str:
    if not requested:
        raise _page("invalid_request", "redirect_uri is required", "no_redirect_uri")
    if len(requested) <= MAX_REDIRECT_URI_CHARS and any(
        redirect_uri_matches(registered, requested) for registered in client.redirect_uris
    ):
        return requested
    raise _page(
        "invalid_request", "redirect_uri is not registered for this client", "unregistered_redirect"
    )


def _state(value: str | None) -> str | None:
    if value is None or (len(value) <= MAX_STATE_CHARS and set(value) <= _VSCHAR):
        return value
    return None  # refused below; never echoed


def _printable(value: str | None, limit: int) -> bool:
    return value is None or (len(value) <= limit and set(value) <= _VSCHAR)


async def parse_authorize(
    runtime: IssuerRuntime, params: Sequence[tuple[str, str]]
) -> AuthorizeRequest:
    """Validate an authorization request's query parameters.

    Args:
        runtime: The issuer.
        params: The query parameters in order, repeated names included.

    Returns:
        The validated request.

    Raises:
        AuthorizeError: every refusal; ``redirect`` is ``None`` when the
            browser must not be redirected (see the module's description).
        StoreUnavailable: the client could not be looked up.
    """
    config = runtime.config
    values = _single(params)
    if "authorization_code" not in config.grant_types:
        raise _page(
            "unsupported_response_type",
            "The authorization code flow is not enabled",
            "authorization_code_disabled",
        )
    client = await _client(runtime, values.get("client_id"))
    redirect_uri = _redirect_uri(client, values.get("redirect_uri"))
    raw_state = values.get("state")
    state = _state(raw_state)
    partial = AuthorizeRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        state=state,
        scopes=frozenset(),
        code_challenge="",
        audiences=(),
        issuer=config.issuer,
    )

    def refused(error: str, description: str, reason: str) -> AuthorizeError:
        return AuthorizeError(
            error, description, error_redirect(partial, error, description), reason=reason
        )

    if raw_state is not None and state is None:
        raise refused("invalid_request", "state is malformed or too long", "invalid_state")
    response_type = values.get("response_type")
    if response_type is None:
        raise refused("invalid_request", "response_type is required", "no_response_type")
    if response_type != "code":
        raise refused(
            "unsupported_response_type",
            "Only the code response type is supported",
            "unsupported_response_type",
        )
    if values.get("response_mode", "query") != "query":
        raise refused(
            "invalid_request", "Only the query response mode is supported", "response_mode"
        )
    challenge = _challenge(values, refused)
    scopes, audiences = _grant(runtime, client, values, refused)
    nonce = values.get("nonce")
    if not _printable(nonce, MAX_NONCE_CHARS):
        raise refused("invalid_request", "nonce is malformed or too long", "invalid_nonce")
    prompt = values.get("prompt")
    if prompt is not None:
        words = prompt.split(" ")
        if not set(words) <= PROMPT_VALUES or ("none" in words and len(words) > 1):
            raise refused("invalid_request", "prompt has an unsupported value", "invalid_prompt")
    idp = values.get("idp")
    if not _printable(idp, MAX_IDP_CHARS):
        raise refused("invalid_request", "idp is malformed or too long", "invalid_idp")
    login_hint = values.get("login_hint")
    if not _printable(login_hint, MAX_LOGIN_HINT_CHARS):
        raise refused(
            "invalid_request", "login_hint is malformed or too long", "invalid_login_hint"
        )
    return AuthorizeRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        state=state,
        scopes=scopes,
        code_challenge=challenge,
        audiences=audiences,
        nonce=nonce,
        idp=idp,
        prompt=prompt,
        login_hint=login_hint,
        issuer=config.issuer,
    )


def _challenge(values: Mapping[str, str], refused: _Refuse) -> str:
    """The PKCE challenge: S256 only (RFC 7636 §4.3; RFC 9700 §2.1.1), never ``plain``."""
    challenge = values.get("code_challenge")
    method = values.get("code_challenge_method")
    if challenge is None:
        raise refused("invalid_request", "PKCE is required: send code_challenge", "no_pkce")
    if method is None:
        # RFC 7636 §4.3 would default to plain: refused.
        raise refused("invalid_request", "code_challenge_method=S256 is required", "no_pkce_method")
    if method != "S256":
        raise refused(
            "invalid_request", "Only the S256 code challenge method is supported", "pkce_method"
        )
    if not _S256_CHALLENGE.fullmatch(challenge):
        raise refused("invalid_request", "code_challenge is malformed", "invalid_code_challenge")
    return challenge


def _grant(
    runtime: IssuerRuntime, client: ClientRecord, values: Mapping[str, str], refused: _Refuse
) -> tuple[frozenset[str], tuple[str, ...]]:
    """Scopes (requested ∩ the client's ∩ the issuer's) and audiences (RFC 8707)."""
    scope = values.get("scope")
    try:
        if scope is not None and len(scope) > MAX_SCOPE_CHARS:
            raise OAuthError("invalid_scope", "Unknown scope requested", reason="scope_too_long")
        scopes = runtime.grant_scopes(scope, client.scopes)
        audiences = runtime.grant_audiences(values.get("resource"))
    except OAuthError as exc:
        raise refused(exc.error, exc.description or exc.error, exc.reason) from None
    return scopes, audiences


# --- the answer ---------------------------------------------------------------------------


async def complete(
    runtime: IssuerRuntime,
    request: AuthorizeRequest,
    user: UserRecord,
    *,
    auth_time: float,
    amr: str,
) -> str:
    """Issue a code for ``user`` and return the client's redirect URI carrying it.

    The client is looked up again (the login may have taken minutes): a
    client removed, disabled or without the grant since, or whose redirect URI
    was unregistered, gets no code and no redirect. The code's scopes are the
    request's ∩ the user's ∩ the client's and the issuer's today (possibly
    none: RFC 6749 §3.3 lets the server grant fewer than requested; the token
    response says which).

    Args:
        runtime: The issuer.
        request: The request `parse_authorize` validated.
        user: The account that logged in.
        auth_time: When the user authenticated (POSIX seconds).
        amr: How (``"pwd"``, or the provider's name).

    Returns:
        The redirect URI with ``code``, ``state`` and ``iss``.

    Raises:
        AuthorizeError: the client cannot receive the code any more
            (``redirect`` ``None``), or the account is disabled
            (``access_denied``, redirected).
        StoreUnavailable: the code could not be stored.
    """
    config = runtime.config
    client = await _client(runtime, request.client_id)
    _redirect_uri(client, request.redirect_uri)
    if user.disabled:
        raise AuthorizeError(
            "access_denied",
            "The account is disabled",
            error_redirect(request, "access_denied", "The account is disabled"),
            reason="account_disabled",
        )
    scopes = request.scopes & user.scopes & client.scopes & frozenset(config.scopes)
    now = runtime.clock()
    ttl = config.authorization_code_ttl
    code = new_secret(CODE_PREFIX)
    hashed = code_hash(code)
    record = {
        "client_id": client.client_id,
        "redirect_uri": request.redirect_uri,
        "code_challenge": request.code_challenge,
        "user_id": user.id,
        "scopes": sorted(scopes),
        "audiences": list(request.audiences),
        "auth_time": auth_time,
        "amr": amr,
        "nonce": request.nonce,
        "issued_at": now,
    }
    # The marker first: a code is never redeemable without it.
    await runtime.store.replay.first_use(
        f"code-issued:{hashed}", expires_at=now + ttl + CODE_REPLAY_WINDOW, now=now
    )
    await runtime.store.one_time.put(
        CODE_KIND,
        hashed,
        json.dumps(record, separators=(",", ":")).encode("utf-8"),
        expires_at=now + ttl,
    )
    return with_query(
        request.redirect_uri,
        [("code", code), ("state", request.state), ("iss", config.issuer)],
    )
