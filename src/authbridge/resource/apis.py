"""Verifiers for tokens that only their provider's API can check.

GitHub and Facebook access tokens, Google access tokens and any provider's
tokens checked at its OpenID Connect userinfo endpoint carry nothing a
resource server can verify locally: the provider must be asked. Every one of
these verifiers:

- receives only tokens routed to it (by its documented token prefix, or as the
  one provider accepting unprefixed opaque tokens);
- sends the token in a header or a POST body, never in a URL;
- maps the provider's answers: token refused → `InvalidToken` (401);
  rate limited, 5xx, timeout or garbage → `ProviderUnavailable` (503);
- range-checks every value it uses from an answer (dates, ``expires_in``, ids):
  an expiry in the past, however far, is ``expired``; a value out of any usable
  range is ignored or refused, never a crash;
- refuses locally, before any call, a token not in its provider's documented
  format (``check_token_format``), and has at most ``max_concurrent_checks``
  calls in flight (a check beyond that is refused at once with a 503);
- returns the same `Principal`, cached within the token's lifetime and
  at most ``cache_ttl`` seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import urlencode

from .._clock import Clock
from .._http import ClientSource, request
from ..errors import ConfigurationError, InvalidToken, ProviderUnavailable
from ..jose._jwt import TokenType
from ..providers.discovery import MetadataCache, check_issuer_url
from ._api import MAX_API_RESPONSE, _ApiProvider, _ApiSource, _principal
from ._formats import (
    GOOGLE_ACCESS_TOKEN_MAX_BYTES,
    facebook_token_plausible,
    github_token_plausible,
    google_access_token_plausible,
)
from ._limits import check_limit_settings
from ._upstream import (
    batch_body,
    expiry_time,
    facebook_reason,
    github_expiry,
    iso_time,
    numeric,
    numeric_id,
    rate_limited,
    subject,
    unavailable,
)
from .base import Verified, scope_tokens
from .provider import BoundProvider, OIDCProvider

GITHUB_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")
"""GitHub's documented token prefixes (personal, OAuth, user-to-server, server-to-server,
refresh, fine-grained personal)."""

GOOGLE_ISSUER = "https://accounts.google.com"
GOOGLE_ISSUER_ALIAS = "accounts.google.com"
GOOGLE_JWKS_URI = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_TOKENINFO = "https://oauth2.googleapis.com/tokeninfo"
GOOGLE_ACCESS_TOKEN_PREFIX = "ya29."


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
        name: Provider name in the [Principal][authbridge.Principal].
        client_id: Your OAuth app's client id (enables the app check).
        client_secret: Its secret (sent in HTTP Basic, never in a URL).
        api_base: API root (GitHub Enterprise: ``https://HOST/api/v3``).
        token_prefixes: Tokens routed here (GitHub's documented prefixes).
        cache_ttl: Longest reuse of a positive answer, in seconds.
        negative_cache_ttl: How long a refused token is remembered.
        max_concurrent_checks: Most calls to GitHub in flight at once.
        max_checks_per_second: Most calls to GitHub started per second. A token
            needing a call beyond either bound is refused at once with a 503
            (see [ResourceServer][authbridge.ResourceServer]).
        check_token_format: Refuse without asking GitHub a token of GitHub's
            checksummed format (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``
            and 36 letters or digits) whose CRC32 checksum is wrong. Tokens of
            other shapes (``github_pat_``, the longer ``ghs_`` format) go to
            GitHub. Turn off only for a server that issues other tokens under
            these prefixes.
    """

    def __init__(
        self,
        name: str = "github",
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        api_base: str = "https://api.github.com",
        token_prefixes: Sequence[str] = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        cache_ttl: float = 60.0,
        negative_cache_ttl: float = 5.0,
        max_concurrent_checks: int = 16,
        max_checks_per_second: float = 100.0,
        check_token_format: bool = True,
    ) -> None:
        if (client_id is None) != (client_secret is None):
            raise ConfigurationError("github_app_check_needs_id_and_secret", provider=name)
        limits = (max_concurrent_checks, max_checks_per_second)
        self._set_common(name, token_prefixes, cache_ttl, negative_cache_ttl, limits)
        self.check_token_format = check_token_format
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

    def check_format(self, token: str) -> None:
        """Refuse a token of GitHub's checksummed format whose checksum is wrong."""
        if self._check_format and not github_token_plausible(token):
            self._refuse_format("GitHub token format: prefix, 30 characters, CRC32 checksum")

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
                raise self._unavailable(response)
            body = response.json_object(provider=self.name)
            user = body.get("user")
            scopes = body.get("scopes")
            expires_at = iso_time(body.get("expires_at"))
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
            if response.status == 401 or (response.status == 403 and not rate_limited(response)):
                # 403 without rate limiting: e.g. an installation token (ghs_),
                # which does not act for a user.
                raise InvalidToken("rejected_by_provider", provider=self.name)
            if response.status != 200:
                raise self._unavailable(response)
            user = response.json_object(provider=self.name)
            header = response.headers.get("x-oauth-scopes")
            # RFC 9110 §5.6.1 list: "," separates, optional SP / HTAB around elements.
            scopes = [s.strip(" \t") for s in header.split(",")] if header else []
            expires_at = github_expiry(
                response.headers.get("github-authentication-token-expiration")
            )
            client_id = None
        # GitHub ids are JSON integers: a string, a boolean or 2**64 is not an answer.
        raw_id = user.get("id") if isinstance(user, dict) else None
        user_id = numeric_id(raw_id) if isinstance(raw_id, int) else None
        if user_id is None or not isinstance(user, dict):
            raise ProviderUnavailable("unexpected_response", provider=self.name)
        self._check_expiry(expires_at)
        principal = _principal(
            provider=self.name,
            issuer="https://github.com",
            subject=user_id,
            client_id=client_id,
            scopes=tuple(scope_tokens(scopes)),
            expires_at=expires_at,
            claims=user,
        )
        return self._verified(principal, expires_at)


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
        name: Provider name in the [Principal][authbridge.Principal].
        hosted_domain: If set, the ``hd`` claim must equal it (Workspace domain).
        tokeninfo_url: The token-info endpoint (tests point it at a fake).
        jwks_uri: Google's JWKS (tests point it at a fake).
        cache_ttl: Longest reuse of an access-token answer, in seconds.
        negative_cache_ttl: How long a refused access token is remembered.
        leeway: Tolerated clock skew for ID tokens, in seconds.
        max_concurrent_checks: Most token-info calls in flight at once.
        max_checks_per_second: Most token-info calls started per second. A token
            needing a call beyond either bound is refused at once with a 503
            (see [ResourceServer][authbridge.ResourceServer]).
        check_token_format: Refuse without asking Google an access token longer
            than Google's documented 2048 bytes, or with characters other than
            ``[0-9A-Za-z._-]`` after ``ya29.``.
    """

    def __init__(
        self,
        client_ids: str | Sequence[str],
        *,
        name: str = "google",
        hosted_domain: str | None = None,
        tokeninfo_url: str = "https://oauth2.googleapis.com/tokeninfo",
        jwks_uri: str = "https://www.googleapis.com/oauth2/v3/certs",
        cache_ttl: float = 60.0,
        negative_cache_ttl: float = 5.0,
        leeway: float = 30.0,
        max_concurrent_checks: int = 16,
        max_checks_per_second: float = 100.0,
        check_token_format: bool = True,
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
        self.max_concurrent_checks, self.max_checks_per_second = check_limit_settings(
            max_concurrent_checks, max_checks_per_second, provider=name
        )
        self.check_token_format = check_token_format
        self.client_ids = frozenset(ids)
        self.hosted_domain = hosted_domain
        self.tokeninfo_url = tokeninfo_url
        self.cache_ttl = cache_ttl
        self.negative_cache_ttl = negative_cache_ttl

    def __repr__(self) -> str:
        return f"GoogleProvider(name={self.name!r})"

    def bind(self, client: ClientSource, clock: Clock, *, timeout: float = 5.0) -> _GoogleSource:
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

    @property
    def max_concurrent_checks(self) -> int:
        return self.google.max_concurrent_checks

    @property
    def max_checks_per_second(self) -> float:
        return self.google.max_checks_per_second

    def check_format(self, token: str) -> None:
        """Refuse an access token outside Google's documented size and character set."""
        if not self.google.check_token_format:
            return
        if len(token) > GOOGLE_ACCESS_TOKEN_MAX_BYTES:
            raise InvalidToken(
                "token_too_large",
                provider=self.name,
                detail={"max_bytes": GOOGLE_ACCESS_TOKEN_MAX_BYTES},
            )
        if not google_access_token_plausible(token):
            raise InvalidToken(
                "malformed_token",
                provider=self.name,
                detail={"expected": "Google access token: ya29. then [0-9A-Za-z._-]"},
            )

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
            raise unavailable(response, name, self._clock())
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
        exp = numeric(info.get("exp"))
        if exp is None:
            expires_in = numeric(info.get("expires_in"))
            exp = now + expires_in if expires_in is not None else None
        if exp is None or now >= exp:
            raise InvalidToken("expired", provider=name, claim="exp")
        sub, azp = info.get("sub"), info.get("azp")
        if (sub is not None and subject(sub) is None) or (azp is not None and subject(azp) is None):
            raise ProviderUnavailable("unexpected_response", provider=name)
        principal = _principal(
            provider=name,
            issuer=GOOGLE_ISSUER,
            subject=sub,
            client_id=azp,
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


class _FacebookSource(_ApiSource):
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
        principal = _principal(
            provider=self.name,
            issuer="https://www.facebook.com",
            subject=user_id,
            client_id=provider.app_id,
            scopes=tuple(scope_tokens(data.get("scopes"))),
            expires_at=expires_at,
            claims=data,
        )
        return self._verified(principal, expires_at)


# -- userinfo -----------------------------------------------------------------------------


class UserinfoProvider(_ApiProvider):
    """Any OpenID provider's access tokens, checked by calling its userinfo endpoint.

    The last resort for opaque tokens of a provider without introspection. Note
    what it cannot check: userinfo answers for tokens issued to *any* client of
    that provider, and reports no scopes or expiry. Prefer JWT validation or
    introspection when the provider offers them.

    Args:
        name: Provider name in the [Principal][authbridge.Principal].
        issuer: The provider's issuer (its userinfo endpoint is discovered).
        userinfo_endpoint: Use this endpoint instead of discovery.
        token_prefixes: Prefixes of tokens routed here.
        accept_unprefixed: Whether opaque tokens without a known prefix may be
            sent here (only the first such provider gets them); by default only
            when no ``token_prefixes`` are declared.
        cache_ttl: Longest reuse of a positive answer, in seconds.
        negative_cache_ttl: How long a refused token is remembered.
        max_concurrent_checks: Most userinfo calls in flight at once.
        max_checks_per_second: Most userinfo calls started per second. A token
            needing a call beyond either bound is refused at once with a 503
            (see [ResourceServer][authbridge.ResourceServer]). OpenID Connect
            defines no token format: these bounds are what limits a flood.
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
        max_concurrent_checks: int = 16,
        max_checks_per_second: float = 100.0,
    ) -> None:
        check_issuer_url(issuer, provider=name)
        limits = (max_concurrent_checks, max_checks_per_second)
        self._set_common(name, token_prefixes, cache_ttl, negative_cache_ttl, limits)
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
        if response.status == 401 or (response.status == 403 and not rate_limited(response)):
            # 403: e.g. insufficient_scope (a token without `openid`): not for us.
            raise InvalidToken("rejected_by_provider", provider=self.name)
        if response.status != 200:
            raise self._unavailable(response)
        claims = response.json_object(provider=self.name)
        sub = subject(claims.get("sub"))
        if sub is None:
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
