"""Social token exchange: the account behind a provider's token (RFC 8693 subject tokens).

A SPA or mobile app that logged in at a provider itself presents that
provider's token to the app's token endpoint and gets the app's own tokens.
`SubjectTokens` decides whose: the resource server verifies the token
(routed by its ``iss`` or prefix, exactly as on the app's routes), the
provider's [ExchangeProvider][authbridge.client.ExchangeProvider] rule says
which identity it proves, only if it was issued to one of the app's own
client ids (token substitution: a Google ID token minted for another site
proves nothing here), and [Accounts][authbridge.client.Accounts] maps the
identity to an account exactly as a browser login would.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import LoginError
from ..resource.principal import Principal
from ..store import UserRecord
from ._accounts import Accounts
from ._base import ExternalIdentity

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"

SUBJECT_TOKEN_TYPES = frozenset({ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE})
"""The ``subject_token_type`` values accepted (RFC 8693 §3)."""

_MAX_HEADER_CHARS = 2048

TokenKind = Literal["access", "id"]

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ID_TOKEN_TYPE",
    "JWT_TOKEN_TYPE",
    "SUBJECT_TOKEN_TYPES",
    "ExchangeProvider",
    "SubjectTokens",
    "token_kind",
]


@runtime_checkable
class ExchangeProvider(Protocol):
    """A provider whose tokens can be exchanged for the app's own (its exchange rule)."""

    @property
    def name(self) -> str:
        """The provider's name (``Principal.provider`` of the tokens it verifies)."""
        ...

    def exchange_identity(self, principal: Principal) -> ExternalIdentity | None:
        """The identity behind a subject token this provider's verifier accepted, or ``None``
        when the token was not issued to one of OUR client ids (token substitution: refuse).

        The identity is keyed exactly as this provider's login keys it (same
        ``issuer`` namespace, same ``subject``), so a person who logged in
        through the browser and a SPA exchanging that provider's token land on
        the same account.
        """
        ...


def token_kind(token: str, claims: Mapping[str, Any]) -> TokenKind | None:
    """Whether a verified token is an access token or an ID token, when it says so.

    Explicit markers first: the JWT header's ``typ`` (``at+jwt``, RFC 9068),
    Cognito's ``token_use``, Keycloak's ``typ`` claim; then claims only ID
    tokens carry (``nonce``, ``at_hash``, ``c_hash``, OIDC Core §2) or only
    access tokens do (``scope``, ``scp``, ``client_id``). ``None``: it cannot
    be told.
    """
    header_typ = _header_typ(token)
    if header_typ in ("at+jwt", "application/at+jwt"):
        return "access"
    token_use = claims.get("token_use")
    if token_use in ("access", "id"):
        return "access" if token_use == "access" else "id"
    typ = claims.get("typ")
    if typ == "ID":
        return "id"
    if typ == "Bearer":
        return "access"
    if any(name in claims for name in ("nonce", "at_hash", "c_hash")):
        return "id"
    if any(name in claims for name in ("scope", "scp", "client_id")):
        return "access"
    return None


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and all(token.split("."))


def _header_typ(token: str) -> str | None:
    if not _looks_like_jwt(token):
        return None
    segment = token.split(".", 1)[0]
    if len(segment) > _MAX_HEADER_CHARS:
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        return None
    typ = header.get("typ") if isinstance(header, dict) else None
    return typ.lower() if isinstance(typ, str) else None


class SubjectTokens:
    """Resolves RFC 8693 subject tokens from providers to local accounts.

    Args:
        verify: The resource server's token check (``AuthBridge.verify``):
            routes by ``iss`` or prefix and returns the verified principal.
        providers: The exchange rule of every provider whose tokens may be
            exchanged, by name (``Principal.provider``).
        accounts: Identities → accounts (the browser login's rules).
        own: Names of the app's own token sources (its issuer's ``name``):
            its own tokens are never exchanged here (delegation is another
            matter).

    Example:
        ```python
        tokens = SubjectTokens(auth.verify, {"google": google}, accounts, own=("app",))
        user, provider = await tokens.resolve(token, ID_TOKEN_TYPE)
        ```
    """

    def __init__(
        self,
        verify: Callable[[str], Awaitable[Principal]],
        providers: Mapping[str, ExchangeProvider],
        accounts: Accounts,
        *,
        own: Collection[str] = (),
    ) -> None:
        self._verify = verify
        self._providers = dict(providers)
        self._accounts = accounts
        self._own = frozenset(own)

    def __repr__(self) -> str:
        return f"SubjectTokens(providers={sorted(self._providers)!r})"

    async def resolve(self, subject_token: str, subject_token_type: str) -> tuple[UserRecord, str]:
        """The account behind a provider's token, and the provider's name.

        Raises:
            LoginError: ``unsupported_subject_token_type``,
                ``subject_token_type_mismatch`` (an ID token presented as an
                access token or the reverse, when that can be told),
                ``own_token_not_exchangeable``, ``unknown_provider`` (no
                exchange rule for the token's provider),
                ``delegated_subject_token`` (the token carries ``act``: someone
                acts for the user, it is not the user's own),
                ``token_not_issued_to_us``, and those of
                [Accounts.resolve][authbridge.client.Accounts.resolve].
            InvalidToken: the token does not verify.
            ProviderUnavailable: its provider cannot be asked now.
            StoreUnavailable: the store is down.
        """
        if subject_token_type not in SUBJECT_TOKEN_TYPES:
            raise LoginError("unsupported_subject_token_type")
        if subject_token_type == ID_TOKEN_TYPE and not _looks_like_jwt(subject_token):
            raise LoginError("subject_token_type_mismatch")  # ID tokens are always JWTs
        principal = await self._verify(subject_token)
        name = principal.provider
        if name in self._own:
            raise LoginError("own_token_not_exchangeable", provider=name)
        provider = self._providers.get(name)
        if provider is None:
            raise LoginError("unknown_provider", provider=name)
        if principal.actors:
            # An on-behalf-of token (RFC 8693 ``act``) is not the user's own: exchanged
            # here it would come back as the user's token, without its actor.
            raise LoginError("delegated_subject_token", provider=name)
        kind = token_kind(subject_token, principal.claims)
        if (subject_token_type == ACCESS_TOKEN_TYPE and kind == "id") or (
            subject_token_type == ID_TOKEN_TYPE and kind == "access"
        ):
            raise LoginError("subject_token_type_mismatch", provider=name)
        identity = provider.exchange_identity(principal)
        if identity is None:
            raise LoginError("token_not_issued_to_us", provider=name)
        return await self._accounts.resolve(identity), name
