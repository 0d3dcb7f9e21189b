"""Google: sign-in, ID tokens and ``ya29.`` access tokens, for every role."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._clock import Clock
from .._http import ClientSource, request
from ..client import AuthorizationRequest, ExternalIdentity, LoginEndpoints
from ..client._oidc import OIDCLogin
from ..errors import ConfigurationError, InvalidToken, LoginError, ProviderUnavailable
from ..jose._jwt import TokenType
from ..resource import Principal
from ..resource._api import MAX_API_RESPONSE, api_principal
from ..resource._formats import (
    GOOGLE_ACCESS_TOKEN_MAX_BYTES,
    google_access_token_plausible,
)
from ..resource._limits import check_limit_settings
from ..resource._upstream import (
    numeric,
    subject,
    unavailable,
)
from ..resource.base import Verified, scope_tokens
from ..resource.provider import BoundProvider
from ._login import claims_identity, verified_flag
from .oidc import OIDCProvider

GOOGLE_ISSUER = "https://accounts.google.com"
GOOGLE_ISSUER_ALIAS = "accounts.google.com"
GOOGLE_JWKS_URI = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_TOKENINFO = "https://oauth2.googleapis.com/tokeninfo"
GOOGLE_ACCESS_TOKEN_PREFIX = "ya29."
GOOGLE_AUTHORIZATION_ENDPOINT = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_ENDPOINT = "https://oauth2.googleapis.com/token"
GOOGLE_USERINFO_ENDPOINT = "https://openidconnect.googleapis.com/v1/userinfo"


class GoogleLogin(OIDCLogin):
    """ "Sign in with Google" inside one app (see [GoogleProvider][authbridge.GoogleProvider])."""

    def __init__(self, *, hosted_domain: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.hosted_domain = hosted_domain

    def authorization_params(self, auth: AuthorizationRequest) -> dict[str, str]:
        """Adds ``hd`` (Google's account chooser hint) with a hosted domain."""
        params = super().authorization_params(auth)
        if self.hosted_domain is not None:
            params["hd"] = self.hosted_domain
        return params

    def identity_from(
        self, claims: Mapping[str, Any], userinfo: Mapping[str, Any] | None, id_token: str
    ) -> ExternalIdentity:
        """Keyed ``https://accounts.google.com`` + ``sub``; ``hd`` checked; the ID token's email.

        Raises:
            LoginError: ``no_subject``, ``id_token_invalid:unexpected_claim_value``
                (another Workspace domain than ``hosted_domain``).
        """
        if self.hosted_domain is not None and claims.get("hd") != self.hosted_domain:
            raise LoginError("id_token_invalid:unexpected_claim_value", provider=self.name)
        identity = claims_identity(
            self.name,
            GOOGLE_ISSUER,
            {**(userinfo or {}), **claims},
            email_verified=verified_flag(claims.get("email_verified"), strings=True),
            id_token=id_token,
        )
        if identity is None:
            raise LoginError("no_subject", provider=self.name)
        return identity


class GoogleProvider(OIDCProvider):
    """Google: "Sign in with Google", ID tokens (JWTs) and Google access tokens (``ya29.``).

    ID tokens are verified locally against Google's keys; both of Google's
    issuer spellings are accepted (``https://accounts.google.com`` and
    ``accounts.google.com``) and ``aud`` must be one of your OAuth client ids.
    Access tokens are opaque: they are checked at Google's token-info endpoint
    (POST, the token in the Authorization header), and their ``aud`` must be one
    of your client ids, so tokens minted for another app are refused.

    Login (enabled by ``client_secret``): OpenID Connect with PKCE and a nonce
    at Google's fixed endpoints (no discovery): ``authorization_endpoint``,
    ``token_endpoint`` (secret in the form), ``userinfo_endpoint``, keys at
    ``jwks_uri``. The login client is ``client_id``, or the first of
    ``client_ids``. Identities are keyed ``https://accounts.google.com`` +
    ``sub`` whichever issuer spelling the ID token used; ``email_verified``
    comes from the ID token. With ``hosted_domain``, the login asks Google
    for that Workspace domain (``hd``) and refuses an ID token of another.
    Google has no RP-initiated logout.

    Token exchange: a Google ID token or access token whose ``aud`` is one of
    your client ids becomes the same identity as a browser login.

    Args:
        client_ids: Your Google OAuth client ids.
        name: Provider name in the [Principal][authbridge.Principal].
        hosted_domain: If set, the ``hd`` claim must equal it (Workspace domain).
        client_id: The login client, if not the first of ``client_ids`` (it
            is accepted as an audience too).
        client_secret: The login client's secret: enables login.
        login_scopes: Scopes asked for at login.
        display_name: The name on the login chooser.
        authorization_endpoint: Google's authorization endpoint (tests point it at a fake).
        token_endpoint: Google's token endpoint.
        userinfo_endpoint: Google's userinfo endpoint.
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

    login_class = GoogleLogin

    def __init__(
        self,
        client_ids: str | Sequence[str],
        *,
        name: str = "google",
        hosted_domain: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        login_scopes: Sequence[str] = ("openid", "email", "profile"),
        display_name: str = "Google",
        authorization_endpoint: str = "https://accounts.google.com/o/oauth2/v2/auth",
        token_endpoint: str = "https://oauth2.googleapis.com/token",
        userinfo_endpoint: str = "https://openidconnect.googleapis.com/v1/userinfo",
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
        if not ids:
            raise ConfigurationError("audience_or_client_ids_required", provider=name)
        login_id = client_id
        if login_id is None and client_secret is not None:
            login_id = ids[0]
        token_type: TokenType = "id_token"
        super().__init__(
            name,
            issuer=GOOGLE_ISSUER,
            audience=tuple(dict.fromkeys((*ids, *((login_id,) if login_id else ())))),
            jwks_uri=jwks_uri,
            algorithms=("RS256",),
            token_type=token_type,
            leeway=leeway,
            required_claims=("sub", "iat"),
            claim_values={"hd": hosted_domain} if hosted_domain else None,
            issuer_aliases=(GOOGLE_ISSUER_ALIAS,),
            client_id=login_id,
            client_secret=client_secret,
            login_scopes=login_scopes,
            token_endpoint_auth="client_secret_post",
            display_name=display_name,
        )
        if cache_ttl < 0 or negative_cache_ttl < 0:
            raise ConfigurationError("negative_cache_ttl", provider=name)
        self.max_concurrent_checks, self.max_checks_per_second = check_limit_settings(
            max_concurrent_checks, max_checks_per_second, provider=name
        )
        self.check_token_format = check_token_format
        self.client_ids = frozenset((*ids, *((login_id,) if login_id else ())))
        self.login_endpoints = LoginEndpoints(
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            issuer=GOOGLE_ISSUER,
            userinfo_endpoint=userinfo_endpoint,
        )
        self.hosted_domain = hosted_domain
        self.tokeninfo_url = tokeninfo_url
        self.cache_ttl = cache_ttl
        self.negative_cache_ttl = negative_cache_ttl

    def __repr__(self) -> str:
        return f"GoogleProvider(name={self.name!r})"

    def bind(self, client: ClientSource, clock: Clock, *, timeout: float = 5.0) -> _GoogleSource:
        """Create the runtime for one app."""
        return _GoogleSource(self, client, clock, timeout=timeout)

    @property
    def exchange_client_ids(self) -> frozenset[str]:
        """Your client ids: ``client_ids`` and the login client."""
        return self.client_ids

    def login_options(self) -> dict[str, Any]:
        """Google's fixed endpoints and keys: no discovery."""
        return {
            **super().login_options(),
            "endpoints": self.login_endpoints,
            "jwks_uri": self.jwks_uri,
            "algorithms": ("RS256",),
            "hosted_domain": self.hosted_domain,
        }

    def identity_from_token(self, principal: Principal) -> ExternalIdentity | None:
        """Token-info answers say ``email_verified`` as the string ``"true"``."""
        claims = principal.claims
        return claims_identity(
            self.name,
            GOOGLE_ISSUER,
            claims,
            email_verified=verified_flag(claims.get("email_verified"), strings=True),
        )


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
        principal = api_principal(
            provider=name,
            issuer=GOOGLE_ISSUER,
            subject=sub,
            client_id=azp,
            scopes=tuple(scope_tokens(info.get("scope"))),
            expires_at=exp,
            claims=info,
        )
        return Verified(principal, min(now + self.google.cache_ttl, exp))
