"""Authorization-server metadata: OpenID Connect Discovery 1.0 with RFC 8414 fallback.

The fetched document's ``issuer`` must equal the configured issuer exactly
(OIDC Discovery §4.3, RFC 8414 §3.3); otherwise the provider is unusable and
every token routed to it is refused (fail closed).

Some servers publish a member (e.g. ``introspection_endpoint``) only in their
RFC 8414 document, not in their OpenID configuration: `MetadataCache.endpoint`
then reads it from the RFC 8414 document, which must name the same issuer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from ._clock import Clock
from ._http import DEFAULT_MAX_BYTES, ClientSource, fetch_json
from ._shared import FailureClock, SharedTasks
from .errors import ConfigurationError, ProviderUnavailable

OIDC_SUFFIX = "/.well-known/openid-configuration"
RFC8414_SUFFIX = "/.well-known/oauth-authorization-server"

# The documents named in errors' `detail["document"]` (and in start-up logs).
OPENID_DOCUMENT = "openid-configuration"
RFC8414_DOCUMENT = "oauth-authorization-server"
CONFIGURED_DOCUMENT = "discovery_url"

_ENDPOINTS = frozenset(
    {
        "jwks_uri",
        "authorization_endpoint",
        "token_endpoint",
        "introspection_endpoint",
        "userinfo_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
    }
)


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
    end_session_endpoint: str | None = None
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
    timeout: float = 5.0,
    max_bytes: int = 512 * 1024,
) -> ProviderMetadata:
    """Fetch and check the metadata of ``issuer``.

    Args:
        client: Source of the outbound HTTP client.
        issuer: The configured issuer; the document must name exactly it.
        url: An explicit metadata URL; otherwise OIDC discovery is tried,
            then RFC 8414.
        label: Safe provider name for errors and logs.
        timeout: Bound on each request, in seconds.
        max_bytes: Bound on the size of the document.

    Raises:
        ProviderUnavailable: unreachable, malformed, or naming another issuer
            (``detail`` says which document, and both issuers on a mismatch).
    """
    metadata, _ = await _discover(
        client, issuer, url=url, label=label, timeout=timeout, max_bytes=max_bytes
    )
    return metadata


async def _discover(
    client: ClientSource,
    issuer: str,
    *,
    url: str | None,
    label: str,
    timeout: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[ProviderMetadata, str]:
    """The metadata and the document it came from."""
    oidc, rfc8414 = discovery_urls(issuer)
    candidates = (
        ((url, CONFIGURED_DOCUMENT),)
        if url
        else ((oidc, OPENID_DOCUMENT), (rfc8414, RFC8414_DOCUMENT))
    )
    errors: list[ProviderUnavailable] = []
    for candidate, document in candidates:
        try:
            response = await fetch_json(
                client, candidate, timeout=timeout, max_bytes=max_bytes, provider=label
            )
        except ProviderUnavailable as exc:
            errors.append(exc)
            continue
        # A document naming another issuer is final: no fallback around the mismatch.
        return _metadata(response.body, issuer, label, document), document
    first = errors[0]
    detail: dict[str, Any] = {"document": candidates[0][1]}
    if len(errors) > 1:
        detail[RFC8414_DOCUMENT] = errors[1].reason
    raise ProviderUnavailable(first.reason, provider=label, detail=detail)


def _metadata(doc: dict[str, Any], issuer: str, label: str, document: str) -> ProviderMetadata:
    discovered = doc.get("issuer")
    if discovered != issuer:
        raise ProviderUnavailable(
            "discovery_issuer_mismatch",
            provider=label,
            detail={"configured": issuer, "discovered": discovered, "document": document},
        )
    # Plain http only when the operator configured an http issuer (local setups).
    allow_http = urlsplit(issuer).scheme == "http"
    scopes = doc.get("scopes_supported")
    scopes_supported = (
        tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else ()
    )

    def url(name: str) -> str | None:
        return _url_member(doc, name, allow_http=allow_http, label=label)

    return ProviderMetadata(
        issuer=issuer,
        jwks_uri=url("jwks_uri"),
        authorization_endpoint=url("authorization_endpoint"),
        token_endpoint=url("token_endpoint"),
        introspection_endpoint=url("introspection_endpoint"),
        userinfo_endpoint=url("userinfo_endpoint"),
        revocation_endpoint=url("revocation_endpoint"),
        end_session_endpoint=url("end_session_endpoint"),
        scopes_supported=scopes_supported,
        raw=doc,
    )


class MetadataCache:
    """A provider's metadata, discovered once, with the fetch discipline of the JWKS cache.

    One discovery in flight at a time (concurrent callers share it; a cancelled
    caller does not cancel it for the others); the result kept after success;
    after a failure, callers within ``cooldown`` seconds get
    [ProviderUnavailable][authbridge.ProviderUnavailable] at once (its
    ``retry_after`` says when the next attempt is allowed) instead of another
    request, so a provider that is down is not hammered (nor used to amplify
    traffic).

    A member missing from the OpenID configuration is looked up in the RFC 8414
    document by `endpoint` (same discipline: fetched only when needed, once in
    flight, kept after success, one attempt per ``cooldown`` otherwise).

    The clock is the wall clock: a cooldown ends when it goes back before the
    failure, and never asks to wait longer than ``cooldown``.
    """

    def __init__(
        self,
        client: ClientSource,
        issuer: str,
        *,
        clock: Clock,
        url: str | None = None,
        label: str = "provider",
        timeout: float = 5.0,
        cooldown: float = 30.0,
    ) -> None:
        self._client = client
        self._issuer = issuer
        self._clock = clock
        self._url = url
        self._label = label
        self._timeout = timeout
        self.metadata: ProviderMetadata | None = None
        self._document = ""
        self._discoveries: SharedTasks[ProviderMetadata] = SharedTasks()
        self._failures = FailureClock(clock, cooldown)
        self._rfc8414: ProviderMetadata | None = None
        self._rfc8414_absent = False
        self._rfc8414_fetches: SharedTasks[ProviderMetadata | None] = SharedTasks()
        self._rfc8414_failures = FailureClock(clock, cooldown)

    async def get(self, *, ignore_cooldown: bool = False) -> ProviderMetadata:
        """The metadata, discovering it if needed.

        Args:
            ignore_cooldown: Attempt discovery even within the cooldown of a
                failure: for a caller that enforces its own cooldown around
                this call (the JWKS cache), so that one outage does not cost
                two cooldowns stacked.

        Raises:
            ProviderUnavailable: discovery failed now or within the cooldown.
        """
        metadata = self.metadata
        if metadata is not None:
            return metadata
        if not ignore_cooldown and not self._discoveries.running():
            wait = self._failures.wait(self._clock())
            if wait > 0:
                raise self._failures.refusal(
                    "discovery_recently_failed", provider=self._label, wait=wait
                )
        return await self._discoveries.run(self._discover)

    async def endpoint(self, name: str) -> str | None:
        """The URL member ``name`` (e.g. ``"introspection_endpoint"``) of the metadata.

        When discovery used the issuer's OpenID configuration and it lacks the
        member, the issuer's RFC 8414 document is asked (it must name exactly
        the same issuer). ``None`` when neither document has it (an RFC 8414
        document that does not exist, HTTP 404, is asked again after the cooldown).

        Raises:
            ProviderUnavailable: a document could not be fetched or used, now
                or within the cooldown of a failure.
        """
        if name not in _ENDPOINTS:
            raise ValueError(f"not a metadata endpoint: {name!r}")
        metadata = await self.get()
        value: str | None = getattr(metadata, name)
        if value is not None or self._document != OPENID_DOCUMENT:
            return value
        other = self._rfc8414 or await self._rfc8414_metadata()
        return None if other is None else getattr(other, name)

    async def _discover(self) -> ProviderMetadata:
        try:
            metadata, document = await _discover(
                self._client,
                self._issuer,
                url=self._url,
                label=self._label,
                timeout=self._timeout,
            )
        except ProviderUnavailable as exc:
            retry_after = self._failures.failed(exc)
            raise ProviderUnavailable(
                exc.reason, provider=self._label, detail=exc.detail, retry_after=retry_after
            ) from None
        self._failures.succeeded()
        self._document = document
        self.metadata = metadata
        return metadata

    async def _rfc8414_metadata(self) -> ProviderMetadata | None:
        if not self._rfc8414_fetches.running():
            wait = self._rfc8414_failures.wait(self._clock())
            if wait > 0:
                if self._rfc8414_absent:
                    return None
                raise self._rfc8414_failures.refusal(
                    "rfc8414_metadata_recently_failed", provider=self._label, wait=wait
                )
        return await self._rfc8414_fetches.run(self._fetch_rfc8414)

    async def _fetch_rfc8414(self) -> ProviderMetadata | None:
        url = discovery_urls(self._issuer)[1]
        try:
            response = await fetch_json(
                self._client, url, timeout=self._timeout, provider=self._label
            )
            metadata = _metadata(response.body, self._issuer, self._label, RFC8414_DOCUMENT)
        except ProviderUnavailable as exc:
            retry_after = self._rfc8414_failures.failed(exc)
            # Not published: the member is absent (asked again after the cooldown).
            self._rfc8414_absent = exc.reason in ("http_status:404", "http_status:410")
            if self._rfc8414_absent:
                return None
            raise ProviderUnavailable(
                exc.reason,
                provider=self._label,
                detail={**exc.detail, "document": RFC8414_DOCUMENT},
                retry_after=retry_after,
            ) from None
        self._rfc8414_failures.succeeded()
        self._rfc8414 = metadata
        return metadata


# -- start-up problems, said plainly ---------------------------------------------------------

_DOCUMENTS = {
    OPENID_DOCUMENT: "the OpenID discovery document",
    RFC8414_DOCUMENT: "the RFC 8414 metadata document",
    CONFIGURED_DOCUMENT: "the metadata document at discovery_url",
    "jwks": "the JWKS (jwks_uri)",
}
_NETWORK = frozenset({"timeout", "transport_error"})
_SHOWN_CHARS = 120


def _shown(value: object) -> str:
    """A provider-controlled value for a log line: repr (escapes controls), truncated."""
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        return repr(value[:_SHOWN_CHARS]) + "..."
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def describe_unavailable(error: ProviderUnavailable) -> tuple[str, bool]:
    """An English explanation of why a provider could not be loaded, for logs.

    Returns:
        The explanation, and whether it is a network failure (unreachable or
        timed out) rather than an answer authbridge cannot use.
    """
    code, _, arg = error.reason.partition(":")
    detail = error.detail
    if code == "discovery_issuer_mismatch":
        return _issuer_mismatch(detail.get("configured"), detail.get("discovered")), False
    what = _DOCUMENTS.get(str(detail.get("document")), "the provider")
    answer = _answer(code, arg)
    if answer is None:
        messages = {
            "metadata_without_jwks_uri": "the discovery document has no jwks_uri (set jwks_uri=)",
            "metadata_invalid": f"the discovery document's {arg} is not a valid URL",
            "metadata_insecure_url": f"the discovery document's {arg} is not an https URL",
            "jwks_malformed": "the JWKS is not a JSON Web Key Set",
            "jwks_without_usable_keys": "the JWKS has no usable key (see the warnings above)",
        }
        return messages.get(code, f"{what} could not be used ({error.reason})"), False
    text = f"{what} {answer}"
    fallback = detail.get(RFC8414_DOCUMENT)
    if isinstance(fallback, str):
        code2, _, arg2 = fallback.partition(":")
        text += f", and {_DOCUMENTS[RFC8414_DOCUMENT]} {_answer(code2, arg2) or fallback}"
    if code == "http_status" and arg == "404" and what != _DOCUMENTS["jwks"]:
        text += ": is the issuer exactly right? Otherwise give discovery_url=..."
    return text, code in _NETWORK


def _answer(code: str, arg: str) -> str | None:
    """What a document's fetch got, as a verb phrase (``None`` for other failures)."""
    if code == "timeout":
        return "did not answer in time (timeout)"
    if code == "transport_error":
        if arg.endswith("Timeout"):
            return f"did not answer in time ({arg})"
        return f"is unreachable ({arg})"
    if code == "http_status":
        return f"answered HTTP {arg}"
    if code in ("invalid_json", "json_not_an_object"):
        return "is not a JSON object (an HTML page?)"
    if code == "response_too_large":
        return "is too large"
    if code == "unexpected_content_encoding":
        return "came compressed although identity was asked for"
    return None


def _issuer_mismatch(configured: object, discovered: object) -> str:
    if discovered is None:
        return (
            f"issuer mismatch: configured {configured!r} but the provider's document names "
            "no issuer"
        )
    text = f"issuer mismatch: configured {configured!r} but the provider says {_shown(discovered)}"
    if (
        isinstance(configured, str)
        and isinstance(discovered, str)
        and configured != discovered
        and configured.rstrip("/") == discovered.rstrip("/")
    ):
        return f"{text}: set issuer={discovered!r} (tokens' iss must match exactly)"
    return f"{text}: the configured issuer must be exactly the provider's, as in its tokens' iss"
