"""Verifiers for tokens that only their provider's API can check.

GitHub and Facebook access tokens, Google access tokens and any provider's
tokens checked at its OpenID Connect userinfo endpoint carry nothing a
resource server can verify locally: the provider must be asked. Every one of
these verifiers:

- receives only tokens routed to it (by its documented token prefix, or as the
  one provider accepting unprefixed opaque tokens);
- sends the token in a header or a POST body, never in a URL;
- maps the provider's answers: token refused → :class:`InvalidToken` (401);
  rate limited, 5xx, timeout or garbage → :class:`ProviderUnavailable` (503);
- returns the same :class:`Principal`, cached within the token's lifetime and
  at most ``cache_ttl`` seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from .._clock import Clock
from .._http import DEFAULT_TIMEOUT, ClientSource, RawResponse, request
from ..errors import ConfigurationError, InvalidToken, ProviderUnavailable
from ..jose._jwt import TokenType, numeric_date
from ..providers.discovery import MetadataCache, check_issuer_url
from .base import NoJWT, Verified, as_tuple, scope_tokens
from .principal import Principal
from .provider import BoundProvider, OIDCProvider

MAX_API_RESPONSE = 256 * 1024

GITHUB_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")
"""GitHub's documented token prefixes (personal, OAuth, user-to-server, server-to-server,
refresh, fine-grained personal)."""

GOOGLE_ISSUER = "https://accounts.google.com"
GOOGLE_ISSUER_ALIAS = "accounts.google.com"
GOOGLE_JWKS_URI = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_TOKENINFO = "https://oauth2.googleapis.com/tokeninfo"
GOOGLE_ACCESS_TOKEN_PREFIX = "ya29."


def _principal(
    *,
    provider: str,
    issuer: str,
    subject: str | None,
    client_id: str | None,
    scopes: Sequence[str],
    expires_at: float | None,
    claims: Mapping[str, Any],
) -> Principal:
    return Principal(
        provider=provider,
        issuer=issuer,
        subject=subject,
        client_id=client_id,
        scopes=frozenset(scopes),
        expires_at=datetime.fromtimestamp(expires_at, UTC) if expires_at is not None else None,
        token_id=None,
        claims=dict(claims),
    )


def _numeric(value: Any) -> float | None:
    """A NumericDate given as a number or a string of digits (Google sends strings)."""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 12):
            return None
        value = int(value)
    return numeric_date(value)


def _rate_limited(response: RawResponse) -> bool:
    headers = response.headers
    return response.status == 429 or (
        response.status == 403
        and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)
    )


def _unavailable(response: RawResponse, provider: str) -> ProviderUnavailable:
    if _rate_limited(response):
        return ProviderUnavailable("rate_limited", provider=provider)
    return ProviderUnavailable(f"http_status:{response.status}", provider=provider)


class _ApiProvider:
    """What the API-verifier configurations share: routing and cache settings."""

    name: str
    token_prefixes: tuple[str, ...]
    accept_unprefixed: bool = False
    cache_ttl: float
    negative_cache_ttl: float

    def _set_common(
        self,
        name: str,
        token_prefixes: Sequence[str],
        cache_ttl: float,
        negative_cache_ttl: float,
    ) -> None:
        if cache_ttl < 0 or negative_cache_ttl < 0:
            raise ConfigurationError("negative_cache_ttl", provider=name)
        self.name = name
        self.token_prefixes = as_tuple(token_prefixes)
        if any(not prefix for prefix in self.token_prefixes):
            raise ConfigurationError("empty_token_prefix", provider=name)
        self.cache_ttl = cache_ttl
        self.negative_cache_ttl = negative_cache_ttl


class _ApiSource(NoJWT):
    """Shared runtime of the API verifiers: routing attributes, HTTP, cache horizon."""

    max_token_bytes = 4096
    cache_marker: object = None

    def __init__(
        self, provider: _ApiProvider, client: ClientSource, clock: Clock, *, timeout: float
    ) -> None:
        self.name = provider.name
        self.opaque_prefixes = provider.token_prefixes
        self.accepts_unprefixed = provider.accept_unprefixed
        self.negative_cache_ttl = provider.negative_cache_ttl
        self._cache_ttl = provider.cache_ttl
        self._client = client
        self._clock = clock
        self._timeout = timeout

    async def warm_up(self) -> None:
        """Nothing to load ahead of time."""

    async def _call(self, method: str, url: str, **kwargs: Any) -> RawResponse:
        return await request(
            self._client,
            method,
            url,
            timeout=self._timeout,
            max_bytes=MAX_API_RESPONSE,
            provider=self.name,
            **kwargs,
        )

    def _verified(self, principal: Principal, expires_at: float | None) -> Verified:
        now = self._clock()
        if expires_at is not None and now >= expires_at:
            raise InvalidToken("expired", provider=self.name)
        horizon = now + self._cache_ttl
        return Verified(principal, min(horizon, expires_at) if expires_at else horizon)

    def _check_size(self, token: str) -> None:
        if len(token) > self.max_token_bytes:
            raise InvalidToken("token_too_large", provider=self.name)


# -- GitHub -------------------------------------------------------------------------------


class GitHubProvider(_ApiProvider):
    """GitHub OAuth-app, GitHub-app and personal access tokens, checked with GitHub's API.

    With ``client_id`` and ``client_secret`` (your OAuth app), tokens are checked
    with "Check a token" (``POST /applications/{client_id}/token``): only tokens
    issued to *your* app pass. Without them, ``GET /user`` accepts any valid
    token of any app: use that only for personal access tokens you trust.

    Principal: ``subject`` is the numeric user id (stable; logins can change),
    ``claims`` the user object (``login``, ``id``, ``email``...), ``scopes`` the
    token's OAuth scopes (classic tokens; fine-grained tokens have none).

    Args:
        name: Provider name in the :class:`Principal`.
        client_id: Your OAuth app's client id (enables the app check).
        client_secret: Its secret (sent in HTTP Basic, never in a URL).
        api_base: API root (GitHub Enterprise: ``https://HOST/api/v3``).
        token_prefixes: Tokens routed here (GitHub's documented prefixes).
        cache_ttl: Longest reuse of a positive answer, in seconds.
        negative_cache_ttl: How long a refused token is remembered.
    """

    def __init__(
        self,
        name: str = "github",
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        api_base: str = "https://api.github.com",
        token_prefixes: Sequence[str] = GITHUB_TOKEN_PREFIXES,
        cache_ttl: float = 60.0,
        negative_cache_ttl: float = 5.0,
    ) -> None:
        if (client_id is None) != (client_secret is None):
            raise ConfigurationError("github_app_check_needs_id_and_secret", provider=name)
        self._set_common(name, token_prefixes, cache_ttl, negative_cache_ttl)
        self.client_id = client_id
        self._client_secret = client_secret
        self.api_base = api_base.rstrip("/")

    def __repr__(self) -> str:
        return f"GitHubProvider({self.name!r}, client_id={self.client_id!r})"

    def bind(self, client: ClientSource, clock: Clock, *, timeout: float) -> _GitHubSource:
        """Create the runtime for one app."""
        return _GitHubSource(self, client, clock, timeout=timeout)


_GITHUB_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class _GitHubSource(_ApiSource):
    def __init__(
        self, provider: GitHubProvider, client: ClientSource, clock: Clock, *, timeout: float
    ) -> None:
        super().__init__(provider, client, clock, timeout=timeout)
        self._provider = provider

    async def verify_opaque(self, token: str) -> Verified:
        self._check_size(token)
        provider = self._provider
        if provider.client_id is not None and provider._client_secret is not None:
            response = await self._call(
                "POST",
                f"{provider.api_base}/applications/{provider.client_id}/token",
                json_body={"access_token": token},
                headers=_GITHUB_HEADERS,
                auth=(provider.client_id, provider._client_secret),
            )
            # 404/422: not a valid token of this app. 401: our app credentials are wrong.
            if response.status in (404, 422):
                raise InvalidToken("rejected_by_provider", provider=self.name)
            if response.status != 200:
                raise _unavailable(response, self.name)
            body = response.json_object(provider=self.name)
            user = body.get("user")
            scopes = body.get("scopes")
            expires_at = _iso_time(body.get("expires_at"))
            app = body.get("app")
            client_id = app.get("client_id") if isinstance(app, dict) else None
            if client_id != provider.client_id:
                raise InvalidToken("client_mismatch", provider=self.name)
        else:
            response = await self._call(
                "GET",
                f"{provider.api_base}/user",
                headers={**_GITHUB_HEADERS, "Authorization": f"Bearer {token}"},
            )
            if response.status == 401 or (response.status == 403 and not _rate_limited(response)):
                # 403 without rate limiting: e.g. an installation token (ghs_),
                # which does not act for a user.
                raise InvalidToken("rejected_by_provider", provider=self.name)
            if response.status != 200:
                raise _unavailable(response, self.name)
            user = response.json_object(provider=self.name)
            header = response.headers.get("x-oauth-scopes")
            # RFC 9110 §5.6.1 list: "," separates, optional SP / HTAB around elements.
            scopes = [s.strip(" \t") for s in header.split(",")] if header else []
            expires_at = _github_expiry(
                response.headers.get("github-authentication-token-expiration")
            )
            client_id = None
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            raise ProviderUnavailable("unexpected_response", provider=self.name)
        principal = _principal(
            provider=self.name,
            issuer="https://github.com",
            subject=str(user["id"]),
            client_id=client_id,
            scopes=tuple(scope_tokens(scopes)),
            expires_at=expires_at,
            claims=user,
        )
        return self._verified(principal, expires_at)


def _iso_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return numeric_date(moment.timestamp())
    except (ValueError, OverflowError):  # e.g. year 10000 once in UTC
        return None


def _github_expiry(value: str | None) -> float | None:
    # "2023-02-23 16:06:26 UTC" on tokens that expire (fine-grained PATs, ...)
    if not value:
        return None
    return _iso_time(value.replace(" UTC", "+00:00").replace(" ", "T", 1))


# -- Google -------------------------------------------------------------------------------


class GoogleProvider(OIDCProvider):
    """Google sign-in: ID tokens (JWTs) and Google access tokens (``ya29.``).

    ID tokens are verified locally against Google's keys; both of Google's
    issuer spellings are accepted (``https://accounts.google.com`` and
    ``accounts.google.com``) and ``aud`` must be one of your OAuth client ids.
    Access tokens are opaque: they are checked at Google's token-info endpoint
    (POST, the token in the Authorization header), and their ``aud`` must be one
    of your client ids, so tokens minted for another app are refused.

    Args:
        client_ids: Your Google OAuth client ids.
        name: Provider name in the :class:`Principal`.
        hosted_domain: If set, the ``hd`` claim must equal it (Workspace domain).
        tokeninfo_url: The token-info endpoint (tests point it at a fake).
        jwks_uri: Google's JWKS (tests point it at a fake).
        cache_ttl: Longest reuse of an access-token answer, in seconds.
    """

    def __init__(
        self,
        client_ids: str | Sequence[str],
        *,
        name: str = "google",
        hosted_domain: str | None = None,
        tokeninfo_url: str = GOOGLE_TOKENINFO,
        jwks_uri: str = GOOGLE_JWKS_URI,
        cache_ttl: float = 60.0,
        negative_cache_ttl: float = 5.0,
        leeway: float = 30.0,
    ) -> None:
        ids = (client_ids,) if isinstance(client_ids, str) else tuple(client_ids)
        token_type: TokenType = "id_token"
        super().__init__(
            name,
            issuer=GOOGLE_ISSUER,
            audience=ids,
            jwks_uri=jwks_uri,
            algorithms=("RS256",),
            token_type=token_type,
            leeway=leeway,
            required_claims=("sub", "iat"),
            claim_values={"hd": hosted_domain} if hosted_domain else None,
            issuer_aliases=(GOOGLE_ISSUER_ALIAS,),
        )
        if cache_ttl < 0 or negative_cache_ttl < 0:
            raise ConfigurationError("negative_cache_ttl", provider=name)
        self.client_ids = frozenset(ids)
        self.hosted_domain = hosted_domain
        self.tokeninfo_url = tokeninfo_url
        self.cache_ttl = cache_ttl
        self.negative_cache_ttl = negative_cache_ttl

    def __repr__(self) -> str:
        return f"GoogleProvider(name={self.name!r})"

    def bind(
        self, client: ClientSource, clock: Clock, *, timeout: float = DEFAULT_TIMEOUT
    ) -> _GoogleSource:
        """Create the runtime for one app."""
        return _GoogleSource(self, client, clock, timeout=timeout)


class _GoogleSource(BoundProvider):
    def __init__(
        self, provider: GoogleProvider, client: ClientSource, clock: Clock, *, timeout: float
    ) -> None:
        super().__init__(provider, client, clock, timeout=timeout)
        self.google = provider
        self.opaque_prefixes = (GOOGLE_ACCESS_TOKEN_PREFIX,)
        self.accepts_unprefixed = False

    @property
    def negative_cache_ttl(self) -> float:
        return self.google.negative_cache_ttl

    async def verify_opaque(self, token: str) -> Verified:
        name = self.name
        if len(token) > 4096:
            raise InvalidToken("token_too_large", provider=name)
        # POST with the token in the Authorization header, as Google's client
        # libraries do: never in the URL.
        response = await request(
            self._client,
            "POST",
            self.google.tokeninfo_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=self._timeout,
            max_bytes=MAX_API_RESPONSE,
            provider=name,
        )
        if response.status == 400:  # {"error": "invalid_token", ...}: bad or expired
            raise InvalidToken("rejected_by_provider", provider=name)
        if response.status != 200:
            raise _unavailable(response, name)
        info = response.json_object(provider=name)
        # `aud` must be ours: `azp` ours but `aud` another app's is a token our
        # client obtained for someone else's API (replayable against us).
        aud = info.get("aud")
        if not isinstance(aud, str) or aud not in self.google.client_ids:
            raise InvalidToken("audience_mismatch", provider=name, claim="aud")
        hosted = self.google.hosted_domain
        if hosted is not None and info.get("hd") != hosted:
            raise InvalidToken("unexpected_claim_value", provider=name, claim="hd")
        now = self._clock()
        exp = _numeric(info.get("exp"))
        if exp is None:
            expires_in = _numeric(info.get("expires_in"))
            exp = now + expires_in if expires_in is not None else None
        if exp is None or now >= exp:
            raise InvalidToken("expired", provider=name, claim="exp")
        sub = info.get("sub")
        azp = info.get("azp")
        principal = _principal(
            provider=name,
            issuer=GOOGLE_ISSUER,
            subject=sub if isinstance(sub, str) else None,
            client_id=azp if isinstance(azp, str) else None,
            scopes=tuple(scope_tokens(info.get("scope"))),
            expires_at=exp,
            claims=info,
        )
        return Verified(principal, min(now + self.google.cache_ttl, exp))


# -- Facebook -----------------------------------------------------------------------------


class FacebookProvider(_ApiProvider):
    """Facebook user access tokens, checked with the Graph API's ``debug_token``.

    The token must be valid, issued to *your* app (``app_id``), of type USER
    and unexpired. The check is a Graph API batch request, so the app access
    token (``app_id|app_secret``) and the user's token travel in a POST body,
    never in a URL.

    Args:
        app_id: Your Facebook app id.
        app_secret: Your app secret.
        name: Provider name in the :class:`Principal`.
        graph_base: Graph API root.
        api_version: Graph API version (e.g. ``"v19.0"``).
        token_prefixes: Tokens routed here (user tokens start with ``EAA``).
        cache_ttl: Longest reuse of a positive answer, in seconds.
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
    ) -> None:
        if not app_id or not app_secret:
            raise ConfigurationError("facebook_needs_app_id_and_secret", provider=name)
        self._set_common(name, token_prefixes, cache_ttl, negative_cache_ttl)
        self.app_id = app_id
        self._app_secret = app_secret
        self.graph_base = graph_base.rstrip("/")
        self.api_version = api_version

    def __repr__(self) -> str:
        return f"FacebookProvider({self.name!r}, app_id={self.app_id!r})"

    def bind(self, client: ClientSource, clock: Clock, *, timeout: float) -> _FacebookSource:
        """Create the runtime for one app."""
        return _FacebookSource(self, client, clock, timeout=timeout)


class _FacebookSource(_ApiSource):
    def __init__(
        self, provider: FacebookProvider, client: ClientSource, clock: Clock, *, timeout: float
    ) -> None:
        super().__init__(provider, client, clock, timeout=timeout)
        self._provider = provider

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
            raise _unavailable(response, self.name)
        results = response.json_array(provider=self.name)
        first = results[0] if len(results) == 1 else None
        body = _batch_body(first)
        if body is None:
            raise ProviderUnavailable("unexpected_response", provider=self.name)
        code, payload = body
        if code != 200 or "error" in payload:
            # e.g. 190 on our app token: our credentials are wrong. Fail closed (503).
            raise ProviderUnavailable(_facebook_reason(payload.get("error")), provider=self.name)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise ProviderUnavailable("unexpected_response", provider=self.name)
        if data.get("is_valid") is not True:
            raise InvalidToken("rejected_by_provider", provider=self.name)
        if str(data.get("app_id")) != provider.app_id:
            raise InvalidToken("client_mismatch", provider=self.name)
        if data.get("type", "USER") != "USER":
            raise InvalidToken("wrong_token_type", provider=self.name)
        expires = _numeric(data.get("expires_at"))
        expires_at = expires if expires else None  # 0 means "does not expire"
        user_id = data.get("user_id")
        principal = _principal(
            provider=self.name,
            issuer="https://www.facebook.com",
            subject=str(user_id) if isinstance(user_id, str | int) else None,
            client_id=provider.app_id,
            scopes=tuple(scope_tokens(data.get("scopes"))),
            expires_at=expires_at,
            claims=data,
        )
        return self._verified(principal, expires_at)


def _batch_body(result: Any) -> tuple[int, dict[str, Any]] | None:
    """``(code, body)`` of one Graph API batch result, or ``None`` if malformed."""
    if not isinstance(result, dict):
        return None
    code, text = result.get("code"), result.get("body")
    if not isinstance(code, int) or not isinstance(text, str):
        return None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return (code, body) if isinstance(body, dict) else None


def _facebook_reason(error: Any) -> str:
    if isinstance(error, dict):
        code = error.get("code")
        if isinstance(code, int):
            return f"graph_error:{code}"
    return "graph_error"


# -- userinfo -----------------------------------------------------------------------------


class UserinfoProvider(_ApiProvider):
    """Any OpenID provider's access tokens, checked by calling its userinfo endpoint.

    The last resort for opaque tokens of a provider without introspection. Note
    what it cannot check: userinfo answers for tokens issued to *any* client of
    that provider, and reports no scopes or expiry. Prefer JWT validation or
    introspection when the provider offers them.

    Args:
        name: Provider name in the :class:`Principal`.
        issuer: The provider's issuer (its userinfo endpoint is discovered).
        userinfo_endpoint: Use this endpoint instead of discovery.
        token_prefixes: Prefixes of tokens routed here.
        accept_unprefixed: Whether opaque tokens without a known prefix may be
            sent here (only the first such provider gets them); by default only
            when no ``token_prefixes`` are declared.
        cache_ttl: Longest reuse of a positive answer, in seconds.
    """

    def __init__(
        self,
        name: str,
        issuer: str,
        *,
        userinfo_endpoint: str | None = None,
        token_prefixes: Sequence[str] = (),
        accept_unprefixed: bool | None = None,
        cache_ttl: float = 60.0,
        negative_cache_ttl: float = 5.0,
    ) -> None:
        check_issuer_url(issuer, provider=name)
        self._set_common(name, token_prefixes, cache_ttl, negative_cache_ttl)
        self.issuer = issuer
        self.userinfo_endpoint = userinfo_endpoint
        self.accept_unprefixed = (
            not self.token_prefixes if accept_unprefixed is None else accept_unprefixed
        )

    def __repr__(self) -> str:
        return f"UserinfoProvider({self.name!r}, issuer={self.issuer!r})"

    def bind(self, client: ClientSource, clock: Clock, *, timeout: float) -> _UserinfoSource:
        """Create the runtime for one app."""
        return _UserinfoSource(self, client, clock, timeout=timeout)


class _UserinfoSource(_ApiSource):
    def __init__(
        self, provider: UserinfoProvider, client: ClientSource, clock: Clock, *, timeout: float
    ) -> None:
        super().__init__(provider, client, clock, timeout=timeout)
        self._provider = provider
        self._metadata = MetadataCache(
            client, provider.issuer, clock=clock, label=provider.name, timeout=timeout
        )

    async def warm_up(self) -> None:
        """Discover the userinfo endpoint ahead of the first request."""
        await self._endpoint()

    async def _endpoint(self) -> str:
        provider = self._provider
        if provider.userinfo_endpoint:
            return provider.userinfo_endpoint
        endpoint = (await self._metadata.get()).userinfo_endpoint
        if endpoint is None:
            raise ProviderUnavailable("metadata_without_userinfo_endpoint", provider=self.name)
        return endpoint

    async def verify_opaque(self, token: str) -> Verified:
        self._check_size(token)
        response = await self._call(
            "GET", await self._endpoint(), headers={"Authorization": f"Bearer {token}"}
        )
        if response.status == 401 or (response.status == 403 and not _rate_limited(response)):
            # 403: e.g. insufficient_scope (a token without `openid`): not for us.
            raise InvalidToken("rejected_by_provider", provider=self.name)
        if response.status != 200:
            raise _unavailable(response, self.name)
        claims = response.json_object(provider=self.name)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise ProviderUnavailable("userinfo_without_sub", provider=self.name)
        principal = _principal(
            provider=self.name,
            issuer=self._provider.issuer,
            subject=sub,
            client_id=None,
            scopes=(),
            expires_at=None,
            claims=claims,
        )
        return self._verified(principal, None)
