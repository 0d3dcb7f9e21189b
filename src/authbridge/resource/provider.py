"""Configuration of a JWT-issuing provider, and its per-app runtime (keys, discovery)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .._clock import Clock
from .._http import ClientSource, RawResponse, request
from ..errors import ConfigurationError, InvalidToken, ProviderUnavailable
from ..jose import (
    JWTPolicy,
    KeySet,
    ParsedJWT,
    RemoteJWKS,
    VerificationKey,
    check_claims,
    check_header,
)
from ..jose._jwt import TokenType, client_of
from ..jose.keys import HMAC_ALGS, key_from_secret
from ..metadata import MetadataCache, ProviderMetadata, check_issuer_url
from .base import Verified, as_tuple, lookup, scope_tokens, strings
from .introspection import (
    Introspection,
    check_active_answer,
    check_introspection,
    introspection_unavailable,
    jwt_not_introspectable,
)
from .principal import Principal, read_only_claims

DEFAULT_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
_ALWAYS_REQUIRED = frozenset({"iss", "exp"})

MAX_ACTORS = 8
"""Most actors in a token's ``act`` chain (RFC 8693 delegation) accepted by a resource server.

The app's own issuer mints chains of at most 4; a deeper one from any provider
refuses the token (``invalid_claim_type``, claim ``act``).
"""

_NO_ACT: Any = object()  # `act` absent (distinct from a JSON null, which is malformed)


class JWTProvider:
    """An issuer whose JWT access tokens the app accepts: the resource-server part of a provider.

    [OIDCProvider][authbridge.OIDCProvider] adds logging in to it; this base is
    what the resource server needs (keys, claims, introspection).

    Nothing is fetched here: discovery and keys load lazily on first use or in
    the app's lifespan, so the app starts even when the provider is down.

    Args:
        name: Short name, reported as ``Principal.provider`` and in logs.
        issuer: The exact ``iss`` value (no normalisation: mind trailing slashes).
        audience: Accepted ``aud`` value(s); a token must carry at least one.
            May be omitted only together with ``client_ids`` (e.g. Cognito
            access tokens, which carry ``client_id`` instead of ``aud``).
        client_ids: If given, the token's client (see ``client_id_claims``)
            must be one of these.
        client_id_claims: Claims naming the client, first present wins:
            ``client_id`` then ``azp`` by default; Okta uses ``cid``, Entra v1
            ``appid``.
        jwks_uri: Use this JWKS URL instead of the one from discovery.
        discovery_url: Fetch metadata from here instead of the well-known URLs.
        algorithms: Accepted JWS algorithms (asymmetric by default).
        hmac_secret: A shared secret (≥ 32 bytes): then only HS256/384/512 are
            accepted and no keys are fetched.
        token_type: ``"strict"`` (RFC 9068 ``typ: at+jwt`` only), ``"lenient"``
            (also ``JWT`` or no ``typ``, as many providers send) or
            ``"id_token"`` (OpenID Connect ID tokens, e.g. Google sign-in).
        leeway: Tolerated clock skew in seconds (at most 300).
        required_claims: Claims that must be present besides ``iss``, ``exp``
            (and ``aud`` whenever an audience is configured).
        roles_claims: Claim paths to read roles from (see [authbridge.roles][authbridge.roles]):
            a claim name, a dotted path, or a tuple of path segments.
        claim_values: Claims that must carry exactly these values, e.g.
            ``{"token_use": "access"}`` for Cognito access tokens.
        scope_claims: Claims read as granted scopes: strings of scope tokens
            separated by spaces (U+0020 only, RFC 6749 §3.3) or arrays of
            strings (``scope`` and ``scp`` by default). A scope token with a
            character outside the RFC's syntax grants nothing.
        max_token_bytes: Tokens longer than this are refused before decoding.
        jwks_cooldown: Minimum seconds between two JWKS fetches triggered by
            unknown ``kid`` values or failures.
        jwks_max_age: Upper bound on how long a fetched key set is used before
            it is refreshed (``Cache-Control`` is honoured below it).
        jwks_max_stale: How long past that the last good keys keep working while
            the JWKS endpoint fails.
        introspection: Also accept this provider's opaque access tokens, checked
            with RFC 7662 introspection (see [Introspection][authbridge.Introspection]).
        issuer_aliases: Other exact ``iss`` spellings this provider is known to
            use (Google signs ID tokens as both ``https://accounts.google.com``
            and ``accounts.google.com``). Each is matched exactly, like ``issuer``.
        subject_claims: Claims read as ``Principal.subject``, first present wins
            (``("sub",)`` by default). For a server whose introspection
            answers carry ``username`` instead of ``sub``, use
            ``("sub", "username")``. A subject claim that is present but not a
            non-empty string refuses the token (``invalid_claim_type``).
        space_separated_aud: Read an ``aud`` given as one string as a list of
            audiences separated by spaces (U+0020), for servers that send
            ``"aud": "api-1 api-2"``. Off by default: then that string is one
            audience, which matches no configured one. Applies to JWTs and to
            introspection answers; not allowed with ``token_type="id_token"``.

    Raises:
        ConfigurationError: on an inconsistent configuration.

    Example:
        ```python
        OIDCProvider("auth0", issuer="https://tenant.eu.auth0.com/",
                     audience="https://api.example.org", roles_claims=[roles.AUTH0_PERMISSIONS])
        ```
    """

    def __init__(
        self,
        name: str,
        issuer: str,
        audience: str | Sequence[str] | None = None,
        *,
        client_ids: str | Sequence[str] | None = None,
        client_id_claims: Sequence[str] = ("client_id", "azp"),
        jwks_uri: str | None = None,
        discovery_url: str | None = None,
        algorithms: Sequence[str] | None = None,
        hmac_secret: str | bytes | None = None,
        token_type: TokenType = "lenient",
        leeway: float = 30.0,
        required_claims: Sequence[str] = (),
        roles_claims: Sequence[str | tuple[str, ...]] = (),
        scope_claims: Sequence[str] = ("scope", "scp"),
        claim_values: Mapping[str, str | int | bool] | None = None,
        max_token_bytes: int = 16 * 1024,
        jwks_cooldown: float = 30.0,
        jwks_max_age: float = 3600.0,
        jwks_max_stale: float = 6 * 3600.0,
        introspection: Introspection | None = None,
        issuer_aliases: Sequence[str] = (),
        subject_claims: str | Sequence[str] = ("sub",),
        space_separated_aud: bool = False,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigurationError("provider_name_required")
        check_issuer_url(issuer, provider=name)
        if algorithms is None:
            algorithms = ("HS256",) if hmac_secret is not None else DEFAULT_ALGORITHMS
        algs = frozenset(as_tuple(algorithms))
        if algs & HMAC_ALGS and hmac_secret is None:
            raise ConfigurationError("hmac_algorithms_need_hmac_secret", provider=name)
        if hmac_secret is not None and (jwks_uri is not None or discovery_url is not None):
            raise ConfigurationError("hmac_secret_excludes_jwks", provider=name)
        self.name = name
        self.issuer = issuer
        self.jwks_uri = jwks_uri
        self.discovery_url = discovery_url
        if not 0 <= jwks_cooldown <= jwks_max_age or jwks_max_stale < 0:
            raise ConfigurationError("invalid_jwks_cache_settings", provider=name)
        self.roles_claims = (
            (roles_claims,) if isinstance(roles_claims, str) else tuple(roles_claims)
        )
        self.scope_claims = as_tuple(scope_claims)
        self._plain_scopes = self.scope_claims == ("scope", "scp")
        self.subject_claims = as_tuple(subject_claims)
        if not self.subject_claims or not all(
            isinstance(c, str) and c for c in self.subject_claims
        ):
            raise ConfigurationError(
                "subject_claims_required",
                provider=name,
                message="subject_claims must name at least one claim, e.g. ('sub', 'username')",
            )
        self._sub_only = self.subject_claims == ("sub",)
        if space_separated_aud and token_type == "id_token":
            raise ConfigurationError(
                "space_separated_aud_with_id_token",
                provider=name,
                message=(
                    "space_separated_aud is for access tokens; an ID token's aud is a string "
                    "or an array (OpenID Connect Core §2): drop one of the two settings"
                ),
            )
        self.jwks_cooldown = float(jwks_cooldown)
        self.jwks_max_age = float(jwks_max_age)
        self.jwks_max_stale = float(jwks_max_stale)
        self.introspection = introspection
        try:
            self.policy = JWTPolicy(
                issuer=issuer,
                audiences=frozenset(as_tuple(audience)),
                client_ids=frozenset(as_tuple(client_ids)),
                client_id_claims=as_tuple(client_id_claims),
                claim_values=tuple((claim_values or {}).items()),
                algorithms=algs,
                token_type=token_type,
                leeway=float(leeway),
                required_claims=_ALWAYS_REQUIRED | frozenset(as_tuple(required_claims)),
                max_token_bytes=max_token_bytes,
                issuer_aliases=frozenset(as_tuple(issuer_aliases)),
                space_separated_aud=bool(space_separated_aud),
            )
        except ConfigurationError as exc:
            raise exc.for_provider(name) from None
        self._static_keys = (
            KeySet([key_from_secret(hmac_secret, algorithms=algs)])
            if hmac_secret is not None
            else None
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, issuer={self.issuer!r})"

    def principal_from(self, claims: Mapping[str, Any]) -> Principal:
        """Build the [Principal][authbridge.Principal] for verified ``claims``.

        ``claims`` becomes the principal's (read-only) claims without a deep
        copy: pass a mapping nobody changes afterwards, such as parsed JSON.

        ``act`` (RFC 8693 delegation) becomes ``Principal.actors``.

        Raises:
            InvalidToken: a configured subject claim is present but not a
                non-empty string; an ``act`` claim is malformed (not an
                object, an actor without a string ``sub``, more than
                `MAX_ACTORS` actors): ``invalid_claim_type``.
        """
        if self._plain_scopes and "scp" not in claims:
            scopes = scope_tokens(claims.get("scope"))  # the common case, one claim
        else:
            found: set[str] = set()
            for name in self.scope_claims:
                value = claims.get(name)
                if value is not None:
                    found.update(scope_tokens(value))
            scopes = frozenset(found)
        roles: set[str] = set()
        for path in self.roles_claims:
            roles.update(strings(lookup(claims, path)))
        exp = claims.get("exp")
        client = client_of(claims, self.policy.client_id_claims)
        act = claims.get("act", _NO_ACT)  # one lookup; the chain is read only when present
        return Principal._trusted(
            {
                "provider": self.name,
                "issuer": self.issuer,
                # `sub` was type-checked with the other registered claims.
                "subject": claims.get("sub") if self._sub_only else self._subject(claims),
                "client_id": client,
                "scopes": scopes,
                "roles": frozenset(roles),
                "expires_at": datetime.fromtimestamp(exp, UTC) if exp is not None else None,
                "token_id": claims.get("jti"),
                "actors": () if act is _NO_ACT else self._actors(act),
                # Shared by every request with this token: read-only, at every depth.
                "claims": read_only_claims(claims),
            }
        )

    def _actors(self, act: Any) -> tuple[str, ...]:
        """The ``sub`` of each actor of an RFC 8693 ``act`` claim, the current actor first.

        The outermost ``act`` is the current actor; each nested ``act`` the one
        before it (§4.1). Read with a loop, at most `MAX_ACTORS` deep.

        Raises:
            InvalidToken: ``invalid_claim_type`` (claim ``act``): an ``act``
                that is not an object, an actor without a non-empty string
                ``sub``, or a chain deeper than `MAX_ACTORS`.
        """
        chain: list[str] = []
        while act is not _NO_ACT:
            sub = act.get("sub") if isinstance(act, Mapping) else None
            if not isinstance(sub, str) or not sub or len(chain) == MAX_ACTORS:
                raise InvalidToken("invalid_claim_type", provider=self.name, claim="act")
            chain.append(sub)
            act = act.get("act", _NO_ACT)
        return tuple(chain)

    def _subject(self, claims: Mapping[str, Any]) -> str | None:
        for name in self.subject_claims:
            if name in claims:
                value = claims[name]
                if not isinstance(value, str) or not value:
                    raise InvalidToken("invalid_claim_type", provider=self.name, claim=name)
                return value
        return None

    def bind(self, client: ClientSource, clock: Clock, *, timeout: float = 5.0) -> BoundProvider:
        """Create this provider's runtime for one app (keys cache, metadata)."""
        return BoundProvider(self, client, clock, timeout=timeout)


