"""FakeIssuer's HTTP side: discovery, JWKS and an OpenID Connect code flow.

Authorization endpoint with a login form (username and password of the users
added with ``add_user``), token endpoint (``authorization_code``, PKCE S256,
``client_secret_basic`` or ``client_secret_post``), userinfo, and RP-initiated
logout (``end_session_endpoint``). The callback carries ``iss`` (RFC 9207),
which discovery advertises.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

from ._fakeapi import FakeAPI, _FakeTransport
from ._jwt import _half_hash, sign_jwt
from ._login import (
    _Code,
    _Flow,
    client_auth,
    error_page,
    page,
    pkce_matches,
    random_code,
    redirect,
    redirect_allowed,
    secret_ok,
    split_scopes,
)
from ._wire import _dumps, _Grant, _Incoming, _json_reply, _Reply

if TYPE_CHECKING:
    from ._issuer import FakeIssuer

__all__: list[str] = []

OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
_JSON = "application/json"
_CACHED = (("cache-control", "max-age=300"),)
_NO_STORE = (("cache-control", "no-store"), ("pragma", "no-cache"))


@dataclass(slots=True)
class _IssuerUser:
    username: str
    password: str | None
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    scopes: tuple[str, ...] | None
    claims: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _IssuerClient:
    client_id: str
    secret: str
    redirect_uris: tuple[str, ...] | None
    post_logout_redirect_uris: tuple[str, ...] | None


class _IssuerFlow(_Flow[_IssuerUser]):
    title = "Log in"
    password = True
    login_error = "Invalid username or password."

    def __init__(self, fake: FakeIssuer, code_ttl: float) -> None:
        super().__init__(fake._clock, code_ttl)
        self.fake = fake
        self.clients: dict[str, _IssuerClient] = {}
        self.access: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.id_tokens: dict[str, str] = {}
        self.tamper: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def login(self, form: Mapping[str, str]) -> str | None:
        user = self.users.get(form.get("username", ""))
        given = form.get("password", "")
        if user is None or user.password is None:
            return None
        return user.username if hmac.compare_digest(user.password, given) else None

    def check(self, params: Mapping[str, str]) -> _Reply | None:
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return error_page("Unknown client", "The client_id is not registered.")
        if not redirect_allowed(client.redirect_uris, params.get("redirect_uri")):
            return error_page("Invalid redirect_uri", "The redirect_uri is not registered.")
        error: str | None = None
        if params.get("response_type") != "code":
            error = "unsupported_response_type"
        elif params.get("code_challenge") is not None and (
            params.get("code_challenge_method") != "S256"
        ):
            error = "invalid_request"
        if error is None:
            return None
        return self.respond(params, {"error": error, "state": params.get("state")})

    def respond(self, params: Mapping[str, str], fields: Mapping[str, str | None]) -> _Reply:
        return redirect(params["redirect_uri"], {"iss": self.fake.issuer, **fields})

    def deny(self, params: Mapping[str, str]) -> _Reply:
        return self.respond(params, {"error": "access_denied", "state": params.get("state")})

    def issue(self, params: Mapping[str, str], user: str) -> str:
        record = self.code_record(params, user, scopes=split_scopes(params.get("scope")))
        return self.desk.issue(random_code(32), record)

    def callback_fields(
        self, params: Mapping[str, str], code: str, user: str
    ) -> dict[str, str | None]:
        return {"code": code, "state": params.get("state")}

    # -- token -----------------------------------------------------------------------

    def token(self, request: _Incoming) -> _Reply:
        if request.method != "POST":
            return _Reply(405, b"", (("allow", "POST"),))
        params = request.form
        auth = client_auth(request, params)
        if auth.method in ("both", "malformed"):
            return _oauth_error(400, "invalid_request", "Use one client authentication method.")
        client = self.clients.get(auth.client_id or "")
        if client is None or not secret_ok(client.secret, auth.secret):
            challenge = (("www-authenticate", 'Basic realm="token"'),)
            headers = challenge if auth.method == "basic" else ()
            return _oauth_error(401, "invalid_client", "Client authentication failed.", headers)
        if params.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "Only authorization_code.")
        state, record = self.desk.take(params.get("code", ""))
        if state != "active" or record is None or record.client_id != client.client_id:
            return _oauth_error(400, "invalid_grant", "The code is invalid, used or expired.")
        if record.redirect_uri != params.get("redirect_uri"):
            return _oauth_error(400, "invalid_grant", "redirect_uri differs from the request's.")
        verifier = params.get("code_verifier")
        if record.code_challenge is None:
            if verifier is not None:
                return _oauth_error(400, "invalid_grant", "No code_challenge was sent.")
        elif not pkce_matches(record.code_challenge, "S256", verifier):
            return _oauth_error(400, "invalid_grant", "The code_verifier does not match.")
        return self._tokens(client.client_id, self.users[record.user], record.scopes, record)

    def _tokens(
        self, client_id: str, user: _IssuerUser, requested: Sequence[str], record: _Code
    ) -> _Reply:
        fake = self.fake
        granted = tuple(
            s for s in requested if s in OIDC_SCOPES or user.scopes is None or s in user.scopes
        )
        api_scopes = [s for s in granted if s not in OIDC_SCOPES]
        access = fake.token(user.subject, api_scopes, client_id=client_id)
        self.access[access] = (user.username, granted)
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": " ".join(granted),
        }
        if "openid" in granted:
            answer["id_token"] = self._id_token(client_id, user, granted, record, access)
        return _json_reply(200, answer, _NO_STORE, _JSON)

    def _id_token(
        self, client_id: str, user: _IssuerUser, granted: Sequence[str], record: _Code, access: str
    ) -> str:
        fake, now = self.fake, int(self.clock())
        claims: dict[str, Any] = {
            "iss": fake.issuer,
            "sub": user.subject,
            "aud": client_id,
            "azp": client_id,
            "exp": now + 300,
            "iat": now,
            "auth_time": int(record.auth_time),
            "nonce": record.nonce,
            "at_hash": _half_hash(access),
            **self.profile(user, granted),
        }
        header: dict[str, Any] = {"alg": "RS256", "kid": fake.kid, "typ": "JWT"}
        if self.tamper:
            extra_header, extra_claims = self.tamper.pop(0)
            header.update(extra_header)
            claims.update(extra_claims)
        key = None if header.get("alg") == "none" else fake.key
        id_token = sign_jwt(
            {k: v for k, v in header.items() if v is not None},
            {k: v for k, v in claims.items() if v is not None},
            key,
        )
        self.id_tokens[id_token] = client_id
        return id_token

    @staticmethod
    def profile(user: _IssuerUser, scopes: Sequence[str]) -> dict[str, Any]:
        claims: dict[str, Any] = dict(user.claims)
        if "email" in scopes and user.email is not None:
            claims.update(email=user.email, email_verified=user.email_verified)
        if "profile" in scopes:
            claims.update(name=user.name, preferred_username=user.username)
        return {k: v for k, v in claims.items() if v is not None}

    # -- userinfo and logout ---------------------------------------------------------

    def userinfo(self, request: _Incoming) -> _Reply:
        token = request.header_token("bearer")
        known = self.access.get(token or "")
        if known is None or token is None or not self._unexpired(token):
            challenge = 'Bearer error="invalid_token"' if token else "Bearer"
            return _Reply(401, b"", (("www-authenticate", challenge),))
        user = self.users[known[0]]
        return _json_reply(200, {"sub": user.subject, **self.profile(user, known[1])}, (), _JSON)

    def _unexpired(self, token: str) -> bool:
        try:
            claims = _payload(token)
        except ValueError:
            return False
        return isinstance(claims.get("exp"), int) and self.clock() < claims["exp"]

    def logout(self, request: _Incoming) -> _Reply:
        params = request.form if request.method == "POST" else request.query
        target = params.get("post_logout_redirect_uri")
        if target is None:
            return page("Logged out", "<h1>Logged out</h1>\n<p>You are logged out.</p>")
        client_id = params.get("client_id") or self.id_tokens.get(params.get("id_token_hint", ""))
        client = self.clients.get(client_id or "")
        allowed = None if client is None else client.post_logout_redirect_uris
        if client is None or not redirect_allowed(allowed, target):
            return error_page("Invalid post_logout_redirect_uri", "It is not registered.")
        return redirect(target, {"state": params.get("state")})


def _payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    if not isinstance(value, dict):
        raise ValueError("not a JWT payload")
    return value


def _oauth_error(
    status: int, error: str, description: str, headers: Sequence[tuple[str, str]] = ()
) -> _Reply:
    body = {"error": error, "error_description": description}
    return _json_reply(status, body, (*_NO_STORE, *headers), _JSON)


class _IssuerTransport(_FakeTransport):
    """Another host gets FakeIssuer's historical 404 ``unknown_host`` answer."""

    def _reply(self, request: httpx.Request) -> _Reply:
        if not self._fake.serves(request.url):
            return _Reply(404, _dumps({"error": "unknown_host"}), (("content-type", _JSON),))
        return super()._reply(request)


