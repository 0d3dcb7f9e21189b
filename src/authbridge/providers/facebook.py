"""Facebook: user access tokens checked with the Graph API's ``debug_token``, and login."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from urllib.parse import urlencode

from .._clock import Clock
from .._http import ClientSource
from ..client import (
    AuthorizationRequest,
    ExternalIdentity,
    LoginEndpoints,
    ProviderLogin,
    TokenSet,
)
from ..errors import ConfigurationError, InvalidToken, LoginError, ProviderUnavailable
from ..resource import Principal
from ..resource._api import ApiProviderBase, ApiSource, api_principal
from ..resource._formats import (
    facebook_token_plausible,
)
from ..resource._upstream import (
    batch_body,
    expiry_time,
    facebook_reason,
    numeric_id,
)
from ..resource.base import Verified, scope_tokens
from ._login import get_json, need_login, text, user_object

FACEBOOK_ISSUER = "https://www.facebook.com"
"""The namespace of Facebook identities (Facebook Login has no issuer of its own here)."""


class FacebookProvider(ApiProviderBase):
    """Facebook: "Log in with Facebook", and user access tokens accepted on routes and in exchange.

    A token must be valid, issued to *your* app (``app_id``), of type USER
    and unexpired. The check is a Graph API batch request, so the app access
    token (``app_id|app_secret``) and the user's token travel in a POST body,
    never in a URL.

    Login: the browser goes to the login dialog (``dialog_url``); the code is
    redeemed at ``{graph_base}/{api_version}/oauth/access_token`` (secret in
    the form); the person is ``GET {graph_base}/{api_version}/me?fields=id,name,email``
    with ``appsecret_proof`` (HMAC-SHA256 of the token under the app secret).
    The subject is the app-scoped user id, in the namespace
    ``https://www.facebook.com``. Facebook says nothing about whether an
    address was verified: its email is **never** counted as verified. No PKCE
    (the classic flow does not document it) and no ID token.

    Token exchange: a token that passed the ``app_id`` check becomes the same
    identity as a browser login.

    Args:
        app_id: Your Facebook app id.
        app_secret: Your app secret.
        name: Provider name in the [Principal][authbridge.Principal].
        graph_base: Graph API root.
        api_version: Graph API version (e.g. ``"v19.0"``).
        dialog_url: The login dialog (tests point it at a fake).
        login_scopes: Permissions asked for at login.
        display_name: The name on the login chooser.
        token_prefixes: Tokens routed here (user tokens start with ``EAA``).
        cache_ttl: Longest reuse of a positive answer, in seconds.
        negative_cache_ttl: How long a refused token is remembered.
        max_concurrent_checks: Most Graph API calls in flight at once.
        max_checks_per_second: Most Graph API calls started per second. A token
            needing a call beyond either bound is refused at once with a 503
            (see [ResourceServer][authbridge.ResourceServer]).
        check_token_format: Refuse without asking Facebook a token with
            characters other than letters and digits after its prefix (what
            Facebook's tokens are made of; Facebook calls them opaque, so turn
            this off if that ever changes).
    """

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        *,
        name: str = "facebook",
        graph_base: str = "https://graph.facebook.com",
        api_version: str = "v19.0",
        dialog_url: str = "https://www.facebook.com/v19.0/dialog/oauth",
        login_scopes: Sequence[str] = ("email", "public_profile"),
        display_name: str = "Facebook",
        token_prefixes: Sequence[str] = ("EAA",),
        cache_ttl: float = 60.0,
        negative_cache_ttl: float = 5.0,
        max_concurrent_checks: int = 16,
        max_checks_per_second: float = 100.0,
        check_token_format: bool = True,
    ) -> None:
        if not app_id or not app_secret:
            raise ConfigurationError("facebook_needs_app_id_and_secret", provider=name)
        limits = (max_concurrent_checks, max_checks_per_second)
        self._set_common(name, token_prefixes, cache_ttl, negative_cache_ttl, limits)
        self.check_token_format = check_token_format
        self.app_id = app_id
        self._app_secret = app_secret
        self.graph_base = graph_base.rstrip("/")
        self.api_version = api_version
        self.dialog_url = dialog_url
        self.login_scopes = tuple(login_scopes)
        self.display_name = display_name

    @property
    def login_enabled(self) -> bool:
        """Always: the app id and secret that check tokens also log people in."""
        return True

    def bind_login(self, client: ClientSource, clock: Clock, *, timeout: float) -> FacebookLogin:
        """Create the login runtime for one app."""
        need_login(self.login_enabled, self.name)
        return FacebookLogin(self, client=client, clock=clock, timeout=timeout)

    def exchange_identity(self, principal: Principal) -> ExternalIdentity | None:
        """The identity behind a Facebook token this provider's verifier accepted.

        ``None`` for a token not issued to ``app_id`` (the verifier refuses
        those already; this checks again).
        """
        if principal.provider != self.name or principal.client_id != self.app_id:
            return None
        if principal.subject is None:
            return None
        return facebook_identity(self.name, principal.subject, principal.claims)

    def appsecret_proof(self, access_token: str) -> str:
        """The Graph API's ``appsecret_proof`` of ``access_token`` (HMAC-SHA256, hex)."""
        key = self._app_secret.encode("utf-8")
        return hmac.new(key, access_token.encode("utf-8"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"FacebookProvider({self.name!r}, app_id={self.app_id!r})"

    def bind(self, client: ClientSource, clock: Clock, *, timeout: float) -> _FacebookSource:
        """Create the runtime for one app."""
        return _FacebookSource(self, client, clock, timeout=timeout)


class _FacebookSource(ApiSource):
    def __init__(
        self, provider: FacebookProvider, client: ClientSource, clock: Clock, *, timeout: float
    ) -> None:
        super().__init__(provider, client, clock, timeout=timeout)
        self._provider = provider

    def check_format(self, token: str) -> None:
        """Refuse a token with anything but letters and digits after its prefix."""
        if not self._check_format:
            return
        prefix = next((p for p in self.opaque_prefixes if token.startswith(p)), "")
        if not facebook_token_plausible(token, len(prefix)):
            self._refuse_format("Facebook token: its prefix, then letters and digits")

    async def verify_opaque(self, token: str) -> Verified:
        self._check_size(token)
        provider = self._provider
        # debug_token is documented as a GET with the token in the query. A Graph
        # API batch request carries that GET inside a POST body, so neither the
        # user's token nor the app secret ever travels in a URL.
        operation = {
            "method": "GET",
            "relative_url": f"{provider.api_version}/debug_token?"
            + urlencode({"input_token": token}),
        }
        response = await self._call(
            "POST",
            f"{provider.graph_base}/",
            data={
                "batch": json.dumps([operation]),
                "include_headers": "false",
                "access_token": f"{provider.app_id}|{provider._app_secret}",
            },
        )
        if response.status != 200:
            raise self._unavailable(response)
        results = response.json_array(provider=self.name)
        first = results[0] if len(results) == 1 else None
        body = batch_body(first)
        if body is None:
            raise ProviderUnavailable("unexpected_response", provider=self.name)
        code, payload = body
        if code != 200 or "error" in payload:
            # e.g. 190 on our app token: our credentials are wrong. Fail closed (503).
            raise ProviderUnavailable(facebook_reason(payload.get("error")), provider=self.name)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise ProviderUnavailable("unexpected_response", provider=self.name)
        if data.get("is_valid") is not True:
            raise InvalidToken("rejected_by_provider", provider=self.name)
        app_id = data.get("app_id")
        if (app_id if isinstance(app_id, str) else numeric_id(app_id)) != provider.app_id:
            raise InvalidToken("client_mismatch", provider=self.name)
        if data.get("type", "USER") != "USER":
            raise InvalidToken("wrong_token_type", provider=self.name)
        raw = data.get("expires_at")
        try:
            expires = expiry_time(raw) if raw is not None else None
        except ValueError:
            raise ProviderUnavailable("unexpected_response", provider=self.name) from None
        expires_at = expires if expires else None  # 0 means "does not expire"
        self._check_expiry(expires_at)  # far in the past is expired too
        user_id = numeric_id(data.get("user_id"))
        if user_id is None:  # a user token names its (app-scoped, numeric) user
            raise ProviderUnavailable("unexpected_response", provider=self.name)
        principal = api_principal(
            provider=self.name,
            issuer=FACEBOOK_ISSUER,
            subject=user_id,
            client_id=provider.app_id,
            scopes=tuple(scope_tokens(data.get("scopes"))),
            expires_at=expires_at,
            claims=data,
        )
        return self._verified(principal, expires_at)


class FacebookLogin(ProviderLogin):
    """ "Log in with Facebook" inside one app.

    See [FacebookProvider][authbridge.FacebookProvider].
    """

    uses_pkce = False
    uses_nonce = False
    token_endpoint_auth = "client_secret_post"

    def __init__(
        self, provider: FacebookProvider, *, client: ClientSource, clock: Clock, timeout: float
    ) -> None:
        super().__init__(
            client=client, clock=clock, timeout=timeout, client_secret=provider._app_secret
        )
        self.provider = provider
        self.name = provider.name
        self.display_name = provider.display_name
        self.client_id = provider.app_id
        self.scopes = provider.login_scopes
        graph = f"{provider.graph_base}/{provider.api_version}"
        self._me = f"{graph}/me"
        self._endpoints = LoginEndpoints(
            authorization_endpoint=provider.dialog_url,
            token_endpoint=f"{graph}/oauth/access_token",
        )

    async def endpoints(self) -> LoginEndpoints:
        """The dialog and the Graph API's token endpoint."""
        return self._endpoints

    def authorization_params(self, auth: AuthorizationRequest) -> dict[str, str]:
        """Facebook's dialog: permissions separated by commas; no ``prompt``/``login_hint``."""
        params = super().authorization_params(auth)
        if auth.scopes:
            params["scope"] = ",".join(auth.scopes)
        params.pop("login_hint", None)
        if params.pop("prompt", None) == "login":
            params["auth_type"] = "reauthenticate"
        return params

    async def identity(self, tokens: TokenSet, *, nonce: str | None) -> ExternalIdentity:
        """The person: ``GET /me?fields=id,name,email`` with ``appsecret_proof``.

        Raises:
            LoginError: ``no_subject``, ``token_error`` (Facebook refused the token).
            ProviderUnavailable: the Graph API is down or answers garbage.
        """
        query = urlencode(
            {
                "fields": "id,name,email",
                "appsecret_proof": self.provider.appsecret_proof(tokens.access_token),
            }
        )
        response = await get_json(
            self._client,
            f"{self._me}?{query}",
            provider=self.name,
            access_token=tokens.access_token,
            timeout=self._timeout,
        )
        if response.status in (400, 403):  # Graph API: OAuthException for a bad token
            raise LoginError("token_error", provider=self.name, detail={"error": "graph_refused"})
        user = user_object(response, provider=self.name, now=self._clock())
        user_id = numeric_id(user.get("id"))
        if user_id is None:
            raise LoginError("no_subject", provider=self.name)
        return facebook_identity(self.name, user_id, user)


def facebook_identity(name: str, user_id: str, user: object) -> ExternalIdentity:
    """A Facebook user as an identity: the app-scoped id; the email never verified."""
    claims = dict(user) if isinstance(user, dict) else {}
    return ExternalIdentity(
        provider=name,
        issuer=FACEBOOK_ISSUER,
        subject=user_id,
        email=text(claims.get("email")),
        email_verified=False,
        name=text(claims.get("name")),
        claims=claims,
    )
