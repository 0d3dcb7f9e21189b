"""GitHub: everything GitHub-specific, for every role.

GitHub has no OpenID Connect: its tokens are opaque and only GitHub's API can
check them ("Check a token" for your OAuth app, or ``GET /user``); logging in
is OAuth 2.0 with PKCE, the person read from ``GET /user`` and
``GET /user/emails``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._clock import Clock
from .._http import ClientSource, RawResponse
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
    github_token_plausible,
)
from ..resource._upstream import (
    github_expiry,
    iso_time,
    numeric_id,
    rate_limited,
)
from ..resource.base import Verified, scope_tokens
from ._login import get_json, need_login, text, user_object

GITHUB_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")
"""GitHub's documented token prefixes (personal, OAuth, user-to-server, server-to-server,
refresh, fine-grained personal)."""


class GitHubProvider(ApiProviderBase):
    """GitHub: "Log in with GitHub", and GitHub tokens accepted on routes and in token exchange.

    With ``client_id`` and ``client_secret`` (your OAuth app), tokens are checked
    with "Check a token" (``POST /applications/{client_id}/token``): only tokens
    issued to *your* app pass. Without them, ``GET /user`` accepts any valid
    token of any app: use that only for personal access tokens you trust.

    Principal: ``subject`` is the numeric user id (stable; logins can change),
    ``issuer`` is ``web_base``, ``claims`` the user object (``login``, ``id``,
    ``email``...), ``scopes`` the token's OAuth scopes (classic tokens;
    fine-grained tokens have none).

    Login (enabled by ``client_id`` and ``client_secret``): the browser goes to
    ``{web_base}/login/oauth/authorize`` with PKCE S256; the code is redeemed
    at ``{web_base}/login/oauth/access_token`` (client secret in the form,
    JSON asked for with ``Accept``; GitHub answers a bad code with a 200 and an
    ``error``, which is refused). GitHub has no ID token and no nonce. The
    person is ``GET {api_base}/user`` (the numeric ``id`` is the subject, in
    the namespace ``web_base``) and ``GET {api_base}/user/emails``: only the
    address GitHub marks both ``primary`` and ``verified`` counts as verified.
    ``email`` of ``/user`` is the public address, often ``null``, never
    trusted as verified.

    Token exchange: a GitHub token becomes the same identity as a browser login,
    but only when the app check is configured (so the token is known to be
    your app's); without it, no GitHub token is exchanged.

    Args:
        name: Provider name in the [Principal][authbridge.Principal].
        client_id: Your OAuth app's client id (enables the app check and login).
        client_secret: Its secret (sent in HTTP Basic or the token request's
            form, never in a URL).
        web_base: GitHub's web root (GitHub Enterprise Server: ``https://HOST``);
            the login endpoints live under it, and it is the namespace of the
            identities (``ExternalIdentity.issuer``).
        api_base: API root (GitHub Enterprise: ``https://HOST/api/v3``).
        login_scopes: Scopes asked for at login (``user:email`` reads the
            verified addresses).
        display_name: The name on the login chooser.
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
        web_base: str = "https://github.com",
        api_base: str = "https://api.github.com",
        login_scopes: Sequence[str] = ("read:user", "user:email"),
        display_name: str = "GitHub",
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
        self.web_base = web_base.rstrip("/")
        self.api_base = api_base.rstrip("/")
        self.login_scopes = tuple(login_scopes)
        self.display_name = display_name

    @property
    def login_enabled(self) -> bool:
        """Whether login is configured (``client_id`` and ``client_secret``)."""
        return self.client_id is not None and self._client_secret is not None

    def bind_login(self, client: ClientSource, clock: Clock, *, timeout: float) -> GitHubLogin:
        """Create the login runtime for one app.

        Raises:
            ConfigurationError: ``login_not_configured`` without ``client_id`` and secret.
        """
        need_login(self.login_enabled, self.name)
        return GitHubLogin(self, client=client, clock=clock, timeout=timeout)

    def exchange_identity(self, principal: Principal) -> ExternalIdentity | None:
        """The identity behind a GitHub token this provider's verifier accepted.

        ``None`` unless the app check is configured and the token is your
        app's (its ``client_id``): a token of another app is not exchanged.
        """
        if self.client_id is None or principal.provider != self.name:
            return None
        if principal.client_id != self.client_id or principal.subject is None:
            return None
        return github_identity(self, principal.subject, principal.claims, email=None)

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
            issuer=provider.web_base,
            subject=user_id,
            client_id=client_id,
            scopes=tuple(scope_tokens(scopes)),
            expires_at=expires_at,
            claims=user,
        )
        return self._verified(principal, expires_at)


class GitHubLogin(ProviderLogin):
    """ "Log in with GitHub" inside one app (see [GitHubProvider][authbridge.GitHubProvider])."""

    uses_pkce = True
    uses_nonce = False
    token_endpoint_auth = "client_secret_post"

    def __init__(
        self, provider: GitHubProvider, *, client: ClientSource, clock: Clock, timeout: float
    ) -> None:
        super().__init__(
            client=client, clock=clock, timeout=timeout, client_secret=provider._client_secret
        )
        assert provider.client_id is not None  # noqa: S101 - checked by bind_login
        self.provider = provider
        self.name = provider.name
        self.display_name = provider.display_name
        self.client_id = provider.client_id
        self.scopes = provider.login_scopes
        self._endpoints = LoginEndpoints(
            authorization_endpoint=f"{provider.web_base}/login/oauth/authorize",
            token_endpoint=f"{provider.web_base}/login/oauth/access_token",
        )

    async def endpoints(self) -> LoginEndpoints:
        """GitHub's fixed endpoints under ``web_base``."""
        return self._endpoints

    def authorization_params(self, auth: AuthorizationRequest) -> dict[str, str]:
        """GitHub's names: ``login`` for the login hint; ``prompt`` only ``select_account``."""
        params = super().authorization_params(auth)
        hint = params.pop("login_hint", None)
        if hint is not None:
            params["login"] = hint
        if params.get("prompt") not in (None, "select_account"):
            del params["prompt"]
        return params

    async def identity(self, tokens: TokenSet, *, nonce: str | None) -> ExternalIdentity:
        """The person: ``GET /user`` (id, login, name), ``GET /user/emails`` (the verified primary).

        Raises:
            LoginError: ``no_subject`` (no numeric id), ``token_error`` (GitHub
                refused the token it just issued).
            ProviderUnavailable: the API is down, rate limited or answers garbage.
        """
        api = self.provider.api_base
        response = await self._get(f"{api}/user", tokens.access_token)
        user = user_object(response, provider=self.name, now=self._clock())
        raw_id = user.get("id")
        user_id = numeric_id(raw_id) if isinstance(raw_id, int) else None
        if user_id is None:
            raise LoginError("no_subject", provider=self.name)
        email = await self._primary_email(tokens.access_token)
        return github_identity(self.provider, user_id, user, email=email)

    async def _get(self, url: str, access_token: str) -> RawResponse:
        return await get_json(
            self._client,
            url,
            provider=self.name,
            access_token=access_token,
            timeout=self._timeout,
            headers=_GITHUB_HEADERS,
        )

    async def _primary_email(self, access_token: str) -> tuple[str, bool] | None:
        """The primary address and whether GitHub verified it; ``None`` if unknown.

        Without the ``user:email`` scope GitHub answers 404 (or 403): the
        address is then unknown, not an error.
        """
        response = await self._get(f"{self.provider.api_base}/user/emails", access_token)
        if response.status in (403, 404) and not rate_limited(response):
            return None
        if response.status != 200:
            user_object(response, provider=self.name, now=self._clock())  # raises
        entries = response.json_array(provider=self.name)
        for entry in entries:
            if isinstance(entry, dict) and entry.get("primary") is True:
                address = text(entry.get("email"))
                if address is None:
                    return None
                return address, entry.get("verified") is True
        return None


def github_identity(
    provider: GitHubProvider,
    user_id: str,
    user: Any,
    *,
    email: tuple[str, bool] | None,
) -> ExternalIdentity:
    """A GitHub user as an identity: numeric id in the ``web_base`` namespace.

    ``email`` is the primary address from ``/user/emails`` and its verified
    flag; without it, the public ``email`` of the user object is kept,
    unverified.
    """
    claims = dict(user) if isinstance(user, dict) else {}
    address, verified = email if email is not None else (text(claims.get("email")), False)
    return ExternalIdentity(
        provider=provider.name,
        issuer=provider.web_base,
        subject=user_id,
        email=address,
        email_verified=verified and address is not None,
        name=text(claims.get("name")),
        username=text(claims.get("login")),
        claims=claims,
    )
