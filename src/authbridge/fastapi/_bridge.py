"""``AuthBridge``: the one object an app configures and wires into FastAPI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.responses import JSONResponse

from .._clock import Clock, system_clock
from .._httpx import AsyncTransport
from ..errors import AuthBridgeError, ConfigurationError, ProviderUnavailable
from ..metadata import ProviderMetadata
from ..resource.base import Provider
from ..resource.principal import Principal
from ..resource.provider import BoundProvider, JWTProvider
from ..resource.server import ResourceServer
from ..store import ClientRecord
from ._docs import swagger_ui_router
from ._issuer import IssuerEndpoints
from ._openapi import extend_document
from ._refusals import RefusalLog, refusal_detail
from ._routes import check_scope_declarations, operation_usage
from ._schemes import (
    CLIENT_CREDENTIALS_SCHEME,
    PASSWORD_SCHEME,
    authorization_code_model,
    bearer_description,
    client_credentials_model,
    password_model,
)
from ._security import (
    ActivePrincipalDependency,
    OptionalPrincipalDependency,
    PrincipalDependency,
)

if TYPE_CHECKING:
    from ..issuer import AppIssuer, IssuerRuntime

logger = logging.getLogger("authbridge.fastapi")

SWAGGER_CLIENT_ID = "swagger-ui"
"""The built-in public client Swagger UI logs in with at the app's own issuer."""

