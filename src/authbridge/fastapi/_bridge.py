"""``AuthBridge``: the one object an app configures and wires into FastAPI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.models import OAuth2 as OAuth2Model
from starlette.requests import HTTPConnection

from .._clock import Clock, system_clock
from .._httpx import AsyncTransport
from ..client._settings import LoginSettings
from ..errors import AuthBridgeError, ConfigurationError, ProviderUnavailable
from ..resource.base import Provider
from ..resource.principal import Principal
from ..resource.provider import BoundProvider, JWTProvider
from ..resource.server import ResourceServer
from ..store import ClientRecord
from ._bridge_checks import (
    SwaggerLogin,
    install_resource_metadata,
    refuse_fastapi_docs_pages,
    require_scope_list,
    resource_metadata,
    swagger_login_model,
    warn_explaining,
)
from ._browser_login import BrowserLogin, bind_login, install_login
from ._delegation_routes import add_schemas, delegation_options, install_delegations
from ._docs import swagger_ui_router
from ._health import install_health
from ._issuer import IssuerEndpoints
from ._openapi import extend_document
from ._refusals import RefusalLog, refusal_detail
from ._routes import check_scope_declarations, operation_usage
from ._schemes import (
    CLIENT_CREDENTIALS_SCHEME,
    LOGIN_SCHEME,
    PASSWORD_SCHEME,
    authorization_code_model,
    bearer_description,
    client_credentials_model,
    password_model,
)
from ._security import (
    ActivePrincipalDependency,
    DirectPrincipalDependency,
    OptionalPrincipalDependency,
    PrincipalDependency,
)

if TYPE_CHECKING:
    from ..issuer import AppIssuer, IssuerRuntime

logger = logging.getLogger("authbridge.fastapi")

SWAGGER_CLIENT_ID = "swagger-ui"
"""The built-in public client Swagger UI logs in with at the app's own issuer."""


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
        login: Browser login at the app's ``issuer``
            ([LoginSettings][authbridge.client.LoginSettings]): its
            ``/oauth/authorize`` endpoint with a login chooser (the local
            password and every provider with a login client id), the
            providers' callback, server-side sessions at ``/auth/*`` (the
            session cookie is accepted by `principal` when no bearer token
            is sent), and Swagger UI's ``AppLogin`` box.
        delegations: With an ``issuer``, let users hand robots tokens that act
            for them: `install` adds ``POST``/``GET /me/delegations`` and
            ``DELETE /me/delegations/{id}`` (see [Robots and
            delegation](delegation.md)). On by default; ``False`` leaves them out
            (delegated tokens minted otherwise, by token exchange, still work).
        delegations_scope: A scope of the issuer the caller of those routes must
            hold; ``None``: any user of the app (its own token or a session).
        health: With an ``issuer``, `install` adds the liveness and readiness
            endpoints ``/healthz`` and ``/readyz`` (see
            [install_health][authbridge.fastapi.install_health]). ``False``
            leaves them out: for an app serving its own, or calling
            ``install_health`` with other paths.

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
        login: LoginSettings | None = None,
        delegations: bool = True,
        delegations_scope: str | None = None,
        health: bool = True,
    ) -> None:
        self.health = health
        # Whether `install` adds the /me/delegations routes, and the scope they require.
        self.delegations, self.delegations_scope = delegation_options(
            delegations, delegations_scope, issuer
        )
        if scopes_supported is not None:
            require_scope_list(scopes_supported, "AuthBridge(scopes_supported=...)")
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
        self.browser_login: BrowserLogin | None = bind_login(
            login,
            self._endpoints,
            providers,
            # The resource server's outbound client: the same bounds, proxy and transport.
            http=self.resource_server.http,
            clock=clock,
            timeout=http_timeout,
            verify=self.resource_server.verify,
        )
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
            warn_explaining()
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
        self.direct_principal = DirectPrincipalDependency(
            self, scheme_name=scheme_name, description=description
        )
        """Dependency: like `principal`, but a delegated token (``Principal.actors``
        not empty: someone acting for the user) is refused with 403: for routes only
        the user may call."""

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

        ``principal``, ``optional_principal``, ``active_principal`` and
        ``direct_principal``; the test kit's ``override_auth`` swaps them all at once.
        """
        return {
            d.attribute_name: d
            for d in (
                self.principal,
                self.optional_principal,
                self.active_principal,
                self.direct_principal,
            )
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
        model = swagger_login_model(provider, login, bound.metadata)
        return {provider.name: jsonable_encoder(model, by_alias=True, exclude_none=True)}

    def issuer_schemes(self) -> dict[str, dict[str, Any]]:
        """The OpenAPI security schemes of the app's own issuer, by name (empty without one).

        ``AppLogin`` (the authorization code flow with PKCE at the app's
        ``/oauth/authorize``, with ``login=``), ``AppPassword`` (the password
        flow) and ``AppClientCredentials``, each present when its grant is
        enabled; the URLs are the endpoints' paths, so Swagger UI uses the
        origin it was loaded from.
        """
        endpoints = self._endpoints
        if endpoints is None:
            return {}
        config = endpoints.runtime.config
        token_url = endpoints.path("token")
        scopes = dict(config.scopes)
        models: dict[str, OAuth2Model] = {}
        if self.browser_login is not None and "authorization_code" in config.grant_types:
            models[LOGIN_SCHEME] = authorization_code_model(
                authorization_url=self.browser_login.path("authorize"),
                token_url=token_url,
                refresh_url=token_url,
                scopes=scopes,
                description=(
                    "Log in at this app: its local password or a provider "
                    f"(authorization code with PKCE); client_id: `{self.swagger_client_id}`, "
                    "no secret"
                ),
            )
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
        headers (a 403 also where `direct_principal` refuses delegated
        tokens), the required scopes in the description, and the request
        schema of the delegation routes.
        """
        extend_document(
            document,
            scheme_name=self.scheme_name,
            alternatives={**self.login_schemes(), **self.issuer_schemes()},
            optional=operation_usage(routes, self.dependencies.values()),
            direct=operation_usage(routes, [self.direct_principal]).keys(),
        )
        add_schemas(document)

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

    @property
    def swagger_ui_init_oauth(self) -> dict[str, Any] | None:
        """FastAPI's ``swagger_ui_init_oauth`` for `SwaggerLogin` or the app's issuer.

        With a `SwaggerLogin`, Swagger UI uses PKCE as a public client: no
        secret in the browser. With only the app's issuer (and its password
        grant), the password box's client id is `swagger_client_id`; with
        its ``AppLogin`` box (``login=``), PKCE is on too. ``None`` without
        either.
        """
        login = self.swagger_login
        if login is None:
            schemes = self.issuer_schemes()
            if LOGIN_SCHEME in schemes:
                return {"clientId": SWAGGER_CLIENT_ID, "usePkceWithAuthorizationCodeGrant": True}
            if PASSWORD_SCHEME in schemes:
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

    async def csrf_token(self, request: HTTPConnection) -> str | None:
        """The CSRF token of the request's session, for a server-rendered page's forms.

        Put it in a hidden ``csrf_token`` field (or send it as ``X-CSRF-Token``)
        of every unsafe request the session makes. ``None`` without a live
        session or without ``login=``.

        Raises:
            StoreUnavailable: the store is down.
        """
        login = self.browser_login
        if login is None:
            return None
        found = await login.session_of(request)
        return None if found is None else login.sessions.csrf_token(found[0])

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
            warn_explaining()
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
        if self.browser_login is not None:
            await self.browser_login.start()
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
        - With ``login=``: the authorization endpoint, the providers'
          callback, the ``/auth/*`` session routes and the pages' stylesheet;
          Swagger UI's client also gets the authorization code grant with
          ``<issuer origin><docs_url>/oauth2-redirect`` as its redirect URI.
        - With an ``issuer`` (unless ``delegations=False``): the user's
          delegations at ``/me/delegations`` (create, list, revoke), in the
          OpenAPI document.
        - With an ``issuer`` (unless ``health=False``): ``/healthz`` and
          ``/readyz`` for load balancers and Kubernetes probes, not in the
          OpenAPI document (see [install_health][authbridge.fastapi.install_health]).

        Raises:
            ConfigurationError: FastAPI's own docs or ReDoc page is registered
                on ``app`` while ``docs_url`` is set, ``/healthz`` or ``/readyz``
                is already served (pass ``health=False``), or a route gives its scopes
                as a string (also checked when the lifespan starts, once every
                route is declared).
        """
        if docs_url is not None:
            refuse_fastapi_docs_pages(app, docs_url)
        check_scope_declarations(app.routes)
        self._apps.append(app)
        self._extend_openapi(app)
        endpoints = self._endpoints
        if endpoints is not None:
            if docs_url is not None:
                self._add_swagger_client(endpoints.runtime, docs_url)
            endpoints.install(app)
            if self.delegations:
                install_delegations(app, self, endpoints)
            if self.health:
                install_health(app, self)
        if self.browser_login is not None:
            install_login(app, self.browser_login)
            self.browser_login.endpoints.runtime.authorization_endpoint = True
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

    def _add_swagger_client(self, runtime: IssuerRuntime, docs_url: str) -> None:
        grants = {"password", "refresh_token"}
        redirect_uris: tuple[str, ...] = ()
        login = self.browser_login
        if login is not None and "authorization_code" in runtime.config.grant_types:
            grants.add("authorization_code")
            redirect_uris = (f"{login.origin}{docs_url}/oauth2-redirect",)
        runtime.add_builtin_client(
            ClientRecord(
                client_id=self.swagger_client_id,
                name="Swagger UI",
                auth_method="none",
                grant_types=frozenset(grants),
                scopes=frozenset(runtime.config.scopes),
                redirect_uris=redirect_uris,
            )
        )

    def _install_resource_metadata(self, app: FastAPI, resource: str) -> None:
        self.resource_metadata_url = install_resource_metadata(
            app, resource, lambda: self.protected_resource_metadata(app)
        )

    def protected_resource_metadata(self, app: FastAPI) -> dict[str, Any]:
        """This API's RFC 9728 metadata document."""
        assert self.resource is not None  # noqa: S101
        return resource_metadata(
            app,
            resource=self.resource,
            scopes_supported=self.scopes_supported,
            allow_query_token=self.allow_query_token,
            authorization_servers=[
                *([self._issuer_config.issuer] if self._issuer_config is not None else []),
                *(p.issuer for p in self.resource_server.providers if isinstance(p, JWTProvider)),
            ],
        )
