"""FakeGoogle's OpenID Connect web server flow ("Using OAuth 2.0 for Web Server Applications").

``GET {accounts}/o/oauth2/v2/auth`` shows an account chooser; ``POST
{oauth2}/token`` redeems the code (client secret required, Basic or body;
PKCE S256 or plain checked when a challenge was sent) for an access token
(``ya29.``, also answered by ``/tokeninfo``) and, with the ``openid`` scope,
an ID token signed with the fake's RSA key (published at
``{certs}/oauth2/v3/certs``): ``iss`` ``https://accounts.google.com``,
``azp``/``aud`` the client id, ``at_hash``, ``nonce`` echoed, ``email`` with a
boolean ``email_verified``, ``hd`` for Workspace users. ``GET
{userinfo}/v1/userinfo`` answers the same person.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._jwt import _half_hash
from ._login import (
    _Flow,
    client_auth,
    error_page,
    pkce_matches,
    redirect,
    redirect_allowed,
    secret_ok,
    split_scopes,
)
from ._wire import _Incoming, _json_reply, _Reply

if TYPE_CHECKING:
    from ._google import FakeGoogle

__all__: list[str] = []

GOOGLE_ISSUER = "https://accounts.google.com"
_SCOPE_NAMES = {
    "email": "https://www.googleapis.com/auth/userinfo.email",
    "profile": "https://www.googleapis.com/auth/userinfo.profile",
}
_JSON = "application/json; charset=utf-8"
_NO_STORE = (("cache-control", "no-cache, no-store, max-age=0, must-revalidate"),)


@dataclass(slots=True)
class _GoogleUser:
    email: str
    sub: str
    email_verified: bool
    name: str | None
    given_name: str | None
    family_name: str | None
    picture: str | None
    hd: str | None


def expand_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    """Google's granted scopes: ``email``/``profile`` become their full URLs."""
    return tuple(dict.fromkeys(_SCOPE_NAMES.get(s, s) for s in scopes))


