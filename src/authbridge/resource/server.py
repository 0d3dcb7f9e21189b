"""The resource server: route a bearer token to its verifier, cache verified tokens."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from .._clock import Clock, system_clock
from .._http import ClientSource, HttpClientHolder
from .._httpx import AsyncTransport
from .._shared import SharedTasks
from ..errors import ConfigurationError, InvalidToken, ProviderUnavailable
from ..jose import parse_compact
from ..metadata import describe_unavailable
from ._limits import (
    DEFAULT_MAX_CHECKS_PER_SECOND,
    DEFAULT_MAX_CONCURRENT_CHECKS,
    CheckLimit,
    OutboundBudget,
)
from .base import ChecksRevocation, Provider, RoutesByIssuerTemplate, Source
from .principal import Principal

logger = logging.getLogger("authbridge.resource")

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

MAX_CACHE_TTL = 300.0
"""Upper bound on how long a verified token is served from cache."""


# A cached outcome: (principal or None, cache_until, source, marker, refusal or None).
# A plain tuple: built on every first sight, read on every repeat.
_Entry = tuple[Principal | None, float, Source, object, InvalidToken | None]


@runtime_checkable
class _ChecksFormat(Protocol):
    """A source that can refuse, locally, tokens not in its provider's documented format."""

    def check_format(self, token: str) -> None:
        """Raise `InvalidToken` for a token its provider cannot have issued."""
        ...