class BoundProvider:
    """A ``JWTProvider`` inside one app: metadata, key cache, introspection.

    Implements ``authbridge.resource.base.Source``.
    """

    def __init__(
        self, provider: JWTProvider, client: ClientSource, clock: Clock, *, timeout: float
    ) -> None:
        self.provider = provider
        self.name = provider.name
        self.jwt_issuers = (provider.issuer, *sorted(provider.policy.issuer_aliases))
        self.max_token_bytes = provider.policy.max_token_bytes
        introspection = provider.introspection
        self.opaque_prefixes = tuple(introspection.token_prefixes) if introspection else ()
        self.accepts_unprefixed = bool(introspection and introspection.accept_unprefixed)
        self._client = client
        self._clock = clock
        self._timeout = timeout
        self._metadata = MetadataCache(
            client,
            provider.issuer,
            clock=clock,
            url=provider.discovery_url,
            label=provider.name,
            timeout=timeout,
            cooldown=provider.jwks_cooldown,
        )
        self.jwks: RemoteJWKS | None = None
        if provider._static_keys is None:
            self.jwks = RemoteJWKS(
                provider.jwks_uri or self._jwks_uri_from_metadata,
                client=client,
                label=provider.name,
                clock=clock,
                timeout=timeout,
                cooldown=provider.jwks_cooldown,
                max_age=provider.jwks_max_age,
                min_age=min(60.0, provider.jwks_max_age),
                default_age=min(600.0, provider.jwks_max_age),
                max_stale=provider.jwks_max_stale,
            )

    @property
    def keyset(self) -> KeySet | None:
        """The key set currently in use (changes identity on every refresh)."""
        if self.jwks is None:
            return self.provider._static_keys
        return self.jwks.current

    @property
    def cache_marker(self) -> object:
        """Cached JWT results are served only while the verifying key set is current."""
        return self.keyset

    @property
    def negative_cache_ttl(self) -> float:
        """How long an inactive opaque token is remembered."""
        introspection = self.provider.introspection
        return introspection.negative_cache_ttl if introspection else 0.0

    @property
    def max_concurrent_checks(self) -> int:
        """Most introspection calls in flight at once (see `Introspection`)."""
        introspection = self.provider.introspection
        return introspection.max_concurrent_checks if introspection else 16

    @property
    def max_checks_per_second(self) -> float:
        """Most introspection calls started per second (see `Introspection`)."""
        introspection = self.provider.introspection
        return introspection.max_checks_per_second if introspection else 100.0

    @property
    def metadata(self) -> ProviderMetadata | None:
        """The discovered metadata, once loaded."""
        return self._metadata.metadata

    async def load_metadata(self) -> ProviderMetadata:
        """Discover the provider's metadata (once; see ``MetadataCache``)."""
        return await self._metadata.get()

    async def _jwks_uri_from_metadata(self) -> str:
        metadata = await self._metadata.get(ignore_cooldown=True)  # inside the JWKS cooldown
        if metadata.jwks_uri is None:
            raise ProviderUnavailable("metadata_without_jwks_uri", provider=self.provider.name)
        return metadata.jwks_uri

    async def warm_up(self) -> None:
        """Load keys (or metadata) now: called from the app's lifespan; failures are not fatal."""
        if self.jwks is not None:
            await self.jwks.refresh()
        elif self.provider.introspection and not self.provider.introspection.endpoint:
            await self.load_metadata()

    def verify_jwt_cached(self, parsed: ParsedJWT, token_length: int) -> Verified | None:
        """Verify a parsed JWS now if fresh keys can answer; ``None`` if keys must be fetched.

        Raises:
            InvalidToken: the token is not acceptable.
        """
        provider = self.provider
        try:
            alg, kid = self._check_header(parsed, token_length)
            if self.jwks is None:
                keyset = provider._static_keys
                assert keyset is not None  # noqa: S101
                # A configured secret is the one key, whatever `kid` the issuer sends.
                return self._finish(parsed, alg, keyset, keyset.candidates(None, alg))
            found = self.jwks.lookup_cached(kid, alg)
            if found is None:
                return None
            return self._finish(parsed, alg, *found)
        except InvalidToken as exc:
            raise exc.for_provider(provider.name) from None

    async def verify_jwt(self, parsed: ParsedJWT, token_length: int) -> Verified:
        """Verify a parsed JWS routed to this provider by its ``iss`` (fetching keys if needed).

        Raises:
            InvalidToken: the token is not acceptable.
            ProviderUnavailable: keys could not be obtained.
        """
        verified = self.verify_jwt_cached(parsed, token_length)
        if verified is not None:
            return verified
        assert self.jwks is not None  # noqa: S101 - static keys always answer
        try:
            alg, kid = self._check_header(parsed, token_length)
            keyset, candidates = await self.jwks.lookup(kid, alg)
            return self._finish(parsed, alg, keyset, candidates)
        except InvalidToken as exc:
            raise exc.for_provider(self.provider.name) from None

    def _check_header(self, parsed: ParsedJWT, token_length: int) -> tuple[str, str | None]:
        policy = self.provider.policy
        if token_length > policy.max_token_bytes:
            raise InvalidToken("token_too_large")
        return check_header(parsed.header, policy)

    def _finish(
        self,
        parsed: ParsedJWT,
        alg: str,
        keyset: KeySet,
        candidates: tuple[VerificationKey, ...],
    ) -> Verified:
        if not candidates:
            raise InvalidToken("unknown_key")
        # Try at most a few keys: kid-less tokens against a big set must not
        # cost one signature check per key.
        for key in candidates[:4]:
            if key.verify(alg, parsed.signing_input, parsed.signature):
                break
        else:
            raise InvalidToken("bad_signature")
        claims = parsed.claims
        check_claims(claims, self.provider.policy, self._clock())
        return Verified(self.provider.principal_from(claims), float(claims["exp"]), keyset)

    async def verify_opaque(self, token: str) -> Verified:
        """Introspect an opaque token routed here (RFC 7662).

        Raises:
            InvalidToken: inactive or not acceptable here.
            ProviderUnavailable: the endpoint is down, slow, refuses our
                credentials or answers garbage (fail closed).
        """
        introspection = self.provider.introspection
        name = self.provider.name
        if introspection is None:  # routing never sends opaque tokens here then
            raise InvalidToken("unknown_token_format", provider=name)
        if len(token) > self.max_token_bytes:
            raise InvalidToken("token_too_large", provider=name)
        response = await self._introspect(introspection, token)
        if response.status != 200:
            raise introspection_unavailable(response.status, name)
        body = response.json_object(provider=name)
        now = self._clock()
        exp = check_introspection(
            body,
            self.provider.policy,
            now,
            provider=name,
            marker=introspection.access_token_marker,
        )
        cache_until = now + introspection.cache_ttl
        if exp is not None:
            cache_until = min(cache_until, exp)
        return Verified(self.provider.principal_from(body), cache_until, None)

    async def check_active(self, token: str, principal: Principal) -> float:
        """Ask the introspection endpoint whether a JWT verified here is still active.

        For routes that must see revocations before ``exp``. Returns until
        when the answer may be reused: ``Introspection.cache_ttl`` from now,
        never past the token's expiry.

        Raises:
            InvalidToken: ``revoked`` (the server says inactive), or
                ``revocation_check_unavailable``: this provider has no
                introspection configured, or its server cannot introspect JWTs.
            ProviderUnavailable: the endpoint is down, slow, refuses our
                credentials or answers garbage (fail closed).
        """
        introspection = self.provider.introspection
        name = self.provider.name
        if introspection is None:
            raise InvalidToken(
                "revocation_check_unavailable",
                provider=name,
                detail={"needs": "OIDCProvider(introspection=Introspection(...))"},
            )
        response = await self._introspect(introspection, token)
        if response.status != 200:
            if jwt_not_introspectable(response):
                raise InvalidToken(
                    "revocation_check_unavailable",
                    provider=name,
                    detail={"introspection_error": "unsupported_token_type"},
                )
            raise introspection_unavailable(response.status, name)
        check_active_answer(response.json_object(provider=name), provider=name)
        cache_until = self._clock() + introspection.cache_ttl
        if principal.expires_at is not None:
            cache_until = min(cache_until, principal.expires_at.timestamp())
        return cache_until

    async def _introspect(self, introspection: Introspection, token: str) -> RawResponse:
        name = self.provider.name
        endpoint = introspection.endpoint
        if endpoint is None:
            endpoint = await self._metadata.endpoint("introspection_endpoint")
            if endpoint is None:
                raise ProviderUnavailable("metadata_without_introspection_endpoint", provider=name)
        data, basic = introspection.request_parts(token)
        return await request(
            self._client,
            "POST",
            endpoint,
            data=data,
            auth=basic,
            timeout=self._timeout,
            max_bytes=64 * 1024,
            provider=name,
        )
