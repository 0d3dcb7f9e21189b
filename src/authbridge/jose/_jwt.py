"""JWT header and claim checks driven by one policy object (RFC 7519, 8725, 9068)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigurationError, InvalidToken
from .keys import ASYMMETRIC_ALGS, HMAC_ALGS

TokenType = Literal["strict", "lenient", "id_token"]

MAX_LEEWAY = 300.0
# NumericDate values beyond this (year 5138) are nonsense, not dates.
_MAX_NUMERIC_DATE = 1e11
_STRICT_TYP = frozenset({"at+jwt", "application/at+jwt"})
_LENIENT_TYP = _STRICT_TYP | frozenset({"jwt", "application/jwt"})
_ID_TOKEN_TYP = frozenset({"jwt", "application/jwt"})
# Keycloak marks its token kinds with a `typ` claim (Bearer, ID, Refresh, Offline,
# Logout); these values name tokens that are not access tokens.
_NOT_ACCESS_TYP_CLAIM = frozenset(
    {"id", "id_token", "refresh", "refresh_token", "offline", "logout", "logout+jwt"}
)
# Header parameters whose presence means "this is not a plain JWS we understand".
_REJECTED_HEADERS = ("crit", "b64", "enc", "zip")
_UNUSUAL_HEADERS = frozenset({*_REJECTED_HEADERS, "cty"})
_STRING_CLAIMS = ("sub", "jti", "client_id", "azp", "scope", "nonce")


@dataclass(frozen=True, slots=True)
class JWTPolicy:
    """Everything that decides whether a JWT is acceptable for one issuer.

    Attributes:
        issuer: The exact ``iss`` value (compared byte for byte).
        audiences: Accepted ``aud`` values; the token must carry at least one.
            Empty only when ``client_ids`` is set (tokens without ``aud``).
        client_ids: If set, the client (the first of ``client_id_claims``
            present) must be one of these.
        client_id_claims: Claims naming the client, in order of preference.
        claim_values: Claims that must be present with exactly these values
            (e.g. Cognito's ``{"token_use": "access"}``).
        algorithms: Accepted JWS ``alg`` values.
        token_type: ``"strict"``: RFC 9068 ``typ`` ``at+jwt`` required;
            ``"lenient"``: also ``JWT`` or no ``typ``; ``"id_token"``: an
            OpenID Connect ID token (``typ`` ``JWT`` or absent, ``sub`` required).
        leeway: Clock skew tolerated for ``exp``/``nbf``/``iat`` (≤ 300 s).
        required_claims: Claims that must be present.
        max_token_bytes: Size cap checked before any decoding.
        issuer_aliases: Other spellings of the issuer the provider is known to
            use (e.g. Google's ``accounts.google.com``); each listed explicitly.
        space_separated_aud: Read an ``aud`` string as audiences separated by
            U+0020 (a provider quirk, opt-in); by default the string is one
            audience.
    """

    issuer: str
    audiences: frozenset[str]
    algorithms: frozenset[str]
    client_ids: frozenset[str] = frozenset()
    client_id_claims: tuple[str, ...] = ("client_id", "azp")
    claim_values: tuple[tuple[str, str | int | bool], ...] = ()
    token_type: TokenType = "lenient"
    leeway: float = 30.0
    required_claims: frozenset[str] = frozenset({"iss", "exp"})
    max_token_bytes: int = 16 * 1024
    issuer_aliases: frozenset[str] = frozenset()
    space_separated_aud: bool = False

    @property
    def issuers(self) -> frozenset[str]:
        """Every accepted ``iss`` value: the issuer and its explicit aliases."""
        return self.issuer_aliases | {self.issuer}

    def __post_init__(self) -> None:
        if not self.issuer:
            raise ConfigurationError("issuer_required")
        if not isinstance(self.issuer, str):
            raise ConfigurationError("issuer_must_be_a_string")
        if not self.audiences and not self.client_ids:
            raise ConfigurationError("audience_or_client_ids_required")
        for value in (*self.audiences, *self.client_ids):
            # An unset environment variable must not become "accept anything".
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError("empty_audience_or_client_id")
        if not self.client_id_claims:
            raise ConfigurationError("client_id_claims_required")
        if not self.algorithms:
            raise ConfigurationError("algorithms_required")
        unknown = self.algorithms - ASYMMETRIC_ALGS - HMAC_ALGS
        if unknown:
            raise ConfigurationError(f"unsupported_algorithms:{','.join(sorted(unknown))}")
        if self.algorithms & HMAC_ALGS and self.algorithms & ASYMMETRIC_ALGS:
            # Mixing them is how algorithm-confusion attacks start.
            raise ConfigurationError("hmac_and_asymmetric_algorithms_mixed")
        if not 0 <= self.leeway <= MAX_LEEWAY:
            raise ConfigurationError("leeway_out_of_range")
        if self.token_type not in ("strict", "lenient", "id_token"):
            raise ConfigurationError("unknown_token_type")
        if self.max_token_bytes < 256:
            raise ConfigurationError("max_token_bytes_too_small")


def check_header(header: Mapping[str, Any], policy: JWTPolicy) -> tuple[str, str | None]:
    """Check the JOSE header; return ``(alg, kid)``.

    Embedded key headers (``jwk``, ``jku``, ``x5u``, ``x5c``) are ignored: keys
    only ever come from the provider's configured key set.
    """
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in policy.algorithms:
        raise InvalidToken("algorithm_not_allowed")
    # One pass over the (few) members instead of a lookup per unusual name.
    if not _UNUSUAL_HEADERS.isdisjoint(header):
        for name in _REJECTED_HEADERS:
            if name in header:
                raise InvalidToken(f"unsupported_header:{name}")
        if "cty" in header:
            _check_content_type(header["cty"])
    typ = header.get("typ")
    if typ is not None and not isinstance(typ, str):
        raise InvalidToken("invalid_typ")
    kind = policy.token_type
    if kind == "strict":
        if typ is None or typ.lower() not in _STRICT_TYP:
            raise InvalidToken("wrong_token_type")
    elif typ is not None:
        allowed = _LENIENT_TYP if kind == "lenient" else _ID_TOKEN_TYP
        if typ.lower() not in allowed:
            raise InvalidToken("wrong_token_type")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("invalid_kid")
    return alg, kid


# RFC 6838 §4.2 restricted-name, for the type and the subtype (lowercased first).
_RESTRICTED_NAME = "[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(f"{_RESTRICTED_NAME}(?:/{_RESTRICTED_NAME})?")


def _check_content_type(cty: Any) -> None:
    """Refuse a ``cty`` that declares a nested JWT (RFC 7519 §5.2, §7.2), or is no media type.

    The comparison follows RFC 7515 §4.1.10: case-insensitive, ``application/``
    implied when there is no ``/``, parameters ignored. A subtype ``jwt`` or one
    with the ``+jwt`` suffix (``at+jwt``, ``secevent+jwt``...) says the payload
    is itself a JWT, which is never processed here: accepting its outer claims
    would give the token another meaning than its issuer meant. Other media
    types are tolerated (some issuers send one, the payload is still read as a
    claims set); a value that is not a media type at all is refused.
    """
    if not isinstance(cty, str):
        raise InvalidToken("invalid_cty")
    media = cty.split(";", 1)[0].strip(" \t").lower()
    if _MEDIA_TYPE.fullmatch(media) is None:
        raise InvalidToken("invalid_cty")
    subtype = media.rpartition("/")[2]
    if subtype == "jwt" or subtype.endswith("+jwt"):
        raise InvalidToken("nested_jwt_not_accepted")


def numeric_date(value: Any) -> float | None:
    """``value`` as a NumericDate (POSIX seconds), or ``None`` if it is not a sane one.

    Only JSON numbers (not booleans) within ±1e11 s count. The magnitude is
    compared first: huge integers would overflow a float conversion.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not -_MAX_NUMERIC_DATE <= value <= _MAX_NUMERIC_DATE:  # also False for NaN
        return None
    return float(value)


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        if name in claims:
            raise InvalidToken("invalid_claim_type", claim=name)
        return None
    # numeric_date() inlined: three calls per token on the first-sight path.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not -_MAX_NUMERIC_DATE <= value <= _MAX_NUMERIC_DATE
    ):
        raise InvalidToken("invalid_claim_type", claim=name)
    return float(value)


def check_claims(claims: Mapping[str, Any], policy: JWTPolicy, now: float) -> None:
    """Check registered claims of a signature-verified JWT against ``policy``.

    Raises:
        InvalidToken: with ``reason`` and ``claim`` set.
    """
    for name in policy.required_claims:
        if name not in claims:
            raise InvalidToken("missing_claim", claim=name)

    iss = claims.get("iss")
    if iss != policy.issuer and (not policy.issuer_aliases or iss not in policy.issuer_aliases):
        raise InvalidToken("issuer_mismatch", claim="iss")

    for name in _STRING_CLAIMS:
        if name in claims:
            value = claims[name]
            if not isinstance(value, str) or (name == "sub" and not value):
                raise InvalidToken("invalid_claim_type", claim=name)

    leeway = policy.leeway
    exp = _numeric_date(claims, "exp")
    if exp is not None and now >= exp + leeway:
        raise InvalidToken("expired", claim="exp")
    nbf = _numeric_date(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise InvalidToken("not_yet_valid", claim="nbf")
    iat = _numeric_date(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise InvalidToken("issued_in_the_future", claim="iat")

    _check_audience(claims, policy)

    if "scp" in claims:
        scp = claims["scp"]
        if not isinstance(scp, str) and not (
            isinstance(scp, list) and all(isinstance(s, str) for s in scp)
        ):
            raise InvalidToken("invalid_claim_type", claim="scp")

    _check_kind(claims, policy)


def _check_audience(claims: Mapping[str, Any], policy: JWTPolicy) -> None:
    """``aud``, the client and ``claim_values``: is this token for this API?

    With an audience configured, ``aud`` must name it. Without one (only
    ``client_ids``), the client must be one of them, and a token whose ``aud``
    names one of those clients is refused: that is an ID token's shape (OpenID
    Connect Core §2: its ``aud`` is the client), not an access token's.
    """
    audiences: tuple[Any, ...] = ()
    if "aud" in claims or policy.audiences:
        aud = claims.get("aud")
        if isinstance(aud, str):
            audiences = (aud,)
            if policy.space_separated_aud:
                audiences = tuple(a for a in aud.split(" ") if a)
        elif isinstance(aud, list) and aud:
            audiences = tuple(aud)
            if not all(isinstance(a, str) for a in audiences):
                raise InvalidToken("invalid_claim_type", claim="aud")
        elif "aud" not in claims:
            raise InvalidToken("missing_claim", claim="aud", detail={"expected": policy.audiences})
        else:
            raise InvalidToken("invalid_claim_type", claim="aud")
        if policy.audiences and policy.audiences.isdisjoint(audiences):
            raise InvalidToken(
                "audience_mismatch",
                claim="aud",
                detail={"expected": policy.audiences, "actual": audiences},
            )

    if policy.client_ids:
        client = client_of(claims, policy.client_id_claims)
        if client not in policy.client_ids:
            raise InvalidToken("client_mismatch", claim=policy.client_id_claims[0])
        if (
            audiences
            and not policy.audiences
            and policy.token_type != "id_token"
            and not policy.client_ids.isdisjoint(audiences)
        ):
            raise InvalidToken(
                "wrong_token_type",
                claim="aud",
                detail={"actual": audiences, "looks_like": "an ID token for this client"},
            )

    for name, expected in policy.claim_values:
        value = claims.get(name)
        # type() too: True == 1 in Python, but not in JSON.
        if value != expected or type(value) is not type(expected):
            raise InvalidToken("unexpected_claim_value", claim=name)


def client_of(claims: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The client named by the first of ``names`` present in ``claims`` (if a string)."""
    for name in names:
        if name in claims:
            value = claims[name]
            return value if isinstance(value, str) else None
    return None


def _check_kind(claims: Mapping[str, Any], policy: JWTPolicy) -> None:
    if policy.token_type == "id_token":
        if "sub" not in claims:
            raise InvalidToken("missing_claim", claim="sub")
        aud = claims.get("aud")
        # OIDC Core §3.1.3.7: with several audiences, azp must name us.
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") not in policy.audiences:
            raise InvalidToken("authorized_party_mismatch", claim="azp")
        return
    typ_claim = claims.get("typ")
    if isinstance(typ_claim, str) and typ_claim.lower() in _NOT_ACCESS_TYP_CLAIM:
        # e.g. Keycloak ID ("ID") or refresh ("Refresh") tokens as access tokens.
        raise InvalidToken("wrong_token_type", claim="typ")
