"""What the presets share for logging in and for token exchange: small, typed helpers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._http import ClientSource, RawResponse, request
from ..client import ExternalIdentity
from ..errors import ConfigurationError, LoginError
from ..resource import Principal
from ..resource._upstream import subject, unavailable

MAX_USER_RESPONSE = 256 * 1024
"""Largest answer read from a provider's user API (userinfo, ``/user``, ``/me``)."""

MAX_CLAIM_TEXT = 320
"""Longest email, name or username kept from a provider's answer (RFC 5321's 320 octets)."""


def need_login(enabled: bool, name: str) -> None:
    """Refuse to build a login runtime for a provider configured without login credentials.

    Raises:
        ConfigurationError: ``login_not_configured``.
    """
    if not enabled:
        raise ConfigurationError(
            "login_not_configured",
            provider=name,
            message=f"provider {name!r} has no login credentials (client_id and its secret)",
        )


def text(value: Any) -> str | None:
    """A short display string from a provider's answer, else ``None``."""
    if isinstance(value, str) and 0 < len(value) <= MAX_CLAIM_TEXT:
        return value
    return None


def verified_flag(value: Any, *, strings: bool = False) -> bool:
    """Whether a provider's ``email_verified`` says yes.

    Only JSON ``true`` counts, or the string ``"true"`` for providers known to
    send strings (Apple, Cognito's userinfo): never ``1``, ``"True"`` or ``"yes"``.
    """
    return value is True or (strings and value == "true")


def audiences(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``aud`` of verified claims as a tuple of strings (nothing else counts)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list | tuple):
        return tuple(a for a in aud if isinstance(a, str))
    return ()


def issued_to(principal: Principal, client_ids: Iterable[str]) -> bool:
    """Whether a verified token was issued to one of ``client_ids``.

    A token naming its client (``client_id``, ``azp`` or ``cid``, and the
    client the verifier read) was issued to that client: every one present
    must be ours — an ``aud`` that also lists us does not make another
    client's token ours (OpenID Connect Core §3.1.3.7). Only a token naming no
    client is judged by its ``aud`` (an ID token's audience is its client).
    """
    ours = frozenset(client_ids)
    if not ours:
        return False
    named = [principal.client_id] if principal.client_id is not None else []
    named += [v for k in _CLIENT_CLAIMS if isinstance(v := principal.claims.get(k), str)]
    if named:
        return all(client in ours for client in named)
    return not ours.isdisjoint(audiences(principal.claims))


_CLIENT_CLAIMS = ("client_id", "azp", "cid")


def claims_identity(
    provider: str,
    issuer: str,
    claims: Mapping[str, Any],
    *,
    subject_claim: str = "sub",
    email_verified: bool | None = None,
    id_token: str | None = None,
) -> ExternalIdentity | None:
    """The identity named by verified OIDC claims, or ``None`` without a usable subject.

    ``email_verified`` overrides the claim (``False`` for providers whose flag
    cannot be trusted); by default only JSON ``true`` counts.
    """
    sub = subject(claims.get(subject_claim))
    if sub is None:
        return None
    email = text(claims.get("email"))
    verified = (
        verified_flag(claims.get("email_verified")) if email_verified is None else (email_verified)
    )
    return ExternalIdentity(
        provider=provider,
        issuer=issuer,
        subject=sub,
        email=email,
        email_verified=bool(verified and email is not None),
        name=text(claims.get("name")),
        username=text(claims.get("preferred_username")) or text(claims.get("nickname")),
        claims=dict(claims),
        id_token=id_token,
    )


async def get_json(
    client: ClientSource,
    url: str,
    *,
    provider: str,
    access_token: str,
    timeout: float,
    headers: Mapping[str, str] | None = None,
) -> RawResponse:
    """``GET url`` with the provider's access token in the Authorization header.

    Returns the response for the caller to judge its status.

    Raises:
        ProviderUnavailable: the call failed (network, timeout, oversize).
    """
    sent = {"Accept": "application/json", **(headers or {})}
    sent["Authorization"] = f"Bearer {access_token}"
    return await request(
        client,
        "GET",
        url,
        headers=sent,
        timeout=timeout,
        max_bytes=MAX_USER_RESPONSE,
        provider=provider,
    )


def user_object(response: RawResponse, *, provider: str, now: float) -> dict[str, Any]:
    """The JSON object of a user API's 200 answer.

    Raises:
        LoginError: ``token_error`` (401: the provider refused the token it just issued).
        ProviderUnavailable: any other status, or not a JSON object.
    """
    if response.status == 401:
        raise LoginError("token_error", provider=provider, detail={"error": "user_api_refused"})
    if response.status != 200:
        raise unavailable(response, provider, now)
    return response.json_object(provider=provider)


def site(value: str, *, name: str, what: str) -> str:
    """A provider's origin from a bare host (``tenant.eu.auth0.com``) or a URL, no trailing slash.

    A bare host gets ``https://``; a URL is kept (tests point presets at
    loopback fakes with ``http://127.0.0.1:<port>``).

    Raises:
        ConfigurationError: ``invalid_<what>`` (empty, a path or query in a bare host).
    """
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise ConfigurationError(f"invalid_{what}", provider=name)
    if "://" in value:
        return value.rstrip("/")
    if any(c in value for c in "/?#@\\"):
        raise ConfigurationError(
            f"invalid_{what}",
            provider=name,
            message=f"{what} is a host name such as 'example.org' (or a URL), got {value!r}",
        )
    return f"https://{value}"


def with_login_client(
    client_id: str | None, client_ids: Sequence[str] | None
) -> tuple[str, ...] | None:
    """A preset's ``client_ids`` with its login client among them (``None``: no client check)."""
    if client_ids is None:
        return None
    ids = (client_ids,) if isinstance(client_ids, str) else tuple(client_ids)
    return tuple(dict.fromkeys((*((client_id,) if client_id else ()), *ids)))