class _GoogleFlow(_Flow[_GoogleUser]):
    title = "Sign in with Google"
    login_error = "Couldn't find your Google Account."

    def __init__(self, fake: FakeGoogle, code_ttl: float) -> None:
        super().__init__(fake.clock, code_ttl)
        self.fake = fake

    # -- authorize -------------------------------------------------------------------

    def check(self, params: Mapping[str, str]) -> _Reply | None:
        fake = self.fake
        if params.get("client_id") != fake.client_id:
            return error_page("Error 401: invalid_client", "The OAuth client was not found.", 401)
        if not redirect_allowed(fake.redirect_uris, params.get("redirect_uri")):
            return error_page(
                "Error 400: redirect_uri_mismatch",
                "You can't sign in to this app because it doesn't comply with Google's OAuth "
                "2.0 policy. The redirect_uri is not registered for this client.",
                400,
            )
        error: tuple[str, str] | None = None
        if params.get("response_type") != "code":
            error = ("unsupported_response_type", "Only response_type=code is supported here.")
        elif not params.get("scope"):
            error = ("invalid_request", "Missing required parameter: scope")
        elif params.get("code_challenge") and params.get("code_challenge_method", "plain") not in (
            "S256",
            "plain",
        ):
            error = ("invalid_request", "Invalid code_challenge_method.")
        if error is None:
            return None
        fields = {"error": error[0], "error_description": error[1], "state": params.get("state")}
        return redirect(params["redirect_uri"], fields)

    def deny(self, params: Mapping[str, str]) -> _Reply:
        return redirect(
            params["redirect_uri"], {"error": "access_denied", "state": params.get("state")}
        )

    def issue(self, params: Mapping[str, str], user: str) -> str:
        record = self.code_record(
            params,
            user,
            scopes=split_scopes(params.get("scope")),
            access_type=params.get("access_type", "online"),
        )
        return self.desk.issue(f"4/0A{secrets.token_urlsafe(54)}", record)

    def callback_fields(
        self, params: Mapping[str, str], code: str, user: str
    ) -> dict[str, str | None]:
        return {
            "state": params.get("state"),
            "code": code,
            "scope": " ".join(expand_scopes(self.scopes_of(params))),
            "authuser": "0",
            "prompt": "consent",
        }

    # -- token -----------------------------------------------------------------------

    def token(self, request: _Incoming) -> _Reply:
        if request.method != "POST":
            return self.fake._not_found(request)
        params = dict(request.form)
        fake = self.fake
        auth = client_auth(request, params)
        if auth.method in ("both", "malformed"):
            return _error(400, "invalid_request", "Client authentication is malformed.")
        if auth.client_id != fake.client_id:
            return _error(401, "invalid_client", "The OAuth client was not found.")
        if not secret_ok(fake.client_secret, auth.secret):
            return _error(401, "invalid_client", "Unauthorized")
        grant_type = params.get("grant_type")
        if grant_type != "authorization_code":
            return _error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type or ''}")
        code = params.get("code")
        if not code:
            return _error(400, "invalid_request", "Missing required parameter: code")
        state, record = self.desk.take(code)
        if state != "active" or record is None or record.client_id != auth.client_id:
            return _error(400, "invalid_grant", "Bad Request")
        if params.get("redirect_uri") != record.redirect_uri:
            return _error(400, "redirect_uri_mismatch", "Bad Request")
        verifier = params.get("code_verifier")
        if record.code_challenge is not None:
            if verifier is None:
                return _error(400, "invalid_grant", "Missing code verifier.")
            method = record.code_challenge_method or "plain"
            if not pkce_matches(record.code_challenge, method, verifier):
                return _error(400, "invalid_grant", "Invalid code verifier.")
        return self._tokens(
            record.user, record.scopes, record.nonce, str(record.extra["access_type"])
        )

    def _tokens(
        self, key: str, requested: Sequence[str], nonce: str | None, access_type: str
    ) -> _Reply:
        fake, user = self.fake, self.users[key]
        scopes = expand_scopes(requested)
        access = fake.issue_access_token(
            user.sub,
            fake.client_id,
            scopes,
            email=user.email,
            email_verified=user.email_verified,
            access_type="offline" if access_type == "offline" else "online",
        )
        answer: dict[str, Any] = {
            "access_token": access,
            "expires_in": 3599,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        if access_type == "offline":
            answer["refresh_token"] = f"1//0{secrets.token_urlsafe(70)}"
        if "openid" in scopes:
            answer["id_token"] = fake._signer.id_token(self.id_claims(user, scopes, nonce, access))
        return _json_reply(200, answer, _NO_STORE, _JSON)

    def id_claims(
        self, user: _GoogleUser, scopes: Sequence[str], nonce: str | None, access: str
    ) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": GOOGLE_ISSUER,
            "azp": self.fake.client_id,
            "aud": self.fake.client_id,
            "sub": user.sub,
            "hd": user.hd,
            "at_hash": _half_hash(access),
            "nonce": nonce,
            "iat": now,
            "exp": now + 3600,
        }
        claims.update(self.profile(user, scopes))
        return claims

    @staticmethod
    def profile(user: _GoogleUser, scopes: Sequence[str]) -> dict[str, Any]:
        claims: dict[str, Any] = {}
        if _SCOPE_NAMES["email"] in scopes:
            claims.update(email=user.email, email_verified=user.email_verified)
        if _SCOPE_NAMES["profile"] in scopes:
            claims.update(
                name=user.name,
                picture=user.picture,
                given_name=user.given_name,
                family_name=user.family_name,
            )
        return {k: v for k, v in claims.items() if v is not None}

    # -- userinfo ------------------------------------------------------------------

    def userinfo(self, request: _Incoming) -> _Reply:
        fake = self.fake
        token = request.header_token("bearer")
        if not token or fake.token_state(token) != "active":
            challenge = 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
            body = {"error": "invalid_request", "error_description": "Invalid Credentials"}
            return _json_reply(401, body, (("www-authenticate", challenge),), _JSON)
        grant = fake._grants[token]
        user = next((u for u in self.users.values() if u.sub == grant.sub), None)
        claims: dict[str, Any] = {"sub": grant.sub}
        if user is not None:
            claims.update(self.profile(user, grant.scopes))
            if user.hd:
                claims["hd"] = user.hd
        elif grant.email is not None and _SCOPE_NAMES["email"] in grant.scopes:
            claims.update(email=grant.email, email_verified=grant.email_verified)
        return _json_reply(200, claims, (), _JSON)

    def route(self, request: _Incoming) -> _Reply | None:
        fake = self.fake
        if fake._under(request, "accounts") == "/o/oauth2/v2/auth":
            return self.authorize(request, fake.authorization_endpoint)
        if fake._under(request, "userinfo") == "/v1/userinfo":
            return self.userinfo(request)
        if fake._under(request, "certs") == "/oauth2/v3/certs":
            return _json_reply(200, fake._signer.jwks(), (), _JSON)
        return None


def _error(status: int, error: str, description: str) -> _Reply:
    body = {"error": error, "error_description": description}
    return _json_reply(status, body, _NO_STORE, _JSON)