PRM_PATH = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True, slots=True)
class SwaggerLogin:
    """Log in from Swagger UI's "Authorize" at an OpenID provider (authorization code + PKCE).

    Swagger UI acts as a *public* client: register ``client_id`` at the provider
    as a public (no secret) client allowing the authorization code grant with
    PKCE, with ``<your app>/docs/oauth2-redirect`` as redirect URI, and allow
    your app's origin for CORS on its token endpoint.

    Args:
        provider: Name of an [OIDCProvider][authbridge.OIDCProvider] of this
            [AuthBridge][authbridge.AuthBridge].
        client_id: The public client Swagger UI uses.
        scopes: Scopes offered in the dialog (name → description, or a list of
            names); all are pre-selected.
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

    def __post_init__(self) -> None:
        _require_scope_list(self.scopes, "SwaggerLogin(scopes=...)")

    def scope_descriptions(self) -> dict[str, str]:
        """Scopes as the OpenAPI flow object lists them."""
        if isinstance(self.scopes, Mapping):
            return dict(self.scopes)
        return {scope: scope for scope in self.scopes}


class AuthBridge:
    """authbridge for one FastAPI app.

    Args:
        providers: The token sources the app trusts
            ([OIDCProvider][authbridge.OIDCProvider], ...). May be empty with
            an ``issuer``.
        issuer: The app's own authorization server
            ([AppIssuer][authbridge.AppIssuer]): its access tokens are
            accepted with no HTTP call (one more source, routed by ``iss``),
            its store opens and its keys load in the lifespan, and `install`
            adds its endpoints and Swagger UI's password and
            client-credentials boxes.
        transport: Outbound HTTP transport for discovery/JWKS/APIs, for tests:
            the test kit's `FakeIssuer.transport`, an `httpx.MockTransport`, an
            `httpx2.MockTransport`, or any transport of either library. It makes
            its own connections: no proxy or CA setting applies to it.
        clock: Time source, POSIX seconds.
        cache_size: Verification cache capacity (0 disables it).
        http_timeout: Bound on each outbound request, in seconds.
        proxy: Send every outbound request through this HTTP proxy, e.g.
            `"http://proxy.example.org:3128"` (credentials allowed, never logged).
            Overrides the environment. See the deployment guide.
        trust_env: Read the proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`,
            `ALL_PROXY`, `NO_PROXY`, either case; loopback hosts always go direct)
            and `SSL_CERT_FILE` / `SSL_CERT_DIR` from the environment. `.netrc` is
            never read.
        realm: Optional ``realm`` for ``WWW-Authenticate`` challenges.
        allow_query_token: Also accept ``?access_token=`` (RFC 6750 §2.3) when
            no ``Authorization`` header is sent. Off by default: URLs end up
            in logs and browser history.
        scheme_name: Name of the pasted-token security scheme in the OpenAPI document.
        swagger_login: Let Swagger UI's "Authorize" log in at one OIDC provider.
        resource: This API's resource identifier (an https URL). Enables RFC 9728
            Protected Resource Metadata and its ``resource_metadata`` challenge
            parameter once `install` is called.
        scopes_supported: Scopes advertised in that metadata (a list); by
            default every scope the app's routes require.
        explain_refusals: Development switch: put the refusal's reason code,
            provider, claim and expected-versus-actual values (``iss``, ``aud``,
            ``alg``, ``kid``...) in the JSON body of every 401/403/503. Those
            values can come from the token; never turn this on in production.
            Logged at WARNING when on.

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
        issuer: AppIssuer | None = None,
        transport: AsyncTransport | None = None,
        clock: Clock = system_clock,
        cache_size: int = 10_000,
        http_timeout: float = 5.0,
        proxy: str | None = None,
        trust_env: bool = True,
        realm: str | None = None,
        allow_query_token: bool = False,
        scheme_name: str = "BearerToken",
        swagger_login: SwaggerLogin | None = None,
        resource: str | None = None,
        scopes_supported: Sequence[str] | None = None,
        explain_refusals: bool = False,
    ) -> None:
        if scopes_supported is not None:
            _require_scope_list(scopes_supported, "AuthBridge(scopes_supported=...)")
        sources: list[Provider] = [*providers]
        if issuer is not None:
            sources.append(issuer)
        self.resource_server = ResourceServer(
            sources,
            transport=transport,
            clock=clock,
            cache_size=cache_size,
            http_timeout=http_timeout,
            proxy=proxy,
            trust_env=trust_env,
        )
        self.realm = realm
        self.allow_query_token = allow_query_token
        self.swagger_login = swagger_login
        self.resource = resource
        self.scopes_supported = tuple(scopes_supported) if scopes_supported is not None else None
        self.explain_refusals = explain_refusals
        self.refusal_log = RefusalLog()
        """Logs refusals: the first of each (provider, reason) per minute at WARNING."""
        self._apps: list[FastAPI] = []
        self.resource_metadata_url: str | None = None
        """Absolute URL of this API's RFC 9728 metadata, once `install` published it."""
        self._issuer_config = issuer
        self._endpoints: IssuerEndpoints | None = None
        if issuer is not None:
            self._endpoints = IssuerEndpoints(self.resource_server.bound(issuer.name).runtime)
        self._issuers = tuple(
            iss for p in sources for iss in self.resource_server.bound(p.name).jwt_issuers
        )
        self._prefixes = tuple(
            prefix for p in sources for prefix in self.resource_server.bound(p.name).opaque_prefixes
        )
        self._max_token_bytes = max(
            self.resource_server.bound(p.name).max_token_bytes for p in sources
        )
        if explain_refusals:
            _warn_explaining()
        if resource is not None:
            if urlsplit(resource).scheme not in ("https", "http"):
                raise ConfigurationError("resource_must_be_an_http_url")
            audiences = [p.policy.audiences for p in providers if isinstance(p, JWTProvider)]
            if issuer is not None:
                audiences.append(frozenset({issuer.audience}))
            if audiences and not any(resource in a for a in audiences):
                # RFC 9728 clients ask for tokens *for this resource*; a provider
                # issues them with `aud` = resource, which must then be accepted.
                logger.warning(
                    "resource %r is not an accepted audience of any provider: clients "
                    "following the protected resource metadata will get unusable tokens",
                    resource,
                )
        self._login_provider = self._check_login(providers, swagger_login)
        description = bearer_description(providers, own=issuer)
        self.scheme_name = scheme_name
        self.principal = PrincipalDependency(self, scheme_name=scheme_name, description=description)
        """Dependency: ``Security(auth.principal, scopes=[...])`` → the caller's
        [Principal][authbridge.Principal]."""
        self.optional_principal = OptionalPrincipalDependency(
            self, scheme_name=scheme_name, description=description, auto_error=False
        )
        """Dependency: like `principal`, but ``None`` for anonymous callers."""
        self.active_principal = ActivePrincipalDependency(
            self, scheme_name=scheme_name, description=description
        )
        """Dependency: like `principal`, and the token must still be active at its
        provider (a revoked JWT is refused before its ``exp``): for high-value routes."""

    @property
    def issuer(self) -> IssuerRuntime | None:
        """The app's own authorization server at run time (``None`` without ``issuer=``).

        Its store ([IssuerRuntime.store][authbridge.issuer.IssuerRuntime]) is
        where users and clients are added; it is opened by the lifespan.
        """
        return self._endpoints.runtime if self._endpoints is not None else None

    @property
    def swagger_client_id(self) -> str:
        """The ``client_id`` Swagger UI uses at the app's own issuer.

        ``swagger-ui``; with a [SwaggerLogin][authbridge.SwaggerLogin], its
        ``client_id``: Swagger UI fills every box of its Authorize dialog with
        one client id (``initOAuth``), so the app's issuer answers to that one.
        """
        return self.swagger_login.client_id if self.swagger_login else SWAGGER_CLIENT_ID

    @property
    def dependencies(self) -> dict[str, PrincipalDependency]:
        """Every FastAPI dependency of this bridge, by attribute name.

        ``principal``, ``optional_principal`` and ``active_principal``; the test
        kit's ``override_auth`` swaps them all at once.
        """
        return {
            d.attribute_name: d
            for d in (self.principal, self.optional_principal, self.active_principal)
        }

    def refusal_detail(self, error: AuthBridgeError, token: Callable[[], str]) -> dict[str, Any]:
        """``error.detail`` plus what this bridge knows (configured issuers, ...).

        ``token`` returns the presented token, read only when it helps (the
        ``iss`` of a token naming an unknown issuer).
        """
        return refusal_detail(
            error,
            issuers=self._issuers,
            prefixes=self._prefixes,
            token=token,
            max_bytes=self._max_token_bytes,
        )

    @staticmethod
    def _check_login(
        providers: Sequence[Provider], login: SwaggerLogin | None
    ) -> JWTProvider | None:
        if login is None:
            return None
        for provider in providers:
            if provider.name == login.provider and isinstance(provider, JWTProvider):
                return provider
        raise ConfigurationError("swagger_login_needs_an_oidc_provider", provider=login.provider)

    def login_schemes(self) -> dict[str, dict[str, Any]]:
        """The OpenAPI security scheme of `SwaggerLogin`, by name (empty without one).

        One OAuth 2.0 scheme named after the provider, with only the
        authorization-code flow (Swagger UI adds PKCE): the one login box that
        works for a public client. It uses the discovered endpoints once the
        lifespan ran (configured or conventional URLs before that).
        """
        provider, login = self._login_provider, self.swagger_login
        if provider is None or login is None:
            return {}
        bound: BoundProvider = self.resource_server.bound(provider.name)
        model = self._authorization_code_model(provider, login, bound.metadata)
        return {provider.name: jsonable_encoder(model, by_alias=True, exclude_none=True)}

    def issuer_schemes(self) -> dict[str, dict[str, Any]]:
        """The OpenAPI security schemes of the app's own issuer, by name (empty without one).

        ``AppPassword`` (the password flow, refreshed at the token endpoint)
        and ``AppClientCredentials``, each present when its grant is enabled;
        the token URL is the endpoint's path, so Swagger UI posts to the
        origin it was loaded from.
        """
        endpoints = self._endpoints
        if endpoints is None:
            return {}
        config = endpoints.runtime.config
        token_url = endpoints.path("token")
        scopes = dict(config.scopes)
        models: dict[str, OAuth2Model] = {}
        if "password" in config.grant_types:
            models[PASSWORD_SCHEME] = password_model(
                token_url=token_url, scopes=scopes, client_id=self.swagger_client_id
            )
        if "client_credentials" in config.grant_types:
            models[CLIENT_CREDENTIALS_SCHEME] = client_credentials_model(
                token_url=token_url, scopes=scopes
            )
        return {
            name: jsonable_encoder(model, by_alias=True, exclude_none=True)
            for name, model in models.items()
        }

    def _extend_openapi(self, app: FastAPI) -> None:
        # Added to the document, not as sub-dependencies: those would be
        # resolved on every request for nothing.
        generate = app.openapi

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                check_scope_declarations(app.routes)
                self.extend_openapi(generate(), app.routes)
            return app.openapi_schema or generate()

        app.openapi = openapi  # type: ignore[method-assign]

    def extend_openapi(self, document: dict[str, Any], routes: Sequence[Any]) -> None:
        """Add what `install` adds to an OpenAPI document built from ``routes``.

        On every operation using this bridge's dependencies: the
        [SwaggerLogin][authbridge.SwaggerLogin] scheme and the app's own
        issuer's schemes (`issuer_schemes`) as alternatives of the
        pasted token, an empty requirement where the token is optional, the
        401/403/503 responses with their ``WWW-Authenticate`` / ``Retry-After``
        headers, and the required scopes in the description.
        """
        extend_document(
            document,
            scheme_name=self.scheme_name,
            alternatives={**self.login_schemes(), **self.issuer_schemes()},
            optional=operation_usage(routes, self.dependencies.values()),
        )

    def docs_connect_origins(self, app: FastAPI | None = None) -> Iterator[str]:
        """Where the Swagger UI page may send requests besides its own origin.

        The token endpoint of the Swagger login and the app's OpenAPI
        ``servers``: the ``connect-src`` of the page's CSP.
        """
        for scheme in self.login_schemes().values():
            for flow in scheme.get("flows", {}).values():
                yield flow.get("tokenUrl", "")
                yield flow.get("refreshUrl", "")
        for server in (app.servers if app is not None else None) or ():
            url = server.get("url") if isinstance(server, Mapping) else None
            if isinstance(url, str):
                yield url

    @staticmethod
    def _authorization_code_model(
        provider: JWTProvider, login: SwaggerLogin, metadata: ProviderMetadata | None
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
        """FastAPI's ``swagger_ui_init_oauth`` for `SwaggerLogin` or the app's issuer.

        With a `SwaggerLogin`, Swagger UI uses PKCE as a public client: no
        secret in the browser. With only the app's issuer (and its password
        grant), the password box's client id is `swagger_client_id`.
        ``None`` without either.
        """
        login = self.swagger_login
        if login is None:
            if PASSWORD_SCHEME in self.issuer_schemes():
                return {"clientId": SWAGGER_CLIENT_ID}
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
        for app in self._apps:
            check_scope_declarations(app.routes)
        if self.explain_refusals:
            _warn_explaining()
        endpoints = self._endpoints
        if endpoints is not None:
            # Before the resource server: its own-token source needs the keys.
            await endpoints.starter.start()
        try:
            await self.resource_server.start()
        except BaseException:
            if endpoints is not None:
                await endpoints.starter.aclose()
            raise
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
        try:
            await self.resource_server.aclose()
        finally:
            if self._endpoints is not None:
                await self._endpoints.starter.aclose()

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """FastAPI lifespan: ``FastAPI(lifespan=auth.lifespan)``.

        Opens the outbound HTTP client and loads provider keys and metadata (a
        provider that is down does not stop the app), and closes the client at
        shutdown. With an ``issuer``, first opens its store (migrating it when
        configured) and loads its signing keys; a store that cannot be reached
        does not stop the app (its endpoints answer 503 and retry). To combine
        with your own lifespan, use ``async with auth:``.

        Raises:
            ConfigurationError: a route gives its scopes as a string
                (``Security(auth.principal, scopes="items")``), not a list;
                the issuer has no key-encryption key outside development mode,
                or its store's schema is outdated with ``migrate=False``.
        """
        routes = getattr(app, "routes", None)
        if isinstance(routes, list):
            check_scope_declarations(routes)
        async with self:
            yield

    def install(self, app: FastAPI, *, docs_url: str | None = "/docs") -> None:
        """Add authbridge's routes to ``app``.

        - In the OpenAPI document of every protected route (see
          `extend_openapi`): the [SwaggerLogin][authbridge.SwaggerLogin]
          schemes as alternatives to the pasted token, the 401/403/503
          responses with their RFC 6750 ``WWW-Authenticate`` header, and the
          required scopes in the description.
        - Swagger UI at ``docs_url`` served from the package (no CDN), with the
          OAuth2 redirect page and `swagger_ui_init_oauth` applied,
          ``persistAuthorization`` on (``FastAPI(swagger_ui_parameters=...)``
          overrides it), a strict Content-Security-Policy. Create the app with
          ``FastAPI(docs_url=None, redoc_url=None)``: FastAPI's own docs and
          ReDoc pages would share the origin where Swagger UI keeps the token.
          ``docs_url=None`` skips this.
        - RFC 9728 Protected Resource Metadata, when ``resource`` is configured.
        - With an ``issuer``: its token, revocation, introspection and JWKS
          endpoints and its RFC 8414 metadata (see
          [AppIssuer][authbridge.AppIssuer]); with ``docs_url``, the built-in
          public client Swagger UI's password box logs in with
          (`swagger_client_id`, no secret, password and refresh grants, every
          scope of the issuer).

        Raises:
            ConfigurationError: FastAPI's own docs or ReDoc page is registered
                on ``app`` while ``docs_url`` is set, or a route gives its scopes
                as a string (also checked when the lifespan starts, once every
                route is declared).
        """
        if docs_url is not None:
            _refuse_fastapi_docs_pages(app, docs_url)
        check_scope_declarations(app.routes)
        self._apps.append(app)
        self._extend_openapi(app)
        endpoints = self._endpoints
        if endpoints is not None:
            if docs_url is not None:
                self._add_swagger_client(endpoints.runtime)
            endpoints.install(app)
        if docs_url is not None:
            app.include_router(
                swagger_ui_router(
                    docs_url=docs_url,
                    openapi_url=app.openapi_url or "/openapi.json",
                    title=f"{app.title} - Swagger UI",
                    init_oauth=self.swagger_ui_init_oauth,
                    swagger_ui_parameters=app.swagger_ui_parameters,
                    connect_src=lambda: self.docs_connect_origins(app),
                )
            )
        if self.resource is not None:
            self._install_resource_metadata(app, self.resource)

    def _add_swagger_client(self, runtime: IssuerRuntime) -> None:
        runtime.add_builtin_client(
            ClientRecord(
                client_id=self.swagger_client_id,
                name="Swagger UI",
                auth_method="none",
                grant_types=frozenset({"password", "refresh_token"}),
                scopes=frozenset(runtime.config.scopes),
            )
        )

    def _install_resource_metadata(self, app: FastAPI, resource: str) -> None:
        parts = urlsplit(resource)
        path = PRM_PATH + parts.path.rstrip("/")
        self.resource_metadata_url = f"{parts.scheme}://{parts.netloc}{path}"

        async def protected_resource_metadata() -> JSONResponse:
            return JSONResponse(
                self.protected_resource_metadata(app),
                headers={
                    "Cache-Control": "public, max-age=3600",
                    "X-Content-Type-Options": "nosniff",
                },
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
                *([self._issuer_config.issuer] if self._issuer_config is not None else []),
                *(p.issuer for p in self.resource_server.providers if isinstance(p, JWTProvider)),
            ],
            "scopes_supported": list(scopes),
            "bearer_methods_supported": methods,
        }


def _refuse_fastapi_docs_pages(app: FastAPI, docs_url: str) -> None:
    """FastAPI's own pages next to authbridge's Swagger UI are a hole in it.

    They load scripts from a CDN without a Content-Security-Policy, and FastAPI
    pastes ``root_path`` into them unescaped (reflected script under a templated
    mount), on the same origin where authbridge's Swagger UI keeps the bearer
    token in ``localStorage`` (``persistAuthorization``).
    """
    # FastAPI registers them only with an OpenAPI document to show.
    pages = [
        f"{name} at {url}"
        for name, url in (("docs page", app.docs_url), ("ReDoc page", app.redoc_url))
        if url and app.openapi_url
    ]
    if pages:
        raise ConfigurationError(
            "create_the_app_with_docs_url_none",
            message=(
                f"FastAPI's own {' and '.join(pages)} would be served next to authbridge's "
                f"Swagger UI at {docs_url}, on the origin where it keeps the bearer token "
                "(CDN scripts, no Content-Security-Policy, root_path reflected unescaped): "
                "create the app with FastAPI(docs_url=None, redoc_url=None), or pass "
                "docs_url=None to install() to keep FastAPI's pages instead"
            ),
        )


def _require_scope_list(scopes: object, where: str) -> None:
    """A string where a list of scopes goes is a mistake, not a list of letters."""
    if isinstance(scopes, str | bytes):
        text = scopes if isinstance(scopes, str) else scopes.decode("latin-1")
        suggestion = [s for s in text.split(" ") if s] or [text]
        raise ConfigurationError(
            "scopes_must_be_a_list",
            message=(
                f"{where} takes a list of scopes, e.g. {suggestion!r}, not the string "
                f"{scopes!r} (which would be read letter by letter)"
            ),
        )


def _warn_explaining() -> None:
    logger.warning(
        "authbridge: explain_refusals is ON: 401/403/503 bodies carry refusal reasons and "
        "values taken from tokens. Development only: turn it off in production."
    )