class _IssuerHTTP(FakeAPI[_Grant]):
    """What FakeIssuer answers over HTTP (in process or on a port)."""

    def __init__(self, fake: FakeIssuer, code_ttl: float) -> None:
        super().__init__(fake.issuer, clock=fake._clock)
        self.fake = fake
        self._fake_transport = _IssuerTransport(self)
        self.transport = self._fake_transport
        self.flow = _IssuerFlow(fake, code_ttl)

    def serves(self, url: httpx.URL | str) -> bool:
        return httpx.URL(url).host == httpx.URL(self._base_url).host

    def _secrets(self) -> set[str]:
        return {*super()._secrets(), *(c.secret for c in self.flow.clients.values())}

    def _dispatch(
        self,
        method: str,
        url: httpx.URL,
        headers: httpx.Headers,
        body: bytes,
        via: Literal["transport", "http"],
    ) -> _Reply:
        self.fake.requests.append(url.path)
        return super()._dispatch(method, url, headers, body, via)

    def _not_found(self, request: _Incoming) -> _Reply:
        return _Reply(404, b'{"error":"not_found"}', (("content-type", _JSON),))

    def _server_error(self, status: int) -> _Reply:
        return _json_reply(status, {"error": "temporarily_unavailable"}, (), _JSON)

    def _rate_limited(self, request: _Incoming, retry_after: int | None) -> _Reply:
        headers = (("retry-after", str(60 if retry_after is None else retry_after)),)
        return _json_reply(429, {"error": "slow_down"}, headers, _JSON)

    def _route(self, request: _Incoming) -> _Reply:
        fake, path = self.fake, request.path
        # Served over HTTP, caching headers as a real issuer sends; through the
        # transport none, so the JWKS cache's own default ages apply in tests.
        cached = _CACHED if self._serving else ()
        if path == "/.well-known/openid-configuration":
            return _json_reply(200, fake.discovery_document(), cached, _JSON)
        if path == httpx.URL(fake.jwks_uri).path[len(httpx.URL(fake.issuer).path.rstrip("/")) :]:
            return _json_reply(200, fake.jwks(), cached, _JSON)
        routes = {"/authorize": self._authorize, "/token": self.flow.token}
        routes.update({"/userinfo": self.flow.userinfo, "/logout": self.flow.logout})
        handler = routes.get(path)
        return self._not_found(request) if handler is None else handler(request)

    def _authorize(self, request: _Incoming) -> _Reply:
        return self.flow.authorize(request, f"{self.fake.issuer.rstrip('/')}/authorize")
