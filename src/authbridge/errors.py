"""One error root for everything authbridge raises, with stable machine codes.

No HTTP types live here: :mod:`authbridge.fastapi` maps these errors to responses
(401 / 403 / 503 with an RFC 6750 ``WWW-Authenticate`` challenge).

Every error carries a stable ``code`` (for programs) and a ``reason`` (for logs,
never containing a token, key, secret or claim value). ``str(error)`` is always
safe to log.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AuthBridgeError",
    "ConfigurationError",
    "InsufficientScope",
    "InvalidToken",
    "MissingToken",
    "ProviderUnavailable",
]


class AuthBridgeError(Exception):
    """Root of every error raised by authbridge.

    Attributes:
        code: Stable machine-readable code (``"invalid_token"``, ...).
        reason: Short, safe-to-log explanation of why (``"expired"``,
            ``"audience_mismatch"``, ...). Never contains token material.
        provider: Name of the provider involved, when known.
        claim: Name of the claim involved, when the error is about one.
    """

    code: ClassVar[str] = "authbridge_error"

    def __init__(
        self,
        reason: str,
        *,
        provider: str | None = None,
        claim: str | None = None,
    ) -> None:
        self.reason = reason
        self.provider = provider
        self.claim = claim
        parts = [f"{self.code}: {reason}"]
        if claim is not None:
            parts.append(f"claim={claim}")
        if provider is not None:
            parts.append(f"provider={provider}")
        super().__init__(" ".join(parts))


class ConfigurationError(AuthBridgeError, ValueError):
    """The configuration is invalid; raised at construction time, never per request."""

    code = "configuration_error"


class MissingToken(AuthBridgeError):
    """No credentials were presented (maps to a bare ``Bearer`` challenge)."""

    code = "missing_token"


class InvalidToken(AuthBridgeError):
    """The presented token is not acceptable (malformed, bad signature, expired, ...).

    The ``reason`` says why for logs; clients only ever see a generic message.
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
    """

    code = "provider_unavailable"
