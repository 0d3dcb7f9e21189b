"""One error root for everything authbridge raises, with stable machine codes.

No HTTP types live here: `authbridge.fastapi` maps these errors to responses
(401 / 403 / 503 with an RFC 6750 ``WWW-Authenticate`` challenge).

Every error carries a stable ``code`` (for programs) and a ``reason`` (for logs,
never containing a token, key, secret or claim value). ``str(error)`` is always
safe to log.

Refusals may also carry ``detail``: the expected and actual values that led to
them (``iss``, ``aud``, ``alg``, ``kid``...). Those can come from the token, so
they are kept out of ``str(error)``; they are shown to clients only when the
development switch ``AuthBridge(explain_refusals=True)`` is on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

__all__ = [
    "AuthBridgeError",
    "ConfigurationError",
    "InsufficientScope",
    "InvalidToken",
    "LoginError",
    "MissingToken",
    "ProviderUnavailable",
    "StoreUnavailable",
]

_DETAIL_CHARS = 200
"""Longest diagnostic value kept (values may come from a token)."""


def _bounded(value: Any) -> Any:
    """A JSON-safe, bounded copy of a diagnostic value."""
    if isinstance(value, str):
        text = value[:_DETAIL_CHARS]
        # Lone surrogates cannot be encoded in a response or a log line.
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, list | tuple | frozenset | set):
        items = sorted(value, key=str) if isinstance(value, frozenset | set) else list(value)
        return [_bounded(item) for item in items[:10]]
    return _bounded(repr(value))


class AuthBridgeError(Exception):
    """Root of every error raised by authbridge.

    Attributes:
        code: Stable machine-readable code (``"invalid_token"``, ...).
        reason: Short, safe-to-log explanation of why (``"expired"``,
            ``"audience_mismatch"``, ...). Never contains token material.
        provider: Name of the provider involved, when known.
        claim: Name of the claim involved, when the error is about one.
        detail: Expected-versus-actual values behind the refusal, e.g.
            ``{"expected": ["https://api"], "actual": ["https://other"]}``;
            bounded in size, never secrets, but possibly token-supplied: not
            part of ``str(error)``.
        retry_after: For unavailability, seconds until a retry can succeed
            (``None`` when unknown).
    """

    code: ClassVar[str] = "authbridge_error"

    def __init__(
        self,
        reason: str,
        *,
        provider: str | None = None,
        claim: str | None = None,
        detail: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.reason = reason
        self.provider = provider
        self.claim = claim
        self.detail: dict[str, Any] = (
            {str(k): _bounded(v) for k, v in detail.items()} if detail else {}
        )
        self.retry_after = retry_after
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [f"{self.code}: {self.reason}"]
        if self.claim is not None:
            parts.append(f"claim={self.claim}")
        if self.provider is not None:
            parts.append(f"provider={self.provider}")
        return " ".join(parts)

    def for_provider(self, provider: str) -> Self:
        """This error attributed to ``provider`` (detail and retry hint kept)."""
        if self.provider == provider:
            return self
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.provider = provider
        Exception.__init__(clone, clone._text())
        return clone


# English explanations, with the fix, of every configuration problem, by reason code
# (a reason "code:extra" is looked up by "code").
_CONFIG_MESSAGES: dict[str, str] = {
    "negative_cache_ttl": "cache_ttl and negative_cache_ttl must be 0 or more seconds",
    "issuer_required": "an issuer URL is required, e.g. issuer='https://auth.example.org/'",
    "issuer_must_be_a_string": "the issuer must be a string URL",
    "empty_token_prefix": "token prefixes must be non-empty strings, e.g. ['ory_at_']",
    "unsupported_algorithms": (
        "supported algorithms are RS256/384/512, PS256/384/512, ES256/384/512, EdDSA, "
        "Ed25519, Ed448 and (with hmac_secret) HS256/384/512"
    ),
    "unsupported_introspection_auth_method": (
        "auth_method must be 'client_secret_basic' or 'client_secret_post'"
    ),
    "unknown_token_type": "token_type must be 'strict', 'lenient' or 'id_token'",
    "swagger_login_needs_an_oidc_provider": (
        "SwaggerLogin(provider=...) must name an OIDCProvider configured in this AuthBridge"
    ),
    "resource_must_be_an_http_url": (
        "resource must be this API's https URL, e.g. 'https://api.example.org'"
    ),
    "provider_name_required": "every provider needs a short, non-empty name, e.g. 'hydra'",
    "overlapping_token_prefixes": (
        "two providers declare token prefixes where one starts with the other; make them "
        "distinct so routing does not depend on order"
    ),
    "max_token_bytes_too_small": "max_token_bytes must be at least 256",
    "leeway_out_of_range": "leeway must be between 0 and 300 seconds (30 by default)",
    "invalid_jwks_cache_settings": (
        "need 0 <= jwks_cooldown <= jwks_max_age and jwks_max_stale >= 0 (seconds)"
    ),
    "introspection_needs_client_credentials": (
        "Introspection needs the client_id and client_secret the API authenticates with"
    ),
    "hmac_secret_too_short": "hmac_secret must be at least 32 bytes long",
    "hmac_secret_needs_hs_algorithms": "with hmac_secret, algorithms may only be HS256/384/512",
    "hmac_secret_excludes_jwks": (
        "hmac_secret cannot be combined with jwks_uri or discovery_url: a shared secret "
        "replaces the key set"
    ),
    "hmac_and_asymmetric_algorithms_mixed": (
        "do not mix HS* with RS*/PS*/ES*/EdDSA in algorithms (algorithm confusion); use "
        "two providers"
    ),
    "hmac_algorithms_need_hmac_secret": "HS256/384/512 are accepted only with hmac_secret=...",
    "github_app_check_needs_id_and_secret": (
        "give both client_id and client_secret of your GitHub OAuth app, or neither"
    ),
    "facebook_needs_app_id_and_secret": "FacebookProvider needs your app_id and app_secret",
    "empty_audience_or_client_id": (
        "audience and client_ids values must be non-empty strings (is an environment "
        "variable unset?)"
    ),
    "duplicate_provider_name": "provider names must be unique within one AuthBridge",
    "duplicate_issuer": "two providers have the same issuer (or alias); configure it once",
    "create_the_app_with_docs_url_none": (
        "create the app with FastAPI(docs_url=None, redoc_url=None) so install() can serve "
        "Swagger UI at /docs"
    ),
    "client_id_claims_required": "client_id_claims must name at least one claim",
    "cache_size_negative": "cache_size must be 0 (no cache) or more",
    "audience_or_client_ids_required": (
        "give audience='https://your-api' (recommended) or client_ids=[...] (for providers "
        "whose access tokens carry no aud, such as Cognito)"
    ),
    "at_least_one_provider_required": "configure at least one provider",
    "algorithms_required": "algorithms must name at least one JWS algorithm",
}


class ConfigurationError(AuthBridgeError, ValueError):
    """The configuration is invalid; raised at construction time, never per request.

    ``str(error)`` says what is wrong and how to fix it, in English, after the
    stable ``reason`` code.

    Attributes:
        message: The English explanation (with valid values, ranges or
            minimum lengths).
    """

    code = "configuration_error"

    def __init__(
        self,
        reason: str,
        *,
        provider: str | None = None,
        claim: str | None = None,
        message: str | None = None,
    ) -> None:
        self.message = message or _CONFIG_MESSAGES.get(reason.split(":", 1)[0], "")
        super().__init__(reason, provider=provider, claim=claim)

    def _text(self) -> str:
        text = super()._text()
        return f"{text}: {self.message}" if self.message else text


class MissingToken(AuthBridgeError):
    """No credentials were presented (maps to a bare ``Bearer`` challenge)."""

    code = "missing_token"


class InvalidToken(AuthBridgeError):
    """The presented token is not acceptable (malformed, bad signature, expired, ...).

    The ``reason`` says why for logs; clients only ever see a generic message
    (unless the development switch ``explain_refusals`` is on).
    """

    code = "invalid_token"


class InsufficientScope(AuthBridgeError):
    """The token is valid but lacks scopes (or roles) the operation needs.

    Attributes:
        required: The scopes the operation requires.
    """

    code = "insufficient_scope"

    def __init__(self, required: tuple[str, ...], *, provider: str | None = None) -> None:
        self.required = required
        super().__init__("missing_scopes", provider=provider)


class ProviderUnavailable(AuthBridgeError):
    """The provider needed to decide could not be reached or answered garbage.

    authbridge fails closed: the request is refused (503), never allowed.
    ``retry_after`` says, when known, how many seconds until the next attempt
    can be made (it becomes the 503's ``Retry-After``).
    """

    code = "provider_unavailable"


class StoreUnavailable(AuthBridgeError):
    """The store (database) could not be reached or failed mid-operation.

    Routes that need the store answer 503 (with ``Retry-After`` when
    ``retry_after`` is known); validation of JWT access tokens whose keys are
    loaded keeps working. The reason never contains a connection URL or
    password.
    """

    code = "store_unavailable"


class LoginError(AuthBridgeError):
    """A login could not complete: a tampered, replayed, expired or refused callback.

    The HTTP layer answers 400 with an escaped page (or, for the app's own
    authorize endpoint, an RFC 6749 §4.1.2.1 error redirect where that is
    safe). ``reason`` is a stable code for logs (``state_unknown``,
    ``browser_mismatch``, ``nonce_mismatch``, ``provider_error``, ...); it never
    holds a code, token, verifier, secret or cookie. ``detail`` may hold the
    provider's own ``error`` code (bounded), shown only escaped.
    """

    code = "login_failed"
