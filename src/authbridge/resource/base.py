"""What every token source looks like to the resource server.

A *provider* (``OIDCProvider``, ``GitHubProvider``, ...) is configuration. Bound
to one app (``Provider.bind``), it becomes a ``Source``: the runtime
that verifies the tokens routed to it. The resource server routes each token to
exactly one source:

1. a token starting with a source's declared opaque-token prefix goes to it;
2. a token with exactly two dots is a JWS: it goes to the source whose issuer
   equals its ``iss`` (JWE, with four dots, is refused);
3. any other token goes to the first source, in declared order, that accepts
   unprefixed opaque tokens, if there is one.

A token is therefore never sent to a source that did not declare it accepts
that kind of token, and never to more than one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from .._clock import Clock
from .._http import ClientSource
from ..errors import InvalidToken
from ..jose import ParsedJWT
from .principal import Principal


class Verified(NamedTuple):
    """A verification result and how long it may be served from cache."""

    principal: Principal
    cache_until: float
    """POSIX time after which the result must not be reused."""
    marker: object = None
    """Reuse is allowed only while ``Source.cache_marker`` is this object
    (``None``: the result does not depend on the source's state, e.g. keys)."""


class Source(Protocol):
    """A provider's runtime inside one app."""

    @property
    def name(self) -> str:
        """The provider's name."""
        ...

    @property
    def jwt_issuers(self) -> tuple[str, ...]:
        """The ``iss`` values of JWTs this source verifies."""
        ...

    @property
    def opaque_prefixes(self) -> tuple[str, ...]:
        """Prefixes of opaque tokens this source verifies."""
        ...

    @property
    def accepts_unprefixed(self) -> bool:
        """Whether opaque tokens without a known prefix may be sent to it."""
        ...

    @property
    def cache_marker(self) -> object:
        """Changes identity when cached results must no longer be served."""
        ...

    @property
    def max_token_bytes(self) -> int:
        """Tokens longer than this are refused before any work."""
        ...

    def verify_jwt_cached(self, parsed: ParsedJWT, token_length: int) -> Verified | None:
        """Verify a JWS now if its keys are at hand; ``None`` means "use ``verify_jwt``"."""
        ...

    async def verify_jwt(self, parsed: ParsedJWT, token_length: int) -> Verified:
        """Verify a JWS whose ``iss`` is one of ``jwt_issuers``."""
        ...

    async def verify_opaque(self, token: str) -> Verified:
        """Verify an opaque token routed here."""
        ...

    async def warm_up(self) -> None:
        """Load what can be loaded ahead of the first request."""
        ...


@runtime_checkable
class ChecksRevocation(Protocol):
    """A source that can ask its provider whether a JWT it verified was revoked."""

    async def check_active(self, token: str, principal: Principal) -> float:
        """Ask the provider; return until when a positive answer may be reused.

        Raises:
            InvalidToken: ``revoked``, or ``revocation_check_unavailable``.
            ProviderUnavailable: the provider could not be asked.
        """
        ...


@runtime_checkable
class RoutesByIssuerTemplate(Protocol):
    """A source whose JWT issuers follow a template (Entra's multi-tenant ``{tenantid}``).

    The resource server routes a JWT to it when its ``iss`` is not among the
    exact issuers of any source and this says it fits; verification then
    decides (the template is routing only).
    """

    def matches_issuer(self, iss: str) -> bool:
        """Whether ``iss`` has the shape of one of this source's issuers."""
        ...


class Provider(Protocol):
    """Configuration of a token source (see the classes exported by authbridge)."""

    @property
    def name(self) -> str:
        """Short name, reported as ``Principal.provider``."""
        ...

    def bind(self, client: ClientSource, clock: Clock, *, timeout: float) -> Source:
        """Create this provider's runtime for one app."""
        ...


class NoJWT:
    """Mixin for sources that verify no JWTs."""

    jwt_issuers: tuple[str, ...] = ()

    def verify_jwt_cached(self, parsed: ParsedJWT, token_length: int) -> Verified | None:
        """Never called: ``jwt_issuers`` is empty."""
        raise InvalidToken("unknown_issuer")

    async def verify_jwt(self, parsed: ParsedJWT, token_length: int) -> Verified:
        """Never called: ``jwt_issuers`` is empty."""
        raise InvalidToken("unknown_issuer")


class NoOpaque:
    """Mixin for sources that verify no opaque tokens."""

    opaque_prefixes: tuple[str, ...] = ()
    accepts_unprefixed = False

    async def verify_opaque(self, token: str) -> Verified:
        """Never called: no opaque token is routed here."""
        raise InvalidToken("unknown_token_format")


def as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """A configuration value that is one string or several, as a tuple.

    A bare string is one item, never its characters (``"ghp_"`` is one prefix).
    """
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), separated by U+0020 only.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def _plain_scope(value: str) -> bool:
    """Whether ``value`` has only scope-token characters and spaces (the common case).

    Printable ASCII excludes every separator ``str.split()`` knows but the space
    (tabs, newlines, U+001C-U+001F, NBSP, ideographic space...); ``"`` and ``\\``
    are the two printable characters scope tokens may not contain.
    """
    return value.isascii() and value.isprintable() and '"' not in value and "\\" not in value


def scope_tokens(value: Any) -> frozenset[str]:
    """The scopes a claim grants, by RFC 6749 §3.3.

    A string is split on U+0020 only (runs of spaces are tolerated); an array
    holds one scope per element. A token with a character outside the scope
    syntax grants nothing: ``"openid\\titems:read"`` is one invalid token, not
    ``items:read``. Anything else grants nothing.
    """
    if isinstance(value, str):
        if _plain_scope(value):
            # Only U+0020 can separate here, so split() is exactly split(" ") minus empties.
            return frozenset(value.split())
        return frozenset(t for t in value.split(" ") if _SCOPE_TOKEN.fullmatch(t))
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str) and _SCOPE_TOKEN.fullmatch(v))
    return frozenset()


def strings(value: Any) -> list[str]:
    """The strings in a claim: a string or an array of strings (scopes: ``scope_tokens``)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def lookup(claims: Mapping[str, Any], path: str | tuple[str, ...]) -> Any:
    """Read a claim by name, dotted path, or tuple of path segments."""
    if isinstance(path, str):
        if path in claims:
            return claims[path]
        path = tuple(path.split("."))
    node: Any = claims
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node
