"""``AuthBridge``: the one object an app configures and wires into FastAPI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.responses import JSONResponse

from .._clock import Clock, system_clock
from .._http import DEFAULT_TIMEOUT
from ..errors import ConfigurationError, ProviderUnavailable
from ..providers.discovery import ProviderMetadata, discovery_urls
from ..resource.apis import FacebookProvider, GitHubProvider, GoogleProvider, UserinfoProvider
from ..resource.base import Provider
from ..resource.principal import Principal
from ..resource.provider import BoundProvider, OIDCProvider
from ..resource.server import ResourceServer
from ._docs import swagger_ui_router
from ._schemes import authorization_code_model, openid_connect_model
from ._security import OptionalPrincipalDependency, PrincipalDependency

logger = logging.getLogger("authbridge.fastapi")

PRM_PATH = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True, slots=True)
class SwaggerLogin:
    """Log in from Swagger UI's "Authorize" at an OpenID provider (authorization code + PKCE).

    Swagger UI acts as a *public* client: register ``client_id`` at the provider
    as a public (no secret) client allowing the authorization code grant with
    PKCE, with ``<your app>/docs/oauth2-redirect`` as redirect URI, and allow
    your app's origin for CORS on its token endpoint.

    Args:
        provider: Name of an :class:`OIDCProvider` of this :class:`AuthBridge`.
        client_id: The public client Swagger UI uses.
        scopes: Scopes offered in the dialog (name → description, or names);
            all are pre-selected.
        authorization_url: The authorization endpoint; from discovery if omitted.
        token_url: The token endpoint; from discovery if omitted.
        extra_params: Added to the authorization request, e.g. ``{"audience":
            "https://api.example.org"}`` (Auth0) or ``{"resource": ...}`` (RFC 8707).
    """

    provider: str
    client_id: str
    scopes: Mapping[str, str] | Sequence[str] = ()
    authorization_url: str | None = None
    token_url: str | None = None
    extra_params: Mapping[str, str] = field(default_factory=dict)

    def scope_descriptions(self) -> dict[str, str]:
        """Scopes as the OpenAPI flow object lists them."""
        if isinstance(self.scopes, Mapping):
            return dict(self.scopes)
        return {scope: scope for scope in self.scopes}


class AuthBridge:
    """authbridge for one FastAPI app.

    Args:
        providers: The token sources the app trusts (:class:`OIDCProvider`, ...).
        transport: Outbound HTTP transport for discovery/JWKS/APIs (tests inject one).
        clock: Time source, POSIX seconds.
        cache_size: Verification cache capacity (0 disables it).
        http_timeout: Bound on each outbound request, in seconds.
        realm: Optional ``realm`` for ``WWW-Authenticate`` challenges.
        allow_query_token: Also accept ``?access_token=`` (RFC 6750 §2.3) when
            no ``Authorization`` header is sent. Off by default: URLs end up
            in logs and browser history.
        scheme_name: Name of the pasted-token security scheme in the OpenAPI document.
        swagger_login: Let Swagger UI's "Authorize" log in at one OIDC provider.
        resource: This API's resource identifier (an https URL). Enables RFC 9728
            Protected Resource Metadata and its ``resource_metadata`` challenge
            parameter once :meth:`install` is called.
        scopes_supported: Scopes advertised in that metadata; by default every
            scope the app's routes require.

    Example:
        ```python
        auth = AuthBridge(providers=[OIDCProvider("hydra", issuer=..., audience=...)])
        app = FastAPI(lifespan=auth.lifespan)

        @app.get("/items")
        async def items(user: Principal = Security(auth.principal, scopes=["items:read"])):
            ...
        ```
    """

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = system_clock,
        cache_size: int = 10_000,
        http_timeout: float = DEFAULT_TIMEOUT,
        realm: str | None = None,
        allow_query_token: bool = False,
        scheme_name: str = "BearerToken",
        swagger_login: SwaggerLogin | None = None,
        resource: str | None = None,
        scopes_supported: Sequence[str] | None = None,
    ) -> None:
        self.resource_server = ResourceServer(
            providers,
            transport=transport,
            clock=clock,
            cache_size=cache_size,
            http_timeout=http_timeout,
        )
        self.realm = realm
        self.allow_query_token = allow_query_token
        self.swagger_login = swagger_login
        self.resource = resource
        self.scopes_supported = tuple(scopes_supported) if scopes_supported is not None else None
        self._apps: list[FastAPI] = []
        self.resource_metadata_url: str | None = None
        """Absolute URL of this API's RFC 9728 metadata, once :meth:`install` published it."""
        if resource is not None:
            if urlsplit(resource).scheme not in ("https", "http"):
                raise ConfigurationError("resource_must_be_an_http_url")
            audiences = [p.policy.audiences for p in providers if isinstance(p, OIDCProvider)]
            if audiences and not any(resource in a for a in audiences):
                # RFC 9728 clients ask for tokens *for this resource*; a provider
                # issues them with `aud` = resource, which must then be accepted.
                logger.warning(
                    "resource %r is not an accepted audience of any provider: clients "
                    "following the protected resource metadata will get unusable tokens",
                    resource,
                )
        self._login_provider = self._check_login(providers, swagger_login)
        description = "Paste an access token issued by: " + ", ".join(
            f"{p.name}" + (f" ({p.issuer})" if isinstance(p, OIDCProvider) else "")
            for p in providers
        )
        self.scheme_name = scheme_name
        self.principal = PrincipalDependency(self, scheme_name=scheme_name, description=description)
        """Dependency: ``Security(auth.principal, scopes=[...])`` → :class:`Principal`."""
        self.optional_principal = OptionalPrincipalDependency(
            self, scheme_name=scheme_name, description=description, auto_error=False
        )
        """Dependency: like :attr:`principal`, but ``None`` for anonymous callers."""

    @staticmethod
    def _check_login(
        providers: Sequence[Provider], login: SwaggerLogin | None
    ) -> OIDCProvider | None:
        if login is None:
            return None
        for provider in providers:
            if provider.name == login.provider and isinstance(provider, OIDCProvider):
                return provider
        raise ConfigurationError("swagger_login_needs_an_oidc_provider", provider=login.provider)

    def login_schemes(self) -> dict[str, dict[str, Any]]:
        """The OpenAPI security schemes of :class:`SwaggerLogin`, by name (empty without one).

        The authorization-code scheme uses the discovered endpoints once the
        lifespan ran (configured or conventional URLs before that).
        """
        provider, login = self._login_provider, self.swagger_login
        if provider is None or login is None:
            return {}
        bound: BoundProvider = self.resource_server.bound(provider.name)
        oidc_url = provider.discovery_url or discovery_urls(provider.issuer)[0]
        models = {
            provider.name: self._authorization_code_model(provider, login, bound.metadata),
            f"{provider.name}-oidc": openid_connect_model(
                discovery_url=oidc_url,
                description=f"OpenID Connect discovery of {provider.name}",
            ),
        }
        return {
            name: jsonable_encoder(model, by_alias=True, exclude_none=True)
            for name, model in models.items()
        }

    def _extend_openapi(self, app: FastAPI) -> None:
        # The per-source and login schemes go in the document as alternatives
        # (separate security requirement objects: OR) of the pasted-token scheme,
        # wherever that one is required. Added to the document, not as
        # sub-dependencies: those would be resolved on every request for nothing.
        generate = app.openapi

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                self._add_alternatives(generate())
            return app.openapi_schema or generate()

        app.openapi = openapi  # type: ignore[method-assign]

    def source_schemes(self) -> dict[str, dict[str, Any]]:
        """One pasted-token scheme per provider, by provider name (with several providers).

        They tell readers of the OpenAPI document which sources a route accepts;
        a token pasted in any of them (or in the general one) works the same.
        """
        providers = self.resource_server.providers
        if len(providers) < 2:
            return {}
        login = self._login_provider
        return {
            provider.name: jsonable_encoder(
                HTTPBearerModel(description=_describe(provider)), by_alias=True, exclude_none=True
            )
            for provider in providers
            if provider is not login
        }

    def _add_alternatives(self, document: dict[str, Any]) -> None:
        components = document.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes = {
            name: scheme
            for name, scheme in {**self.source_schemes(), **self.login_schemes()}.items()
            if name not in components
        }
        if not schemes:
            return
        components.update(schemes)
        for path_item in document.get("paths", {}).values():
            for operation in path_item.values():
                if not isinstance(operation, dict) or not operation.get("security"):
                    continue
                security: list[dict[str, list[str]]] = operation["security"]
                for requirement in list(security):
                    scopes = requirement.get(self.scheme_name)
                    if scopes is None or len(requirement) != 1:
                        continue
                    for name in schemes:
                        alternative = {name: list(scopes)}
                        if alternative not in security:
                            security.append(alternative)

    @staticmethod
    def _authorization_code_model(
        provider: OIDCProvider, login: SwaggerLogin, metadata: ProviderMetadata | None
    ) -> OAuth2Model:
        # Until discovery ran (in the lifespan), configured or conventional URLs.
        base = provider.issuer.rstrip("/")
        authorization_url = login.authorization_url or (
            (metadata and metadata.authorization_endpoint) or f"{base}/authorize"
        )
        token_url = login.token_url or ((metadata and metadata.token_endpoint) or f"{base}/token")
        return authorization_code_model(
            authorization_url=authorization_url,
            token_url=token_url,
            scopes=login.scope_descriptions(),
            description=f"Log in at {provider.name} (authorization code with PKCE)",
        )

    @property
    def swagger_ui_init_oauth(self) -> dict[str, Any] | None:
        """FastAPI's ``swagger_ui_init_oauth`` for :class:`SwaggerLogin` (``None`` without one).

        Swagger UI then uses PKCE as a public client: no secret in the browser.
        """
        login = self.swagger_login
        if login is None:
            return None
        init: dict[str, Any] = {
            "clientId": login.client_id,
            "usePkceWithAuthorizationCodeGrant": True,
            "scopes": " ".join(login.scope_descriptions()),
        }
        if login.extra_params:
            init["additionalQueryStringParams"] = dict(login.extra_params)
        return init

    @property
    def verify(self) -> Callable[[str], Awaitable[Principal]]:
        """Validate a bearer token: ``await auth.verify(token)``; see ``ResourceServer.verify``.

        The resource server's own method, so no extra coroutine per call.
        """
        return self.resource_server.verify

    async def __aenter__(self) -> AuthBridge:
        await self.resource_server.start()
        provider, login = self._login_provider, self.swagger_login
        if provider is not None and login is not None:
            bound: BoundProvider = self.resource_server.bound(provider.name)
            try:
                await bound.load_metadata()
            except ProviderUnavailable as exc:
                logger.warning("Swagger login endpoints of %s not loaded: %s", bound.name, exc)
            else:
                for app in self._apps:
                    app.openapi_schema = None  # rebuilt with the discovered endpoints
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.resource_server.aclose()

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """FastAPI lifespan: ``FastAPI(lifespan=auth.lifespan)``.

        Opens the outbound HTTP client and loads provider keys and metadata (a
        provider that is down does not stop the app), and closes the client at
        shutdown. To combine with your own lifespan, use ``async with auth:``.
        """
        async with self:
            yield

    def install(self, app: FastAPI, *, docs_url: str | None = "/docs") -> None:
        """Add authbridge's routes to ``app``.

        - In the OpenAPI document, as alternatives to the pasted token on every
          protected route: one scheme per provider (when there are several) and
          the :class:`SwaggerLogin` schemes.
        - Swagger UI at ``docs_url`` served from the package (no CDN), with the
          OAuth2 redirect page and :attr:`swagger_ui_init_oauth` applied. Create
          the app with ``FastAPI(docs_url=None)`` so FastAPI's CDN page is not
          registered too. ``docs_url=None`` skips this.
        - RFC 9728 Protected Resource Metadata, when ``resource`` is configured.

        Raises:
            ConfigurationError: FastAPI's own docs page is still on ``docs_url``.
        """
        self._apps.append(app)
        self._extend_openapi(app)
        if docs_url is not None:
            if app.docs_url == docs_url:
                raise ConfigurationError("create_the_app_with_docs_url_none")
            app.include_router(
                swagger_ui_router(
                    docs_url=docs_url,
                    openapi_url=app.openapi_url or "/openapi.json",
                    title=f"{app.title} - Swagger UI",
                    init_oauth=self.swagger_ui_init_oauth,
                    swagger_ui_parameters=app.swagger_ui_parameters,
                )
            )
        if self.resource is not None:
            self._install_resource_metadata(app, self.resource)

    def _install_resource_metadata(self, app: FastAPI, resource: str) -> None:
        parts = urlsplit(resource)
        path = PRM_PATH + parts.path.rstrip("/")
        self.resource_metadata_url = f"{parts.scheme}://{parts.netloc}{path}"

        async def protected_resource_metadata() -> JSONResponse:
            return JSONResponse(
                self.protected_resource_metadata(app),
                headers={"Cache-Control": "public, max-age=3600"},
            )

        app.add_api_route(path, protected_resource_metadata, include_in_schema=False)
        if path != PRM_PATH:
            # Clients that only know the host look here too.
            app.add_api_route(PRM_PATH, protected_resource_metadata, include_in_schema=False)

    def protected_resource_metadata(self, app: FastAPI) -> dict[str, Any]:
        """This API's RFC 9728 metadata document."""
        assert self.resource is not None  # noqa: S101
        scopes = self.scopes_supported
        if scopes is None:
            found: set[str] = set()
            for operations in app.openapi().get("paths", {}).values():
                for operation in operations.values():
                    for requirement in operation.get("security", ()):
                        for names in requirement.values():
                            found.update(names)
            scopes = tuple(sorted(found))
        methods = ["header", "query"] if self.allow_query_token else ["header"]
        return {
            "resource": self.resource,
            "authorization_servers": [
                p.issuer for p in self.resource_server.providers if isinstance(p, OIDCProvider)
            ],
            "scopes_supported": list(scopes),
            "bearer_methods_supported": methods,
        }


def _describe(provider: Provider) -> str:
    """What a reader of the OpenAPI document should know about a provider's tokens."""
    if isinstance(provider, GoogleProvider):
        return "A Google ID token or access token (ya29.)"
    if isinstance(provider, GitHubProvider):
        return "A GitHub token (" + ", ".join(f"{p}..." for p in provider.token_prefixes) + ")"
    if isinstance(provider, FacebookProvider):
        return "A Facebook user access token"
    if isinstance(provider, UserinfoProvider):
        return f"An access token of {provider.issuer} (checked at its userinfo endpoint)"
    if isinstance(provider, OIDCProvider):
        kinds = "JWT or opaque" if provider.introspection else "JWT"
        return f"An access token ({kinds}) issued by {provider.issuer}"
    return f"A token of {provider.name}"
