"""What the login client needs of a provider: the code flow, and the person it yields.

A provider description (``authbridge.providers``) that can log people in
implements [LoginProvider][authbridge.client.LoginProvider]: ``bind_login``
returns its per-app runtime, a `ProviderLogin`. `ProviderLogin` implements the
generic OAuth 2.0 authorization-code exchange (RFC 6749 §4.1 with RFC 7636 PKCE
S256), bounded and fail-closed like every outbound call of authbridge; a
preset overrides only its quirks (extra authorize parameters, client
authentication, how the person is read from the tokens).

This module knows no HTTP framework and no store: the transaction (state,
nonce, verifier, browser binding) is ``client._flow``'s business, accounts are
``client._accounts``'.
"""

from __future__ import annotations

import base64
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import quote_plus, urlencode, urlsplit

from .._clock import Clock
from .._http import ClientSource, RawResponse, request
from ..errors import LoginError, ProviderUnavailable

TokenEndpointAuth = Literal["client_secret_basic", "client_secret_post", "none"]
"""How the app authenticates at a provider's token endpoint (RFC 7591 names).

``client_secret_basic`` form-urlencodes id and secret inside HTTP Basic
(RFC 6749 §2.3.1); ``none`` sends only ``client_id`` (a public client, PKCE only).
A preset needing something else (Apple's signed client secret) overrides
`ProviderLogin.client_credentials`.
"""

MAX_TOKEN_RESPONSE = 64 * 1024
"""Largest token-endpoint answer read from a provider."""

MAX_PROVIDER_ERROR = 64
"""Longest provider ``error`` code kept (for the escaped failure page and logs)."""


@dataclass(frozen=True, slots=True)
class LoginEndpoints:
    """A provider's endpoints for logging in.

    Attributes:
        authorization_endpoint: Where the browser is sent.
        token_endpoint: Where the code is redeemed (server to server).
        issuer: The issuer identifier the RFC 9207 ``iss`` callback parameter
            must equal (``None``: the provider has none).
        iss_parameter_supported: The provider advertises
            ``authorization_response_iss_parameter_supported``: then a callback
            without ``iss`` or with another value is refused.
        userinfo_endpoint: OpenID Connect userinfo, if any.
        end_session_endpoint: RP-initiated logout (OpenID Connect RP-Initiated
            Logout 1.0), if any.
    """

    authorization_endpoint: str
    token_endpoint: str
    issuer: str | None = None
    iss_parameter_supported: bool = False
    userinfo_endpoint: str | None = None
    end_session_endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class TokenSet:
    """A provider's token response (RFC 6749 §5.1), never logged.

    Attributes:
        access_token: The provider's access token.
        token_type: Usually ``Bearer``.
        id_token: The OpenID Connect ID token, if any (still unverified here).
        refresh_token: The provider's refresh token, if any.
        expires_in: Seconds, if given.
        scope: Granted scopes, if given.
        raw: The whole JSON answer.
    """

    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    id_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: float | None = None
    scope: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """The person a provider vouched for, as the login client read it.

    Attributes:
        provider: The provider's name (``github``, ``google``, ...).
        issuer: The namespace of ``subject``: the OIDC issuer, or the
            provider's own fixed identifier (``https://github.com``). With
            ``subject`` it keys the identity link, uniquely.
        subject: The provider's stable, non-reassignable id of the person
            (OIDC ``sub``; GitHub's numeric id, never the login name).
        email: An email address, if the provider gave one.
        email_verified: Only ``True`` when the provider says this address is
            verified (GitHub: ``/user/emails``; Facebook never).
        name: Display name, if any.
        username: Preferred login name, if any (a hint; never a key).
        claims: The ID-token claims or user object the rest came from.
        id_token: The verified ID token (for RP-initiated logout's
            ``id_token_hint``), if any.
    """

    provider: str
    issuer: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None
    username: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    id_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """The values of one authorization request, made by `authbridge.client` per login.

    Attributes:
        redirect_uri: The callback URL (from configuration, never from ``Host``).
        state: The transaction's random ``state``.
        code_challenge: ``BASE64URL(SHA256(verifier))``, or ``None`` when the
            provider does not support PKCE.
        nonce: The OIDC ``nonce``, or ``None`` when the provider has no ID token.
        scopes: Scopes to ask for.
        prompt: OIDC ``prompt``, if asked (``login``, ``select_account``, ...).
        login_hint: OIDC ``login_hint``, if any.
    """

    redirect_uri: str
    state: str
    code_challenge: str | None
    nonce: str | None
    scopes: tuple[str, ...]
    prompt: str | None = None
    login_hint: str | None = None


