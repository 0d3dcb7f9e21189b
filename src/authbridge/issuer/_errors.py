"""The token endpoint's errors: RFC 6749 §5.2 codes, never a secret in them."""

from __future__ import annotations

from typing import ClassVar

from ..errors import AuthBridgeError


class OAuthError(AuthBridgeError):
    """An OAuth 2.0 error answer of the token, revocation or introspection endpoint.

    ``error`` is the RFC 6749 §5.2 / RFC 7009 / RFC 8707 / RFC 8693 code
    (``invalid_request``, ``invalid_client``, ``invalid_grant``,
    ``unauthorized_client``, ``unsupported_grant_type``, ``invalid_scope``,
    ``invalid_target``, ``unsupported_token_type``, ``slow_down``,
    ``temporarily_unavailable``); ``description`` is a short, fixed English
    sentence for the client (never a value from the request); ``reason`` a
    stable code for logs.

    Attributes:
        error: The OAuth error code sent to the client.
        description: ``error_description`` (fixed text, no request values).
        status: HTTP status: 400, 401 (``invalid_client`` when the client
            tried to authenticate), 429 (rate limited) or 503.
        basic_challenge: Answer with ``WWW-Authenticate: Basic`` (the client
            used HTTP Basic authentication, RFC 6749 §5.2).
    """

    code: ClassVar[str] = "oauth_error"

    def __init__(
        self,
        error: str,
        description: str | None = None,
        *,
        reason: str | None = None,
        status: int = 400,
        retry_after: float | None = None,
        basic_challenge: bool = False,
    ) -> None:
        self.error = error
        self.description = description
        self.status = status
        self.basic_challenge = basic_challenge
        super().__init__(reason or error, retry_after=retry_after)

    def body(self) -> dict[str, str]:
        """The JSON error body (RFC 6749 §5.2)."""
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body
