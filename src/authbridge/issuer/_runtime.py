"""The app's authorization server at run time: store, keys, grants, endpoints.

`IssuerRuntime` is free of HTTP frameworks: ``authbridge.fastapi`` parses the
request (form body, ``Authorization`` header, client address) into a
`TokenRequest` and turns the returned dictionaries, or the raised
[OAuthError][authbridge.issuer.OAuthError], into responses.

Who does what:

- ``_client_auth.authenticate(runtime, request)``: the client of a request
  (``client_secret_basic``, ``client_secret_post``, ``private_key_jwt``,
  or a public client by ``client_id``);
- ``_password_grant.grant(runtime, client, request)``: ``password``;
- ``_refresh.grant(runtime, client, request)``: ``refresh_token`` (and
  ``_refresh.start_family`` for grants that hand out a refresh token);
- ``_client_grant.grant(runtime, client, request)``: ``client_credentials``;
- ``_authorize``: the authorization endpoint's request (`parse_authorize`) and
  answer (`complete`: a code); ``_code_grant.grant``: ``authorization_code``;
- ``_exchange.grant``: RFC 8693 token exchange: a provider's token through
  ``subject_tokens``, the app's own token (delegation, ``act``) through
  ``_delegation_exchange``;
- `Delegations` (``_delegation``, ``delegations``): users' delegations to robots;
- ``_revocation.revoke`` and ``_introspection.introspect``: RFC 7009 and RFC 7662;
- `KeyManager` (``_keys``): signing keys, the JWKS; `OwnTokenSource`
  (``_source``): the resource server's view of the app's own tokens.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .._clock import Clock
from ..errors import StoreUnavailable
from ..store import ClientRecord, ClientStore, Store, UserDirectory, open_store
from ._errors import OAuthError

if TYPE_CHECKING:
    from ._config import AppIssuer
    from ._delegation import Delegations
    from ._exchange import SubjectTokenResolver

logger = logging.getLogger("authbridge.issuer")

CLIENT_CACHE_TTL = 5.0
"""Seconds a client record read from the store is served from memory.

