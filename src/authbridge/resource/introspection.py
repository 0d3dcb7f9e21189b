"""OAuth 2.0 Token Introspection (RFC 7662) for opaque access tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote

from .._http import RawResponse
from ..errors import ConfigurationError, InvalidToken, ProviderUnavailable
from ..jose import JWTPolicy
from ..jose._jwt import _NOT_ACCESS_TYP_CLAIM, client_of, numeric_date
from ._limits import check_limit_settings
from .base import as_tuple

AuthMethod = Literal["client_secret_basic", "client_secret_post"]


@dataclass(frozen=True, slots=True)
class Introspection:
    """How a provider's opaque access tokens are checked, with RFC 7662 introspection.

    Pass it as ``OIDCProvider(..., introspection=Introspection(...))``: the same
    provider then accepts its JWT access tokens (via JWKS) and its opaque ones.

    Args:
        client_id: The client the app authenticates as at the introspection endpoint.
        client_secret: Its secret (sent in HTTP Basic or the POST body, never a URL).
        endpoint: The introspection endpoint; from discovery when omitted.
        auth_method: ``client_secret_basic`` (default) or ``client_secret_post``.
        token_prefixes: Prefixes that mark this provider's opaque tokens
            (e.g. ``("ory_at_",)`` for ORY Hydra 2); such tokens are routed here.
        accept_unprefixed: Whether opaque tokens without a known prefix may be
            sent here (only the first such provider, in declared order, gets them);
            by default only when no ``token_prefixes`` are declared.
        cache_ttl: Longest time an active result is reused (never past ``exp``).
        negative_cache_ttl: How long an inactive result is remembered.
        access_token_marker: Members that, with exactly these values, mark an
            access token in this server's answers, e.g. ``{"token_kind":
            "access"}``. Needed only for a server whose answers carry neither
            ``token_type: Bearer`` nor an ``aud`` you configured: without such
            evidence an active answer is refused (``not_an_access_token``),
            since refresh tokens are often introspected as active too. When
            set, every answer must carry them.
        max_concurrent_checks: Most introspection calls in flight at once.
        max_checks_per_second: Most introspection calls started per second. A
            token needing a call beyond either bound is refused at once with a
            503 (see [ResourceServer][authbridge.ResourceServer]).

    Example:
        ```python
        OIDCProvider("hydra", issuer="https://auth.example.org/", audience="https://api.example.org",
                     introspection=Introspection(client_id="api", client_secret=secret))
        ```
    """

    client_id: str
    client_secret: str = field(repr=False)
    endpoint: str | None = None
    auth_method: AuthMethod = "client_secret_basic"
    token_prefixes: Sequence[str] = ()
    accept_unprefixed: bool | None = None
    cache_ttl: float = 60.0
    negative_cache_ttl: float = 5.0
    access_token_marker: Mapping[str, str | int | bool] | None = None
    max_concurrent_checks: int = 16
    max_checks_per_second: float = 100.0

    def __post_init__(self) -> None:
        # One prefix given as a string is one prefix, not its characters.
        object.__setattr__(self, "token_prefixes", as_tuple(self.token_prefixes))
        if self.accept_unprefixed is None:
            # With prefixes declared, other opaque tokens are not this provider's.
            object.__setattr__(self, "accept_unprefixed", not self.token_prefixes)
        if not self.client_id or not self.client_secret:
            raise ConfigurationError("introspection_needs_client_credentials")
        if self.auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ConfigurationError("unsupported_introspection_auth_method")
        if self.cache_ttl < 0 or self.negative_cache_ttl < 0:
            raise ConfigurationError("negative_cache_ttl")
        if any(not p for p in self.token_prefixes):
            raise ConfigurationError("empty_token_prefix")
        check_limit_settings(self.max_concurrent_checks, self.max_checks_per_second, provider=None)
        marker = self.access_token_marker
        if marker is not None:
            if not marker or not all(
                isinstance(k, str) and k and isinstance(v, str | int | bool)
                for k, v in marker.items()
            ):
                raise ConfigurationError(
                    "invalid_access_token_marker",
                    message=(
                        "access_token_marker maps member names to the exact string, number "
                        "or boolean that marks an access token, e.g. {'token_kind': 'access'}"
                    ),
                )
            object.__setattr__(self, "access_token_marker", MappingProxyType(dict(marker)))

    def request_parts(self, token: str) -> tuple[dict[str, str], tuple[str, str] | None]:
        """The form body and Basic credentials of an introspection request."""
        data = {"token": token, "token_type_hint": "access_token"}
        if self.auth_method == "client_secret_post":
            data["client_id"] = self.client_id
            data["client_secret"] = self.client_secret
            return data, None
        # RFC 6749 §2.3.1: form-urlencode both parts before Basic encoding.
        return data, (quote(self.client_id, safe=""), quote(self.client_secret, safe=""))


def _number(response: Mapping[str, Any], name: str) -> float | None:
    value = response.get(name)
    if value is None:
        return None
    date = numeric_date(value)
    if date is None:
        raise InvalidToken("invalid_claim_type", claim=name)
    return date


def check_introspection(
    response: Mapping[str, Any],
    policy: JWTPolicy,
    now: float,
    *,
    provider: str,
    marker: Mapping[str, str | int | bool] | None = None,
) -> float | None:
    """Decide on an introspection response; return the token's ``exp`` if given.

    Only a boolean ``active: true`` counts. ``exp``/``nbf`` and ``iss`` are
    checked when present; ``aud`` and the client are required when audiences
    or ``client_ids`` are configured. The answer must show an *access token for
    this API* (see ``access_token_evidence``).

    Raises:
        InvalidToken: inactive, or active but not acceptable here.
        ProviderUnavailable: the response is not a JSON object of the RFC's shape.
    """
    if response.get("active") is not True:
        raise InvalidToken("inactive", provider=provider)
    try:
        exp = _number(response, "exp")
        leeway = policy.leeway
        if exp is not None and now >= exp + leeway:
            raise InvalidToken("expired", claim="exp")
        nbf = _number(response, "nbf")
        if nbf is not None and nbf > now + leeway:
            raise InvalidToken("not_yet_valid", claim="nbf")
        iss = response.get("iss")
        if iss is not None and (not isinstance(iss, str) or iss not in policy.issuers):
            raise InvalidToken("issuer_mismatch", claim="iss")
        aud = response.get("aud")
        if aud is None and policy.audiences:
            # As for JWTs: with an audience configured, a token must name one.
            raise InvalidToken("missing_claim", claim="aud", detail={"expected": policy.audiences})
        if aud is not None and policy.audiences:
            if isinstance(aud, str):
                values = aud.split(" ") if policy.space_separated_aud else [aud]
            else:
                values = aud
            if not isinstance(values, list) or policy.audiences.isdisjoint(
                v for v in values if isinstance(v, str)
            ):
                raise InvalidToken(
                    "audience_mismatch",
                    claim="aud",
                    detail={"expected": policy.audiences, "actual": aud},
                )
        if policy.client_ids and client_of(response, policy.client_id_claims) not in (
            policy.client_ids
        ):
            raise InvalidToken("client_mismatch", claim="client_id")
        if not access_token_evidence(response, marker) and not policy.audiences:
            # e.g. a refresh token, which oidc-provider introspects as active with the
            # client's id but without `aud` or `token_type`.
            raise InvalidToken(
                "not_an_access_token",
                detail={"needs": "token_type Bearer, an audience, or access_token_marker"},
            )
        for name in policy.required_claims - {"iss", "exp"}:  # both optional in RFC 7662
            if name not in response:
                raise InvalidToken("missing_claim", claim=name)
        for name in ("sub", "client_id", "scope", "username", "jti"):
            if name in response:
                value = response[name]
                if not isinstance(value, str) or (name == "sub" and not value):
                    raise InvalidToken("invalid_claim_type", claim=name)
        for name, expected in policy.claim_values:
            value = response.get(name)
            if value != expected or type(value) is not type(expected):
                raise InvalidToken("unexpected_claim_value", claim=name)
    except InvalidToken as exc:
        raise exc.for_provider(provider) from None
    return exp


def access_token_evidence(
    response: Mapping[str, Any], marker: Mapping[str, str | int | bool] | None
) -> bool:
    """Whether an active answer says "access token" by itself; refuse one naming another kind.

    The members servers use to say what a token is, each optional:
    ``token_type`` (RFC 7662; ``Bearer`` for a bearer access token), ORY
    Hydra's ``token_use`` (``access_token``), Keycloak's ``typ`` (``Bearer``),
    and the ``marker`` the provider is configured with (all of it required).
    A member naming any other kind (``refresh_token``, ``DPoP``, ``Refresh``,
    ``ID``...) refuses the token whatever the policy. ``client_id`` proves
    nothing: refresh tokens carry it too.

    Raises:
        InvalidToken: ``wrong_token_type``: a member names another kind of token,
            or the configured marker is missing or different.
    """
    evidence = False
    token_type = response.get("token_type")
    if token_type is not None:
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            # e.g. a refresh token, or a DPoP-bound token presented as a bearer token
            raise InvalidToken("wrong_token_type", claim="token_type")
        evidence = True
    token_use = response.get("token_use")  # ORY Hydra
    if token_use is not None:
        if token_use != "access_token":
            raise InvalidToken("wrong_token_type", claim="token_use")
        evidence = True
    typ = response.get("typ")  # Keycloak: Bearer, Refresh, ID, Offline, Logout
    if isinstance(typ, str):
        kind = typ.lower()
        if kind in _NOT_ACCESS_TYP_CLAIM:
            raise InvalidToken("wrong_token_type", claim="typ")
        evidence = evidence or kind == "bearer"
    if marker:
        for name, expected in marker.items():
            value = response.get(name)
            if value != expected or type(value) is not type(expected):
                raise InvalidToken("wrong_token_type", claim=name)
        evidence = True
    return evidence


def check_active_answer(response: Mapping[str, Any], *, provider: str) -> None:
    """Decide on the introspection answer for a JWT already verified locally.

    Signature and claims were checked; only revocation is asked about here, so
    only a boolean ``active: true`` counts.

    Raises:
        InvalidToken: ``revoked``: the server no longer considers it active.
    """
    if response.get("active") is not True:
        raise InvalidToken("revoked", provider=provider)


def jwt_not_introspectable(response: RawResponse) -> bool:
    """Whether a non-200 answer says the server cannot introspect JWTs at all.

    oidc-provider, for one, answers ``400 unsupported_token_type`` for every
    JWT it issued: it can neither introspect nor revoke them.
    """
    if response.status != 400:
        return False
    try:
        body = response.json_object()
    except ProviderUnavailable:
        return False
    return body.get("error") == "unsupported_token_type"


def introspection_unavailable(status: int, provider: str) -> ProviderUnavailable:
    """The error for a non-200 introspection answer (fail closed: never allow)."""
    if status in (401, 403):
        return ProviderUnavailable("introspection_refused_our_credentials", provider=provider)
    return ProviderUnavailable(f"introspection_http_status:{status}", provider=provider)
