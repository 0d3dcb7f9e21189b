"""Authorization-server metadata: OpenID Connect Discovery 1.0 with RFC 8414 fallback.

The fetched document's ``issuer`` must equal the configured issuer exactly
(OIDC Discovery §4.3, RFC 8414 §3.3); otherwise the provider is unusable and
every token routed to it is refused (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._clock import Clock
from .._http import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, ClientSource, fetch_json
from .._shared import SharedTasks
from ..errors import ConfigurationError, ProviderUnavailable

OIDC_SUFFIX = "/.well-known/openid-configuration"
RFC8414_SUFFIX = "/.well-known/oauth-authorization-server"


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of a provider's metadata authbridge uses, plus the raw document."""

    issuer: str
    jwks_uri: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    introspection_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    revocation_endpoint: str | None = None
    scopes_supported: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def check_issuer_url(issuer: object, *, provider: str | None = None) -> None:
    """Refuse, at construction time, an issuer that cannot be an issuer identifier.

    RFC 8414 §2 / OIDC Discovery §3: an ``http(s)`` URL with a host, without query
    or fragment. A ``/.well-known/...`` suffix is the metadata URL, not the issuer
    (give that one as ``discovery_url``). The value is otherwise used exactly as
    given: trailing slashes matter.

    Raises:
        ConfigurationError: with the fix in its message.
    """
    if not isinstance(issuer, str) or not issuer:
        raise ConfigurationError("issuer_required", provider=provider)
    try:
        parts = urlsplit(issuer)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(
            "issuer_not_an_http_url",
            provider=provider,
            message=f"the issuer must be an https:// URL with a host, got {issuer!r}",
        )
    if parts.query or parts.fragment or issuer.endswith(("?", "#")):
        raise ConfigurationError(
            "issuer_with_query",
            provider=provider,
            message=f"an issuer has no query or fragment, got {issuer!r}",
        )
    if "/.well-known/" in parts.path:
        base = issuer[: issuer.index("/.well-known/")]
        raise ConfigurationError(
            "issuer_is_a_metadata_url",
            provider=provider,
            message=(
                f"{issuer!r} is a metadata URL, not an issuer: use issuer={base!r} (or "
                f"{base + '/'!r}: exactly the token's iss) and, if the metadata lives "
                "elsewhere, discovery_url=..."
            ),
        )
    if any(c.isspace() for c in issuer):
        raise ConfigurationError(
            "issuer_with_whitespace",
            provider=provider,
            message=f"the issuer contains whitespace: {issuer!r}",
        )


def discovery_urls(issuer: str) -> tuple[str, str]:
    """The OIDC discovery URL and the RFC 8414 metadata URL for ``issuer``.

    OIDC appends the well-known suffix to the issuer; RFC 8414 inserts it
    between the host and the issuer's path.
    """
    oidc = issuer.rstrip("/") + OIDC_SUFFIX
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = f"{parts.scheme}://{parts.netloc}{RFC8414_SUFFIX}{path}"
    return oidc, rfc8414


def _url_member(doc: dict[str, Any], name: str, *, allow_http: bool, label: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProviderUnavailable(f"metadata_invalid:{name}", provider=label)
    try:
        scheme = urlsplit(value).scheme
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL):
        raise ProviderUnavailable(f"metadata_invalid:{name}", provider=label) from None
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise ProviderUnavailable(f"metadata_insecure_url:{name}", provider=label)
    return value


async def discover(
    client: ClientSource,
    issuer: str,
    *,
    url: str | None = None,
    label: str = "provider",
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ProviderMetadata:
    """Fetch and check the metadata of ``issuer``.

    Args:
        client: Source of the outbound HTTP client.
        issuer: The configured issuer; the document must name exactly it.
        url: An explicit metadata URL; otherwise OIDC discovery is tried,
            then RFC 8414.
        label: Safe provider name for errors and logs.

    Raises:
        ProviderUnavailable: unreachable, malformed, or naming another issuer.
    """
    candidates = (url,) if url else discovery_urls(issuer)
    first_error: ProviderUnavailable | None = None
    for candidate in candidates:
        try:
            response = await fetch_json(
                client, candidate, timeout=timeout, max_bytes=max_bytes, provider=label
            )
        except ProviderUnavailable as exc:
            first_error = first_error or exc
            continue
        return _metadata(response.body, issuer, label)
    assert first_error is not None  # noqa: S101 - candidates is never empty
    raise first_error


def _metadata(doc: dict[str, Any], issuer: str, label: str) -> ProviderMetadata:
    if doc.get("issuer") != issuer:
        raise ProviderUnavailable("discovery_issuer_mismatch", provider=label)
    # Plain http only when the operator configured an http issuer (local setups).
    allow_http = urlsplit(issuer).scheme == "http"
    scopes = doc.get("scopes_supported")
    scopes_supported = (
        tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else ()
    )
    return ProviderMetadata(
        issuer=issuer,
        jwks_uri=_url_member(doc, "jwks_uri", allow_http=allow_http, label=label),
        authorization_endpoint=_url_member(
            doc, "authorization_endpoint", allow_http=allow_http, label=label
        ),
        token_endpoint=_url_member(doc, "token_endpoint", allow_http=allow_http, label=label),
        introspection_endpoint=_url_member(
            doc, "introspection_endpoint", allow_http=allow_http, label=label
        ),
        userinfo_endpoint=_url_member(doc, "userinfo_endpoint", allow_http=allow_http, label=label),
        revocation_endpoint=_url_member(
            doc, "revocation_endpoint", allow_http=allow_http, label=label
        ),
        scopes_supported=scopes_supported,
        raw=doc,
    )


class MetadataCache:
    """A provider's metadata, discovered once, with the fetch discipline of the JWKS cache.

    One discovery in flight at a time (concurrent callers share it; a cancelled
    caller does not cancel it for the others); the result kept after success;
    after a failure, callers within ``cooldown`` seconds get
    :class:`ProviderUnavailable` at once instead of another request, so a
    provider that is down is not hammered (nor used to amplify traffic).
    """

    def __init__(
        self,
        client: ClientSource,
        issuer: str,
        *,
        clock: Clock,
        url: str | None = None,
        label: str = "provider",
        timeout: float = DEFAULT_TIMEOUT,
        cooldown: float = 30.0,
    ) -> None:
        self._client = client
        self._issuer = issuer
        self._clock = clock
        self._url = url
        self._label = label
        self._timeout = timeout
        self._cooldown = cooldown
        self.metadata: ProviderMetadata | None = None
        self._discoveries: SharedTasks[ProviderMetadata] = SharedTasks()
        self._failed_at = float("-inf")

    async def get(self) -> ProviderMetadata:
        """The metadata, discovering it if needed.

        Raises:
            ProviderUnavailable: discovery failed now or within the cooldown.
        """
        if self.metadata is not None:
            return self.metadata
        if not self._discoveries.running() and self._clock() - self._failed_at < self._cooldown:
            raise ProviderUnavailable("discovery_recently_failed", provider=self._label)
        return await self._discoveries.run(self._discover)

    async def _discover(self) -> ProviderMetadata:
        try:
            metadata = await discover(
                self._client,
                self._issuer,
                url=self._url,
                label=self._label,
                timeout=self._timeout,
            )
        except ProviderUnavailable:
            self._failed_at = self._clock()
            raise
        self.metadata = metadata
        return metadata