class ResourceServer:
    """Validates bearer tokens from the configured providers. Free of FastAPI.

    Routing is deterministic (see `authbridge.resource.base`): a prefixed
    opaque token goes to the provider declaring that prefix; a JWS to the one
    provider whose issuer equals its ``iss``; any other token to the first
    provider accepting unprefixed opaque tokens. A token naming an unknown
    issuer, or of a kind no provider accepts, is refused without any request.

    Results are cached (``cache_size`` entries, FIFO) under the SHA-256 of the
    exact token, so another spelling of a token is a different entry and gets
    full validation. An entry is served only before the token's ``exp`` (and
    at most `MAX_CACHE_TTL` (300 s), or the provider's shorter TTL for opaque
    tokens), and only while the provider's key set is the one that verified
    it. Concurrent first requests with the same opaque token share one call
    to its provider; inactive opaque tokens are remembered briefly.

    Opaque tokens are bounded in the work they cause. A token first passes the
    local checks: RFC 6750 syntax, then its provider's documented format
    where there is one (GitHub's checksum, ...; see each provider's
    ``check_token_format``). Only then is the provider asked, and each source
    has at most its ``max_concurrent_checks`` calls (16 by default) in flight
    and starts at most ``max_checks_per_second`` (100 by default); all sources
    together have at most 64 in flight (below the outbound connection pool's
    100, so key-set fetches always find a connection). A check beyond a bound
    is refused at once with `ProviderUnavailable` (503, with ``retry_after``):
    never queued. A flood of distinct made-up tokens therefore costs the app
    and the provider a bounded amount of work and leaves JWT and cached
    requests their latency. Requests sharing one call count once.

    Args:
        providers: The token sources whose tokens are accepted.
        transport: Outbound HTTP transport for tests: the test kit's
            `FakeIssuer.transport`, an `httpx.MockTransport`, an
            `httpx2.MockTransport`, or any transport of either library. It makes
            its own connections: no proxy or CA setting applies to it.
        clock: Time source, POSIX seconds.
        cache_size: Verification cache capacity; 0 disables it (and coalescing).
        http_timeout: Bound on each outbound request, in seconds.
        proxy: Send every outbound request through this HTTP proxy, e.g.
            `"http://proxy.example.org:3128"` (credentials allowed, never logged:
            `"http://user:password@proxy.example.org:3128"`). Overrides the environment.
        trust_env: Read the proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
            `NO_PROXY`, either case; loopback hosts always go direct) and
            `SSL_CERT_FILE` / `SSL_CERT_DIR` (the CA certificates to trust, e.g. with
            a corporate root) from the environment. `.netrc` is never read.

    Raises:
        ConfigurationError: on an inconsistent configuration; also for `proxy`
            together with `transport`, a proxy URL that is not an http(s) URL, or an
            `SSL_CERT_FILE` / `SSL_CERT_DIR` that does not exist.
    """

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        transport: AsyncTransport | None = None,
        clock: Clock = system_clock,
        cache_size: int = 10_000,
        http_timeout: float = 5.0,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        if not providers:
            raise ConfigurationError("at_least_one_provider_required")
        if cache_size < 0:
            raise ConfigurationError("cache_size_negative")
        self._http = HttpClientHolder(transport, proxy=proxy, trust_env=trust_env)
        self._clock = clock
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        self._asking: SharedTasks[Principal] = SharedTasks()
        self._providers = tuple(providers)
        self._by_name: dict[str, Source] = {}
        self._by_issuer: dict[str, Source] = {}
        prefixes: dict[str, Source] = {}
        self._unprefixed: Source | None = None
        for provider in providers:
            if provider.name in self._by_name:
                raise ConfigurationError("duplicate_provider_name", provider=provider.name)
            source = provider.bind(self._http.session, clock, timeout=http_timeout)
            self._by_name[provider.name] = source
            for issuer in source.jwt_issuers:
                if issuer in self._by_issuer:
                    raise ConfigurationError("duplicate_issuer", provider=provider.name)
                self._by_issuer[issuer] = source
            for prefix in source.opaque_prefixes:
                if any(prefix.startswith(p) or p.startswith(prefix) for p in prefixes):
                    # Overlapping prefixes would make routing depend on order.
                    raise ConfigurationError("overlapping_token_prefixes", provider=provider.name)
                prefixes[prefix] = source
            if source.accepts_unprefixed:
                if self._unprefixed is None:
                    self._unprefixed = source
                else:
                    logger.warning(
                        "%s accepts unprefixed opaque tokens but will receive none: %s, "
                        "declared first, gets them (give it token prefixes instead)",
                        source.name,
                        self._unprefixed.name,
                    )
        self._prefixes = tuple(prefixes.items())
        self._templated = tuple(
            s for s in self._by_name.values() if isinstance(s, RoutesByIssuerTemplate)
        )
        self._max_bytes = max(s.max_token_bytes for s in self._by_name.values())
        budget = OutboundBudget()
        self._limits: dict[str, CheckLimit] = {
            name: CheckLimit(
                name,
                getattr(source, "max_concurrent_checks", DEFAULT_MAX_CONCURRENT_CHECKS),
                getattr(source, "max_checks_per_second", DEFAULT_MAX_CHECKS_PER_SECOND),
                budget,
            )
            for name, source in self._by_name.items()
        }
        self._format_checks: dict[str, Callable[[str], None]] = {
            name: source.check_format
            for name, source in self._by_name.items()
            if isinstance(source, _ChecksFormat)
        }

    @property
    def providers(self) -> tuple[Provider, ...]:
        """The configured providers, in order."""
        return self._providers

    @property
    def cached_tokens(self) -> int:
        """How many verified tokens are cached right now."""
        return len(self._cache)

    @property
    def http(self) -> ClientSource:
        """The outbound HTTP client source (transport, proxy, CAs) of this server.

        Other roles of the same app (the login client) send their requests
        through it, so one configuration applies to every outbound call.
        """
        return self._http.session

    def bound(self, name: str) -> Any:
        """The runtime state (metadata, keys, ...) of the provider called ``name``."""
        return self._by_name[name]

    async def __aenter__(self) -> ResourceServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self, *, warm_up: bool = True) -> None:
        """Open the outbound HTTP client and (optionally) load every provider's keys.

        A provider that cannot be loaded is logged at WARNING, not fatal: the
        app starts anyway and retries lazily. The log line says plainly what
        is wrong: "unavailable" (unreachable, timed out) or the answer that
        cannot be used (HTTP status, not JSON, no ``jwks_uri``, an issuer
        mismatch with both spellings and the fix, ...).
        """
        self._http.open()
        if warm_up:
            results = await asyncio.gather(
                *(b.warm_up() for b in self._by_name.values()), return_exceptions=True
            )
            for source, result in zip(self._by_name.values(), results, strict=True):
                if isinstance(result, ProviderUnavailable):
                    text, network = describe_unavailable(result)
                    logger.warning(
                        "Provider %s %s at start-up: %s [%s]; %s",
                        source.name,
                        "unavailable" if network else "not usable",
                        text,
                        result.reason,
                        "will retry on demand"
                        if network
                        else "its tokens get 503 until this is fixed (retried on demand)",
                    )
                elif isinstance(result, BaseException):
                    raise result

    async def aclose(self) -> None:
        """Close the outbound HTTP client."""
        await self._http.aclose()

    def route(self, token: str) -> Source | None:
        """The one source an opaque (non-JWS) token goes to, or ``None``.

        JWS tokens are routed by their ``iss`` in [verify][authbridge.ResourceServer.verify].
        """
        for prefix, source in self._prefixes:
            if token.startswith(prefix):
                return source
        return None

    async def verify(self, token: str) -> Principal:
        """Validate a bearer token and return its [Principal][authbridge.Principal].

        Raises:
            InvalidToken: the token is not acceptable (reason in ``.reason``).
            ProviderUnavailable: its provider could not be asked (fail closed).
        """
        if len(token) > self._max_bytes:
            raise InvalidToken("token_too_large")
        cache = self._cache
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        hit = cache.get(digest)
        if hit is not None:
            cached, until, owner, marker, refusal = hit
            if self._clock() < until and (marker is None or owner.cache_marker is marker):
                if cached is not None:
                    return cached
                assert refusal is not None  # noqa: S101
                raise InvalidToken(refusal.reason, provider=refusal.provider)
            cache.pop(digest, None)

        source = self.route(token) if self._prefixes else None
        if source is None:
            dots = token.count(".")
            if dots == 2:
                # A JWS: parse_compact admits base64url and dots only.
                parsed = parse_compact(token, max_bytes=self._max_bytes)
                issuer = parsed.claims.get("iss")
                source = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
                if source is None and self._templated and isinstance(issuer, str):
                    source = next((s for s in self._templated if s.matches_issuer(issuer)), None)
                if source is None:
                    raise InvalidToken("unknown_issuer")
                # Keys at hand: no coroutine round trip on the common path.
                verified = source.verify_jwt_cached(parsed, len(token))
                if verified is None:
                    verified = await source.verify_jwt(parsed, len(token))
                principal = verified.principal
                if self._cache_size:
                    until = min(verified.cache_until, self._clock() + MAX_CACHE_TTL)
                    if len(cache) >= self._cache_size:
                        cache.popitem(last=False)
                    cache[digest] = (principal, until, source, verified.marker, None)
                return principal
            if dots == 4:
                raise InvalidToken("jwe_not_accepted")
            source = self._unprefixed
            if source is None:
                raise InvalidToken("unknown_token_format")
        if _B64TOKEN.fullmatch(token) is None:
            # RFC 6750 b64token syntax: nothing else may reach a provider (or a header).
            raise InvalidToken("malformed_token")
        check_format = self._format_checks.get(source.name)
        if check_format is not None:
            check_format(token)  # the provider's documented format, locally
        return await self._verify_opaque(source, token, digest)

    def _limit(self, source: Source) -> CheckLimit:
        """The concurrency limit of ``source``'s provider calls.

        Take a slot with ``acquire()`` (raises `ProviderUnavailable` at once when
        full) before an outbound call that a request can cause, and give it back
        with ``release(started)`` when the call is over.
        """
        return self._limits[source.name]

    async def _verify_opaque(self, source: Source, token: str, digest: bytes) -> Principal:
        limit = self._limit(source)
        if not self._cache_size:
            began = limit.acquire()
            try:
                return (await source.verify_opaque(token)).principal
            finally:
                limit.release(began)
        # Concurrent requests with this very token share one provider call (and
        # one slot), which a cancelled request does not cancel for the others.
        # A slot is taken before the call's task exists: when every slot is
        # taken the request is refused without any task or call.
        started = None if self._asking.running(digest) else limit.acquire()
        return await self._asking.run(
            lambda: self._ask(source, token, digest, limit, started), key=digest
        )

    async def _ask(
        self,
        source: Source,
        token: str,
        digest: bytes,
        limit: CheckLimit,
        started: float | None,
    ) -> Principal:
        try:
            verified = await source.verify_opaque(token)
        except InvalidToken as exc:
            ttl: float = getattr(source, "negative_cache_ttl", 0.0)
            if ttl > 0 and self._cache_size:
                self._remember(digest, source, None, self._clock() + ttl, None, refusal=exc)
            raise
        finally:
            if started is not None:  # always, as the task only starts with a slot taken
                limit.release(started)
        self._remember(digest, source, verified.principal, verified.cache_until, verified.marker)
        return verified.principal

    def _remember(
        self,
        digest: bytes,
        source: Source,
        principal: Principal | None,
        cache_until: float,
        marker: object,
        *,
        refusal: InvalidToken | None = None,
    ) -> None:
        cache_until = min(cache_until, self._clock() + MAX_CACHE_TTL)
        cache = self._cache
        if len(cache) >= self._cache_size:
            cache.popitem(last=False)
        cache[digest] = (principal, cache_until, source, marker, refusal)

    async def verify_active(self, token: str) -> Principal:
        """Validate a bearer token, and for a JWT also ask its provider whether it was revoked.

        [verify][authbridge.ResourceServer.verify] checks JWTs locally: a JWT
        revoked at its provider stays valid there until its ``exp``. For
        routes where that is too long, this method validates the token fully
        first, then asks the provider's RFC 7662 introspection endpoint about
        that JWT. The answer is cached for the provider's
        ``Introspection.cache_ttl`` (never past ``exp``), apart from the
        token's normal cache entry; concurrent requests with the same token
        share one call. A revocation is thus seen within ``cache_ttl``.

        Opaque tokens and tokens checked with a provider's API were already
        checked online by ``verify``: the result is the same. A JWT from a
        provider without ``introspection`` configured, or whose server cannot
        introspect JWTs (oidc-provider cannot), is refused: this method never
        falls back to the local check alone.

        Raises:
            InvalidToken: as ``verify``; also ``revoked`` (the provider says
                the token is no longer active) and ``revocation_check_unavailable``.
            ProviderUnavailable: as ``verify``, or the introspection endpoint
                could not be asked (fail closed).
        """
        principal = await self.verify(token)
        if token.count(".") != 2 or (self._prefixes and self.route(token) is not None):
            return principal  # an opaque token: verify asked its provider
        owner = self._by_name[principal.provider]
        if not isinstance(owner, ChecksRevocation):
            raise InvalidToken("revocation_check_unavailable", provider=owner.name)
        limit = self._limit(owner)
        if not self._cache_size:
            began = limit.acquire()
            try:
                await owner.check_active(token, principal)
            finally:
                limit.release(began)
            return principal
        key = b"active:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        hit = self._cache.get(key)
        if hit is not None:
            _, until, _, _, refusal = hit
            if self._clock() < until:
                if refusal is not None:
                    raise InvalidToken(
                        refusal.reason, provider=refusal.provider, detail=refusal.detail
                    )
                return principal
            self._cache.pop(key, None)
        # As for opaque tokens: one shared call per token, a slot taken before its task.
        started = None if self._asking.running(key) else limit.acquire()
        await self._asking.run(
            lambda: self._ask_active(owner, token, principal, key, limit=limit, started=started),
            key=key,
        )
        return principal

    async def _ask_active(
        self,
        owner: Source,
        token: str,
        principal: Principal,
        key: bytes,
        *,
        limit: CheckLimit,
        started: float | None,
    ) -> Principal:
        assert isinstance(owner, ChecksRevocation)  # noqa: S101 - checked by verify_active
        try:
            cache_until = await owner.check_active(token, principal)
        except InvalidToken as exc:
            ttl: float = getattr(owner, "negative_cache_ttl", 0.0)
            if ttl > 0:
                self._remember(key, owner, None, self._clock() + ttl, None, refusal=exc)
            raise
        finally:
            if started is not None:
                limit.release(started)
        self._remember(key, owner, principal, cache_until, None)
        return principal
