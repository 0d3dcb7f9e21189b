"""FakeFacebook's manual login flow ("Manually Build a Login Flow") and ``/me``.

``GET {www}/vXX.X/dialog/oauth`` shows the login dialog; ``GET`` (as
documented, parameters in the query) or ``POST {graph}/vXX.X/oauth/access_token``
exchanges the code for a user access token with ``client_id``, ``client_secret``,
the same ``redirect_uri`` and, after a PKCE challenge, the ``code_verifier``.
``GET {graph}/vXX.X/me?fields=...`` answers the user; ``appsecret_proof``
(HMAC-SHA256 of the token keyed with the app secret) is checked when sent and
required when the app says so.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._login import (
    _Flow,
    client_auth,
    error_page,
    pkce_matches,
    random_code,
    redirect,
    redirect_allowed,
    secret_ok,
    split_scopes,
)
from ._wire import _Incoming, _Reply

if TYPE_CHECKING:
    from ._facebook import FakeFacebook

__all__: list[str] = []

DIALOG = re.compile(r"^/v\d+\.\d+/dialog/oauth$")
_FIELDS = frozenset({"id", "name", "email", "first_name", "last_name", "picture"})
_LIFETIME = 60 * 24 * 3600


@dataclass(slots=True)
class _FacebookUser:
    user_id: str
    name: str
    email: str | None
    first_name: str | None
    last_name: str | None


class _FacebookFlow(_Flow[_FacebookUser]):
    title = "Log in with Facebook"
    login_error = "The account you entered is not connected to this app."

    def __init__(self, fake: FakeFacebook, code_ttl: float) -> None:
        super().__init__(fake.clock, code_ttl)
        self.fake = fake

    def labels(self) -> list[tuple[str, str]]:
        return [(key, user.name) for key, user in self.users.items()]

    def scopes_of(self, params: Mapping[str, str]) -> tuple[str, ...]:
        return split_scopes(params.get("scope"), " ,") or ("public_profile",)

    def check(self, params: Mapping[str, str]) -> _Reply | None:
        fake = self.fake
        if params.get("client_id") != fake.app_id:
            return error_page(
                "Invalid App ID", "The provided app ID does not look like a valid app ID."
            )
        if not redirect_allowed(fake.redirect_uris, params.get("redirect_uri")):
            return error_page(
                "URL blocked",
                "This redirect failed because the redirect URI is not whitelisted in the app's "
                "Client OAuth Settings.",
            )
        method = params.get("code_challenge_method")
        if params.get("code_challenge") and method not in (None, "S256", "plain"):
            fields = {"error": "invalid_request", "state": params.get("state")}
            return redirect(params["redirect_uri"], fields)
        return None

    def deny(self, params: Mapping[str, str]) -> _Reply:
        fields = {
            "error_reason": "user_denied",
            "error": "access_denied",
            "error_description": "Permissions error.",
            "state": params.get("state"),
        }
        return redirect(params["redirect_uri"], fields)

    def issue(self, params: Mapping[str, str], user: str) -> str:
        record = self.code_record(params, user, scopes=self.scopes_of(params))
        return self.desk.issue(f"AQ{random_code(96)}", record)

    def callback_fields(
        self, params: Mapping[str, str], code: str, user: str
    ) -> dict[str, str | None]:
        return {"code": code, "state": params.get("state")}

    # -- token -----------------------------------------------------------------------

    def token(self, request: _Incoming) -> _Reply:
        fake = self.fake
        params = {**request.query, **request.form}
        auth = client_auth(request, params)
        if auth.client_id != fake.app_id:
            return fake._error(400, 101, "Error validating application. Invalid application ID.")
        if auth.method != "post" or not secret_ok(fake.app_secret, auth.secret):
            return fake._error(400, 1, "Error validating client secret.")
        if not params.get("redirect_uri"):
            return fake._error(400, 191, "Missing redirect_uri parameter.")
        state, record = self.desk.take(params.get("code", ""))
        messages = {
            "used": "This authorization code has been used.",
            "expired": "This authorization code has expired.",
            "unknown": "Invalid verification code format.",
        }
        if state != "active" or record is None:
            return fake._error(400, 100, messages[state])
        if record.redirect_uri != params["redirect_uri"]:
            return fake._error(
                400,
                100,
                "Error validating verification code. Please make sure your redirect_uri is "
                "identical to the one you used in the OAuth dialog request",
            )
        challenge = record.code_challenge
        method = record.code_challenge_method or "plain"
        if challenge and not pkce_matches(challenge, method, params.get("code_verifier")):
            return fake._error(400, 100, "Invalid code verifier.")
        token = fake.issue_token(record.user, record.scopes, _LIFETIME)
        answer = {"access_token": token, "token_type": "bearer", "expires_in": _LIFETIME - 56}
        return fake._json(200, answer)

    # -- /me -------------------------------------------------------------------------

    def me(self, request: _Incoming) -> _Reply:
        fake = self.fake
        params = {**request.query, **request.form}
        token = params.get("access_token") or request.header_token("bearer", "oauth")
        if not token or "|" in token:  # none, or an app token: no current user
            message = (
                "An active access token must be used to query information about the current user."
            )
            return fake._error(400, 2500, message)
        state = fake.token_state(token)
        if state != "active":
            subcode = {"expired": 463, "revoked": 460}.get(state)
            message = (
                "Error validating access token: Session has expired."
                if state == "expired"
                else "Invalid OAuth access token - Cannot parse access token"
            )
            return fake._error(400, 190, message, subcode=subcode)
        proof = params.get("appsecret_proof")
        if proof is None and fake.require_appsecret_proof:
            return fake._error(
                400,
                100,
                "API calls from the server require an appsecret_proof argument",
                kind="GraphMethodException",
            )
        if proof is not None and not hmac.compare_digest(
            proof, appsecret_proof(fake.app_secret, token)
        ):
            return fake._error(
                400,
                100,
                "Invalid appsecret_proof provided in the API argument",
                kind="GraphMethodException",
            )
        fields = split_scopes(params.get("fields"), ",") or ("id", "name")
        unknown = [f for f in fields if f not in _FIELDS]
        if unknown:
            return fake._error(
                400,
                100,
                f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type (User)",
            )
        grant = fake._grants[token]
        return fake._json(200, self.person(grant.user_id, grant.scopes, fields))

    def person(
        self, user_id: str, scopes: tuple[str, ...], fields: tuple[str, ...]
    ) -> dict[str, Any]:
        user = self.users.get(user_id)
        values: dict[str, Any] = {"id": user_id, "name": user.name if user else f"User {user_id}"}
        if user is not None:
            values.update(first_name=user.first_name, last_name=user.last_name)
            if "email" in scopes:
                values["email"] = user.email
        values["picture"] = {"data": {"is_silhouette": True, "url": "https://example.test/p.png"}}
        return {f: values[f] for f in fields if values.get(f) is not None}


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """Graph API ``appsecret_proof``: HMAC-SHA256 of the token, keyed with the app secret, hex."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()