def code_challenge(verifier: str) -> str:
    """The RFC 7636 S256 challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class ProviderLogin(ABC):
    """One provider's login runtime inside one app: the authorization-code flow.

    Subclasses set the class attributes and implement `endpoints` and
    `identity`; the rest is the generic flow.

    Attributes:
        name: The provider's name (what the chooser shows and the transaction stores).
        display_name: Shown on the login chooser ("GitHub", "Google", ...).
        client_id: The app's client id at the provider.
        scopes: Scopes asked for by default.
        uses_pkce: Send an S256 ``code_challenge`` (every provider that supports it).
        uses_nonce: Send a ``nonce`` and require it in the ID token (OIDC).
        response_mode: ``"form_post"`` for providers that POST the callback
            (Apple with name/email scopes); ``None`` for the query.
        token_endpoint_auth: How the app authenticates at the token endpoint.
        supports_logout: RP-initiated logout is possible (an
            ``end_session_endpoint`` is known or discoverable).
    """

    name: str
    display_name: str
    client_id: str
    scopes: tuple[str, ...] = ()
    uses_pkce: bool = True
    uses_nonce: bool = False
    response_mode: str | None = None
    token_endpoint_auth: TokenEndpointAuth = "client_secret_basic"
    supports_logout: bool = False
    callback_fields: tuple[str, ...] = ()
    """Callback parameters, besides ``code``, that `from_callback` reads (Apple's ``user``)."""

    def __init__(
        self, *, client: ClientSource, clock: Clock, timeout: float, client_secret: str | None
    ) -> None:
        self._client = client
        self._clock = clock
        self._timeout = timeout
        self._client_secret = client_secret

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, client_id={self.client_id!r})"

    @abstractmethod
    async def endpoints(self) -> LoginEndpoints:
        """The provider's endpoints (static, or discovered and cached).

        Raises:
            ProviderUnavailable: discovery failed.
        """

    def authorization_params(self, auth: AuthorizationRequest) -> dict[str, str]:
        """The query of the authorization request (RFC 6749 §4.1.1, RFC 7636, OIDC).

        Subclasses add their own (``access_type``, ``response_mode``...) by
        extending the returned dictionary.
        """
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": auth.redirect_uri,
            "state": auth.state,
        }
        if auth.scopes:
            params["scope"] = " ".join(auth.scopes)
        if auth.code_challenge is not None:
            params["code_challenge"] = auth.code_challenge
            params["code_challenge_method"] = "S256"
        if auth.nonce is not None:
            params["nonce"] = auth.nonce
        if self.response_mode is not None:
            params["response_mode"] = self.response_mode
        if auth.prompt is not None:
            params["prompt"] = auth.prompt
        if auth.login_hint is not None:
            params["login_hint"] = auth.login_hint
        return params

    async def authorization_url(self, auth: AuthorizationRequest) -> str:
        """Where to send the browser: the authorization endpoint with `authorization_params`.

        Raises:
            ProviderUnavailable: the endpoints could not be discovered.
        """
        endpoint = (await self.endpoints()).authorization_endpoint
        separator = "&" if urlsplit(endpoint).query else "?"
        return f"{endpoint}{separator}{urlencode(self.authorization_params(auth))}"

    async def client_credentials(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        """Form fields and HTTP Basic credentials that authenticate the app at the token endpoint.

        Apple overrides this (its client secret is a JWT signed per request).
        """
        secret = self._client_secret
        if self.token_endpoint_auth == "none" or secret is None:
            return {"client_id": self.client_id}, None
        if self.token_endpoint_auth == "client_secret_post":
            return {"client_id": self.client_id, "client_secret": secret}, None
        # RFC 6749 §2.3.1: both form-urlencoded before Basic encoding.
        return {}, (_form_encode(self.client_id), _form_encode(secret))

    async def redeem(self, code: str, *, code_verifier: str | None, redirect_uri: str) -> TokenSet:
        """Exchange an authorization code at the token endpoint (RFC 6749 §4.1.3).

        Raises:
            LoginError: ``token_error`` (the provider refused the code; its
                ``error`` code in ``detail``), ``token_response_invalid``.
            ProviderUnavailable: the endpoint is down, slow or answers garbage.
        """
        endpoint = (await self.endpoints()).token_endpoint
        data, basic = await self.client_credentials()
        data.update(grant_type="authorization_code", code=code, redirect_uri=redirect_uri)
        if code_verifier is not None:
            data["code_verifier"] = code_verifier
        response = await request(
            self._client,
            "POST",
            endpoint,
            data=data,
            auth=basic,
            headers={"Accept": "application/json"},
            timeout=self._timeout,
            max_bytes=MAX_TOKEN_RESPONSE,
            provider=self.name,
        )
        return self.read_token_response(response)

    def read_token_response(self, response: RawResponse) -> TokenSet:
        """Parse a token-endpoint answer (JSON, or GitHub's form-encoded style is not accepted:
        we ask for JSON).

        Raises:
            LoginError: the provider refused (4xx with an RFC 6749 §5.2 body, or
                GitHub's 200 with ``error``), or the answer lacks a usable token.
            ProviderUnavailable: 5xx, 429, or garbage.
        """
        if response.status >= 500 or response.status == 429:
            raise ProviderUnavailable(f"http_status:{response.status}", provider=self.name)
        body = response.json_object(provider=self.name)
        error = body.get("error")
        if response.status != 200 or error is not None:
            raise LoginError(
                "token_error",
                provider=self.name,
                detail={"error": provider_error_code(error)},
            )
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise LoginError("token_response_invalid", provider=self.name)
        token_type = body.get("token_type", "Bearer")
        id_token = body.get("id_token")
        refresh_token = body.get("refresh_token")
        expires_in = body.get("expires_in")
        scope = body.get("scope")
        return TokenSet(
            access_token=access_token,
            token_type=token_type if isinstance(token_type, str) else "Bearer",
            id_token=id_token if isinstance(id_token, str) and id_token else None,
            refresh_token=refresh_token if isinstance(refresh_token, str) else None,
            expires_in=(
                float(expires_in)
                if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
                else None
            ),
            scope=scope if isinstance(scope, str) else None,
            raw=body,
        )

    @abstractmethod
    async def identity(self, tokens: TokenSet, *, nonce: str | None) -> ExternalIdentity:
        """The person behind ``tokens``: verify the ID token (against ``nonce``), call user APIs.

        Raises:
            LoginError: the ID token or the user answer is not acceptable
                (``id_token_invalid:<reason>``, ``nonce_mismatch``,
                ``userinfo_subject_mismatch``, ``no_subject``...).
            ProviderUnavailable: a user API is down.
        """

    def from_callback(
        self, identity: ExternalIdentity, fields: Mapping[str, str]
    ) -> ExternalIdentity:
        """Complete ``identity`` with the `callback_fields` the callback carried.

        Called after `identity`, only for providers that declare
        `callback_fields`; what it reads is unsigned and must never change the
        subject, issuer or email.
        """
        return identity

    async def logout_url(
        self, *, id_token_hint: str | None, post_logout_redirect_uri: str, state: str
    ) -> str | None:
        """The RP-initiated logout URL at the provider, or ``None`` when it has none."""
        return None


@runtime_checkable
class LoginProvider(Protocol):
    """A provider description that can log people in (see `ProviderLogin`)."""

    @property
    def name(self) -> str:
        """The provider's name."""
        ...

    @property
    def login_enabled(self) -> bool:
        """Whether it is configured for logging in (client id, and secret where needed)."""
        ...

    def bind_login(self, client: ClientSource, clock: Clock, *, timeout: float) -> ProviderLogin:
        """Create its login runtime for one app.

        Raises:
            ConfigurationError: ``login_not_configured`` when `login_enabled` is false.
        """
        ...


def provider_error_code(value: Any) -> str:
    """A provider's ``error`` value, safe to keep: a bounded string of RFC 6749 characters."""
    if not isinstance(value, str) or not value:
        return "unknown"
    kept = "".join(c for c in value[:MAX_PROVIDER_ERROR] if 0x20 <= ord(c) <= 0x7E)
    return kept.replace('"', "").replace("\\", "") or "unknown"


def _form_encode(value: str) -> str:
    return quote_plus(value, safe="")
