"""Facebook: user access tokens checked with the Graph API's ``debug_token``, for every role."""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import urlencode

from .._clock import Clock
from .._http import ClientSource
from ..errors import ConfigurationError, InvalidToken, ProviderUnavailable
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


class FacebookProvider(ApiProviderBase):
    """Facebook user access tokens, checked with the Graph API's ``debug_token``.

    The token must be valid, issued to *your* app (``app_id``), of type USER
    and unexpired. The check is a Graph API batch request, so the app access
    token (``app_id|app_secret``) and the user's token travel in a POST body,
    never in a URL.

    Args:
        app_id: Your Facebook app id.
        app_secret: Your app secret.
        name: Provider name in the [Principal][authbridge.Principal].
        graph_base: Graph API root.
        api_version: Graph API version (e.g. ``"v19.0"``).
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
            issuer="https://www.facebook.com",
            subject=user_id,
            client_id=provider.app_id,
            scopes=tuple(scope_tokens(data.get("scopes"))),
            expires_at=expires_at,
            claims=data,
        )
        return self._verified(principal, expires_at)
