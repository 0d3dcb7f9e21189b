"""The app's own access tokens as a source of the resource server: verified with no HTTP.

The keys are the issuer's own (`KeyManager.keyset`, loaded from the store);
the claim checks and the [Principal][authbridge.Principal] are those of an
[OIDCProvider][authbridge.OIDCProvider] for the issuer with the strict RFC
9068 policy, so the app's own tokens are judged exactly as another service
judges them through the published JWKS. A token whose ``kid`` is unknown
reloads the keys from the store once (another instance may have rotated),
at most every few seconds; nothing is ever fetched over HTTP.

The issuer's refresh tokens and codes carry recognisable prefixes: presented
as bearer tokens they are refused here at once, without a store lookup.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from typing import TYPE_CHECKING

from .._shared import SharedTasks, within
from ..errors import InvalidToken, ProviderUnavailable, StoreUnavailable
from ..jose import KeySet, ParsedJWT, check_claims, check_header
from ..resource.base import Verified
from ..resource.principal import Principal
from ..resource.provider import JWTProvider
from ._secrets import CODE_PREFIX, REFRESH_TOKEN_PREFIX

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime

UNKNOWN_KID_COOLDOWN = 5.0
"""Seconds a ``kid`` that a reload did not find is refused without another reload."""

MIN_RELOAD_INTERVAL = 1.0
"""Seconds between two key reloads caused by tokens with an unknown ``kid``: a request
for a ``kid`` not looked for yet waits for the next reload instead of being refused."""

MISSED_KIDS = 1024
"""How many ``kid`` values that reloads did not find are remembered (oldest forgotten)."""

ACCEPTED_ALGORITHMS = ("ES256", "RS256", "EdDSA")

# RFC 9068 §2.2: every one of these is in an access token of ours.
_REQUIRED_CLAIMS = ("sub", "iat", "jti", "client_id")


class OwnTokenSource:
    """The resource server's view of the app's own access tokens.

    Implements ``authbridge.resource.base.Source`` and ``ChecksRevocation``.

    Args:
        runtime: The issuer runtime (its keys, store, clock and configuration).
    """

    accepts_unprefixed = False
    max_concurrent_checks = 16
    """Revocation lookups (``active_principal``) in flight at once: store queries."""
    max_checks_per_second = math.inf
    """No rate bound on revocation lookups: they go to the app's own store."""
    negative_cache_ttl = 30.0
    """How long a revoked token's refusal is remembered (a revocation is final)."""

    def __init__(self, runtime: IssuerRuntime) -> None:
        config = runtime.config
        self.runtime = runtime
        self.provider = JWTProvider(
            config.name,
            issuer=config.issuer,
            # Only the app's own audience: a token asked for another resource (RFC 8707)
            # belongs to that API, and accepting it here would let that API replay it.
            audience=config.audience,
            token_type="strict",
            algorithms=list(ACCEPTED_ALGORITHMS),
            required_claims=_REQUIRED_CLAIMS,
        )
        self._policy = self.provider.policy
        self.name = config.name
        self.jwt_issuers: tuple[str, ...] = (config.issuer,)
        self.opaque_prefixes: tuple[str, ...] = (REFRESH_TOKEN_PREFIX, CODE_PREFIX)
        self.max_token_bytes = self._policy.max_token_bytes
        self._reloading: SharedTasks[None] = SharedTasks()
        self._reloaded_at: float | None = None
        self._reloads = 0
        self._missed: OrderedDict[str, float] = OrderedDict()
        self._failed: StoreUnavailable | None = None

    def __repr__(self) -> str:
        return f"OwnTokenSource({self.name!r}, issuer={self.jwt_issuers[0]!r})"

    @property
    def cache_marker(self) -> object:
        """Cached results are served only while the key set that verified them is current."""
        return self.runtime.keys.keyset

    async def warm_up(self) -> None:
        """Nothing to do: the issuer runtime's start loads the keys."""

    # --- opaque credentials of ours: never bearer tokens -----------------------------------

    def check_format(self, token: str) -> None:
        """Refuse the issuer's refresh tokens and codes before any other work.

        Raises:
            InvalidToken: ``refresh_token_not_a_bearer_token`` or
                ``code_not_a_bearer_token``.
        """
        if token.startswith(REFRESH_TOKEN_PREFIX):
            raise InvalidToken("refresh_token_not_a_bearer_token", provider=self.name)
        raise InvalidToken("code_not_a_bearer_token", provider=self.name)

    async def verify_opaque(self, token: str) -> Verified:
        """Refuse: the app's opaque credentials are not access tokens (see `check_format`).

        Raises:
            InvalidToken: always.
        """
        self.check_format(token)
        raise InvalidToken("unknown_token_format", provider=self.name)  # pragma: no cover

    # --- JWT access tokens ------------------------------------------------------------------

    def verify_jwt_cached(self, parsed: ParsedJWT, token_length: int) -> Verified | None:
        """Verify with the keys in memory; ``None`` if the ``kid`` is unknown to them.

        Raises:
            InvalidToken: the token is not acceptable.
        """
        try:
            alg, kid = self._header(parsed, token_length)
            keyset = self.runtime.keys.keyset
            if not keyset.has_kid(kid):
                return None
            return self._finish(parsed, alg, kid, keyset)
        except InvalidToken as exc:
            raise exc.for_provider(self.name) from None

    async def verify_jwt(self, parsed: ParsedJWT, token_length: int) -> Verified:
        """Verify, reloading the keys from the store once for an unknown ``kid``.

        Raises:
            InvalidToken: the token is not acceptable (``unknown_key`` when
                its ``kid`` is not among the issuer's keys even after a reload).
            ProviderUnavailable: the keys could not be reloaded (the store is down).
        """
        verified = self.verify_jwt_cached(parsed, token_length)
        if verified is not None:
            return verified
        try:
            alg, kid = self._header(parsed, token_length)
            reloaded = await self._reload_keys(kid)
            keyset = self.runtime.keys.keyset
            if not keyset.has_kid(kid):
                if reloaded:
                    self._remember_missed(kid)
                raise InvalidToken("unknown_key", detail={"kid": kid})
            return self._finish(parsed, alg, kid, keyset)
        except InvalidToken as exc:
            raise exc.for_provider(self.name) from None

    def _header(self, parsed: ParsedJWT, token_length: int) -> tuple[str, str]:
        if token_length > self._policy.max_token_bytes:
            raise InvalidToken("token_too_large")
        alg, kid = check_header(parsed.header, self._policy)
        if kid is None:
            raise InvalidToken("unknown_key")  # every token of ours names its key
        if kid in self.runtime.keys.withdrawn:
            raise InvalidToken("key_revoked", detail={"kid": kid})
        return alg, kid

    def _finish(self, parsed: ParsedJWT, alg: str, kid: str, keyset: KeySet) -> Verified:
        candidates = keyset.candidates(kid, alg)
        if not candidates:
            raise InvalidToken("unknown_key", detail={"kid": kid, "alg": alg})
        for key in candidates[:4]:
            if key.verify(alg, parsed.signing_input, parsed.signature):
                break
        else:
            raise InvalidToken("bad_signature")
        claims = parsed.claims
        check_claims(claims, self._policy, self.runtime.clock())
        return Verified(self.provider.principal_from(claims), float(claims["exp"]), keyset)

    async def _reload_keys(self, kid: str) -> bool:
        """Reload the keys from the store for a token naming ``kid``, which they lack.

        One shared reload at a time, at most every `MIN_RELOAD_INTERVAL` seconds:
        a request arriving sooner waits for the next one rather than being refused
        (another instance may have added the key a moment ago, after an unrelated
        reload). A ``kid`` that a reload did not find is refused without another
        reload for `UNKNOWN_KID_COOLDOWN` seconds, so made-up tokens cost at most
        one store query per interval and a wait of at most one interval.

        Returns:
            Whether a reload answered this request (``False``: the ``kid`` was
            looked for a moment ago).

        Raises:
            ProviderUnavailable: the reload failed (now, or within the interval).
        """
        now = self.runtime.clock()
        missed = self._missed.get(kid)
        if missed is not None and within(now, missed, UNKNOWN_KID_COOLDOWN):
            if self._failed is not None:
                raise self._unavailable(self._failed, UNKNOWN_KID_COOLDOWN - (now - missed))
            return False  # looked for a moment ago: unknown
        if self._reloading.running():
            await self._reloading.run(self._reload_once)
            return True
        last = self._reloaded_at
        if last is not None and within(now, last, MIN_RELOAD_INTERVAL):
            if self._failed is not None:
                raise self._unavailable(self._failed, MIN_RELOAD_INTERVAL - (now - last))
            reloads = self._reloads
            await asyncio.sleep(max(0.0, MIN_RELOAD_INTERVAL - (now - last)))
            if self._reloads != reloads:
                # A reload started while this request waited: its answer stands.
                if self._reloading.running():
                    await self._reloading.run(self._reload_once)
                elif self._failed is not None:
                    raise self._unavailable(self._failed, MIN_RELOAD_INTERVAL)
                return True
            if self._reloading.running():
                await self._reloading.run(self._reload_once)
                return True
        self._reloads += 1
        self._reloaded_at = self.runtime.clock()
        await self._reloading.run(self._reload_once)
        return True

    def _remember_missed(self, kid: str) -> None:
        missed = self._missed
        missed.pop(kid, None)
        missed[kid] = self.runtime.clock()
        while len(missed) > MISSED_KIDS:
            missed.popitem(last=False)

    async def _reload_once(self) -> None:
        try:
            await self.runtime.keys.refresh()
        except StoreUnavailable as exc:
            self._failed = exc
            raise self._unavailable(exc, MIN_RELOAD_INTERVAL) from None
        self._failed = None

    def _unavailable(self, exc: StoreUnavailable, retry_after: float) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"store_unavailable:{exc.reason}",
            provider=self.name,
            retry_after=max(1.0, math.ceil(retry_after)),
        )

    # --- revocation -------------------------------------------------------------------------

    async def check_active(self, token: str, principal: Principal) -> float:
        """Whether an access token of ours, already verified, was revoked (RFC 7009).

        The revocation endpoint records ``"at:" + jti`` in the store's replay
        cache until the token's expiry; this looks it up. A delegated token
        (its ``did`` claim names the delegation it was issued under) is also
        refused once its delegation is revoked (``"dg:" + did``, recorded by
        [Delegations.revoke][authbridge.issuer.Delegations.revoke]): one more
        lookup, for delegated tokens only. The answer is not reused (the
        returned time is now): a revocation counts from the next request on,
        on every instance.

        Raises:
            InvalidToken: ``revoked``.
            ProviderUnavailable: the store is down (fail closed: 503).
        """
        now = self.runtime.clock()
        jti = principal.token_id
        if not jti:
            raise InvalidToken("revoked", provider=self.name)  # not one of ours: no jti
        did = principal.claims.get("did")
        if did is not None and (not isinstance(did, str) or not did):
            raise InvalidToken("revoked", provider=self.name)  # never minted so
        replay = self.runtime.store.replay
        try:
            revoked = await replay.seen("at:" + jti, now=now) or (
                did is not None and await replay.seen("dg:" + did, now=now)
            )
        except StoreUnavailable as exc:
            raise ProviderUnavailable(
                f"store_unavailable:{exc.reason}",
                provider=self.name,
                retry_after=exc.retry_after or 5.0,
            ) from None
        if revoked:
            raise InvalidToken("revoked", provider=self.name)
        return now
