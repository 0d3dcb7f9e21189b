"""GitHub: everything GitHub-specific, for every role.

GitHub has no OpenID Connect: its tokens are opaque and only GitHub's API can
check them ("Check a token" for your OAuth app, or ``GET /user``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._clock import Clock
from .._http import ClientSource
from ..errors import ConfigurationError, InvalidToken, ProviderUnavailable
from ..resource._api import ApiProviderBase, ApiSource, api_principal
from ..resource._formats import (
    github_token_plausible,
)
from ..resource._upstream import (
    github_expiry,
    iso_time,
    numeric_id,
    rate_limited,
)
from ..resource.base import Verified, scope_tokens

GITHUB_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")
"""GitHub's documented token prefixes (personal, OAuth, user-to-server, server-to-server,
refresh, fine-grained personal)."""


class GitHubProvider(ApiProviderBase):
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


class _GitHubSource(ApiSource):
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
        principal = api_principal(
            provider=self.name,
            issuer="https://github.com",
            subject=user_id,
            client_id=client_id,
            scopes=tuple(scope_tokens(scopes)),
            expires_at=expires_at,
            claims=user,
        )
        return self._verified(principal, expires_at)