Removing or disabling a client, or rotating its secret (``authbridge clients``,
another process), takes effect within this time on running instances.
"""

CLIENT_CACHE_SIZE = 1024
"""Client records kept in memory at most (the oldest entry goes first)."""


class _ForgettingClients:
    """The store's clients, forgetting the cached record of a client changed through it.

    A change made in this process takes effect at once; one made elsewhere (the
    command line, another instance) within `CLIENT_CACHE_TTL`.
    """

    def __init__(self, clients: ClientStore, cache: dict[str, tuple[ClientRecord, float]]) -> None:
        self.inner = clients
        self._cache = cache

    async def get(self, client_id: str) -> ClientRecord | None:
        return await self.inner.get(client_id)

    async def add(self, client: ClientRecord) -> ClientRecord:
        self._cache.pop(client.client_id, None)
        return await self.inner.add(client)

    async def update(self, client: ClientRecord) -> ClientRecord:
        self._cache.pop(client.client_id, None)
        try:
            return await self.inner.update(client)
        finally:
            self._cache.pop(client.client_id, None)

    async def delete(self, client_id: str) -> bool:
        self._cache.pop(client_id, None)
        try:
            return await self.inner.delete(client_id)
        finally:
            self._cache.pop(client_id, None)

    async def list(self) -> Sequence[ClientRecord]:
        return await self.inner.list()


class TokenRequest(NamedTuple):
    """One request to the token, revocation or introspection endpoint.

    Attributes:
        form: The form parameters, each present once (the HTTP layer refuses
            repeated parameters with ``invalid_request``, RFC 6749 §3.2).
        authorization: The ``Authorization`` header, if any.
        client_address: The client's IP address (for rate limits), if known.
    """

    form: Mapping[str, str]
    authorization: str | None = None
    client_address: str | None = None


Grant = Callable[["IssuerRuntime", ClientRecord, TokenRequest], Awaitable[dict[str, Any]]]


class IssuerRuntime:
    """One app's authorization server (see [AppIssuer][authbridge.AppIssuer]).

    Attributes:
        config: The [AppIssuer][authbridge.AppIssuer] configuration.
        clock: Time source, POSIX seconds.
        store: The store (opened by `start`).
        keys: The signing keys.
        source: The app's own tokens as a resource-server source.
        passwords: The password hasher (bounded, off the event loop).
        subject_tokens: Who answers RFC 8693 token exchange: the
            [SubjectTokenResolver][authbridge.issuer.SubjectTokenResolver]
            that turns a provider's token into an account (set by
            ``AuthBridge``); ``None``: the grant is ``unsupported_grant_type``.
        authorization_endpoint: Whether the authorization endpoint is served
            (set by ``AuthBridge`` when it installs the login routes): the
            metadata advertises it, and the ``authorization_code`` grant, only then.
        delegations: Users' delegations to robots
            ([Delegations][authbridge.issuer.Delegations]): create, list, revoke.
    """

    def __init__(self, config: AppIssuer, clock: Clock) -> None:
        from ._delegation import Delegations  # noqa: PLC0415 - these modules import this one
        from ._keys import KeyManager  # noqa: PLC0415 - these modules import this one
        from ._passwords import PasswordHasher  # noqa: PLC0415 - these modules import this one
        from ._source import OwnTokenSource  # noqa: PLC0415 - these modules import this one

        self.config = config
        self.clock = clock
        self.store: Store = open_store(config.store, migrate=config.migrate)
        self.keys = KeyManager(self.store.keys, config=config, clock=clock)
        self.passwords = PasswordHasher(
            max_concurrent=config.max_concurrent_hashes, max_waiting=config.max_waiting_hashes
        )
        self.source = OwnTokenSource(self)
        self.subject_tokens: SubjectTokenResolver | None = None
        self.authorization_endpoint = False
        self.delegations: Delegations = Delegations(self)
        self._builtin_clients: dict[str, ClientRecord] = {}
        # client_id -> (record, read at): found clients only, so made-up ids fill nothing.
        self._client_cache: dict[str, tuple[ClientRecord, float]] = {}
        clients = self.store.clients
        if isinstance(clients, _ForgettingClients):  # a store shared by two runtimes
            clients = clients.inner
        self.store.clients = _ForgettingClients(clients, self._client_cache)
        self._started = False

    @property
    def users(self) -> UserDirectory:
        """Where the password grant finds accounts: ``AppIssuer(users=...)`` or the store."""
        return self.config.users or self.store.users

    def add_builtin_client(self, client: ClientRecord) -> None:
        """Register a client in memory (not in the store), e.g. Swagger UI's public client.

        Built-in clients are looked up before the store's.
        """
        self._builtin_clients[client.client_id] = client

    async def client(self, client_id: str) -> ClientRecord | None:
        """The registered client with this id (built-in first), or ``None``.

        A client found in the store is kept in memory for `CLIENT_CACHE_TTL`
        seconds (at most `CLIENT_CACHE_SIZE` of them): removing or disabling a
        client, or rotating its secret, takes effect within 5 s on running
        instances (at once when done through this runtime's ``store.clients``).
        Unknown ids are asked of the store every time.
        """
        builtin = self._builtin_clients.get(client_id)
        if builtin is not None:
            return builtin
        now = self.clock()
        cached = self._client_cache.get(client_id)
        if cached is not None:
            record, read_at = cached
            if 0 <= now - read_at < CLIENT_CACHE_TTL:
                return record
            del self._client_cache[client_id]
        found = await self.store.clients.get(client_id)
        if found is not None:
            cache = self._client_cache
            cache.pop(client_id, None)
            while len(cache) >= CLIENT_CACHE_SIZE:
                del cache[next(iter(cache))]  # first in, first out
            cache[client_id] = (found, now)
        return found

    async def start(self) -> None:
        """Open the store (migrating it when configured) and load the signing keys.

        Raises:
            ConfigurationError: no key-encryption key outside development mode,
                or an outdated schema with ``migrate=False``.
            StoreUnavailable: the store cannot be reached.
        """
        await self.keys.check_configuration()
        try:
            await self.store.start()
            await self.keys.start()
        except BaseException:
            await self.store.aclose()  # a refused start leaves no connection open
            raise
        self._started = True

    async def aclose(self) -> None:
        """Close the store's connections."""
        self._started = False
        try:
            await self.store.aclose()
        finally:
            self.passwords.close()

    # --- token endpoint -------------------------------------------------------------------

    async def token(self, request: TokenRequest) -> dict[str, Any]:
        """Answer a token request (RFC 6749 §5.1 body).

        Raises:
            OAuthError: every refusal, with its RFC 6749 §5.2 code.
            StoreUnavailable: the store failed (the HTTP layer answers 503).
        """
        from . import (  # noqa: PLC0415 - these modules import this one
            _client_auth,
            _client_grant,
            _code_grant,
            _exchange,
            _password_grant,
            _refresh,
        )
        from ._config import TOKEN_EXCHANGE  # noqa: PLC0415 - the config imports this module

        grants: dict[str, Grant] = {
            "authorization_code": _code_grant.grant,
            "password": _password_grant.grant,
            "refresh_token": _refresh.grant,
            "client_credentials": _client_grant.grant,
        }
        if self.subject_tokens is not None:
            grants[TOKEN_EXCHANGE] = _exchange.grant
        grant_type = request.form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required", reason="no_grant_type")
        handler = grants.get(grant_type)
        if handler is None or grant_type not in self.config.grant_types:
            raise OAuthError(
                "unsupported_grant_type",
                "This grant type is not supported",
                reason="unsupported_grant_type",
            )
        client = await _client_auth.authenticate(self, request)
        if grant_type not in client.grant_types:
            raise OAuthError(
                "unauthorized_client",
                "This client may not use this grant type",
                reason="grant_not_allowed_for_client",
            )
        return await handler(self, client, request)

    async def revoke(self, request: TokenRequest) -> None:
        """RFC 7009 revocation; unknown tokens are not an error.

        Raises:
            OAuthError: the client did not authenticate, or the request is malformed.
        """
        from . import _client_auth, _revocation  # noqa: PLC0415 - these modules import this one

        client = await _client_auth.authenticate(self, request)
        await _revocation.revoke(self, client, request)

    async def introspect(self, request: TokenRequest) -> dict[str, Any]:
        """RFC 7662 introspection for other services (confidential clients only).

        Raises:
            OAuthError: the client did not authenticate, or is public.
        """
        from . import _client_auth, _introspection  # noqa: PLC0415 - these modules import this one

        client = await _client_auth.authenticate(self, request)
        return await _introspection.introspect(self, client, request)

    # --- shared by the grants ---------------------------------------------------------------

    def grant_scopes(self, requested: str | None, allowed: Iterable[str]) -> frozenset[str]:
        """Scopes to issue: requested ∩ allowed (all allowed when none is requested).

        Raises:
            OAuthError: ``invalid_scope`` for a malformed or unknown scope, or
                when nothing requested is allowed.
        """
        allowed_set = frozenset(allowed) & frozenset(self.config.scopes)
        if requested is None:
            return allowed_set
        wanted = frozenset(name for name in requested.split(" ") if name)
        if not wanted:
            return allowed_set
        if not wanted <= frozenset(self.config.scopes):
            raise OAuthError("invalid_scope", "Unknown scope requested", reason="unknown_scope")
        granted = wanted & allowed_set
        if not granted:
            raise OAuthError(
                "invalid_scope",
                "None of the requested scopes is allowed",
                reason="scope_not_allowed",
            )
        return granted

    def grant_audiences(self, resource: str | None) -> tuple[str, ...]:
        """The ``aud`` for an RFC 8707 ``resource`` parameter (one value; the default without).

        Raises:
            OAuthError: ``invalid_target`` for a resource this issuer does not serve.
        """
        if resource is None or resource == "":
            return (self.config.audience,)
        if resource not in self.config.resources:
            raise OAuthError("invalid_target", "Unknown resource", reason="unknown_resource")
        return (resource,)

    def mint_access_token(
        self,
        *,
        subject: str,
        client_id: str,
        scopes: Iterable[str],
        audiences: tuple[str, ...],
        auth_time: float | None = None,
        extra: Mapping[str, Any] | None = None,
        jti: str | None = None,
        lifetime: float | None = None,
    ) -> tuple[str, int]:
        """Sign an RFC 9068 access token; return it and its lifetime in seconds.

        Claims: ``iss``, ``sub``, ``aud`` (a string for one audience), ``exp``,
        ``iat``, ``jti`` (random unless given: the code grant derives it from
        the code, so that a replay of the code can revoke the token),
        ``client_id``, ``scope`` (sorted, space-separated), ``auth_time`` when
        known, then ``extra`` (never overriding those: delegated tokens put
        ``act`` and ``did`` there).

        The lifetime is ``access_token_ttl``, or ``lifetime`` seconds when
        shorter (whole seconds, rounded down: ``exp`` is never later than now
        plus ``lifetime``).
        """
        now = int(self.clock())
        ttl = int(self.config.access_token_ttl)
        if lifetime is not None:
            ttl = max(0, min(ttl, int(lifetime)))
        claims: dict[str, Any] = dict(extra) if extra else {}
        claims.update(
            iss=self.config.issuer,
            sub=subject,
            aud=audiences[0] if len(audiences) == 1 else list(audiences),
            exp=now + ttl,
            iat=now,
            jti=jti or secrets.token_urlsafe(16),
            client_id=client_id,
            scope=" ".join(sorted(scopes)),
        )
        if auth_time is not None:
            claims["auth_time"] = int(auth_time)
        return self.keys.sign(claims, typ="at+jwt"), ttl

    def token_response(
        self, access_token: str, expires_in: int, scopes: Iterable[str], refresh_token: str | None
    ) -> dict[str, Any]:
        """The RFC 6749 §5.1 success body."""
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": " ".join(sorted(scopes)),
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return body

    # --- published metadata -----------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 authorization server metadata document."""
        from ._config import TOKEN_EXCHANGE  # noqa: PLC0415 - the config imports this module

        config = self.config
        offered = set(config.grant_types)
        if self.subject_tokens is None:
            offered.discard(TOKEN_EXCHANGE)  # answered only once a resolver is set
        if not self.authorization_endpoint:
            offered.discard("authorization_code")  # no endpoint hands out codes
        document: dict[str, Any] = {"issuer": config.issuer}
        if "authorization_code" in offered:
            document["authorization_endpoint"] = config.endpoint("authorize")
        document.update(
            {
                "token_endpoint": config.endpoint("token"),
                "jwks_uri": config.endpoint("jwks"),
                "revocation_endpoint": config.endpoint("revoke"),
                "introspection_endpoint": config.endpoint("introspect"),
                "scopes_supported": sorted(config.scopes),
                "response_types_supported": ["code"] if "authorization_code" in offered else [],
                "grant_types_supported": sorted(offered),
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                    "private_key_jwt",
                    "none",
                ],
                "token_endpoint_auth_signing_alg_values_supported": [
                    "ES256",
                    "RS256",
                    "PS256",
                    "EdDSA",
                ],
                "revocation_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                    "private_key_jwt",
                    "none",
                ],
                "introspection_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                    "private_key_jwt",
                ],
            }
        )
        if "authorization_code" in offered:
            document.update(
                {
                    "response_modes_supported": ["query"],
                    "code_challenge_methods_supported": ["S256"],
                    "authorization_response_iss_parameter_supported": True,
                }
            )
        return document


def store_unavailable(exc: StoreUnavailable) -> OAuthError:
    """The OAuth answer while the store is down: 503 ``temporarily_unavailable``."""
    return OAuthError(
        "temporarily_unavailable",
        "The authorization server is temporarily unavailable",
        reason=f"store_unavailable:{exc.reason}",
        status=503,
        retry_after=exc.retry_after or 5.0,
    )
