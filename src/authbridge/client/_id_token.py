"""Verification of OpenID Connect ID tokens at the login callback (OIDC Core §3.1.3.7).

The same strict JOSE layer the resource server uses (`authbridge.jose`): the
size bound and the structure first, then the header (``alg`` among the
configured asymmetric algorithms: ``none``, HMAC and anything unknown are
refused), the signature with a key of the provider's key set, then the claims:
``iss`` exact, ``aud`` naming the client, ``azp`` equal to the client when
present (and required with several audiences), ``exp`` / ``iat`` / ``nbf``
within the leeway, the transaction's ``nonce`` (constant-time), and
``at_hash`` when present.

Every refusal is a [LoginError][authbridge.LoginError] whose reason is
``id_token_invalid:<jose reason>``, ``nonce_mismatch`` or ``at_hash_mismatch``;
it never holds the token or a claim value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError, InvalidToken, LoginError
from ..jose import JWTPolicy, RemoteJWKS, check_claims, check_header, parse_compact
from ..jose.keys import ASYMMETRIC_ALGS

__all__ = ["ID_TOKEN_REQUIRED_CLAIMS", "at_hash", "id_token_policy", "verify_id_token"]

ID_TOKEN_REQUIRED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat"})
"""Claims every ID token carries (OIDC Core §2)."""

_MAX_CANDIDATE_KEYS = 4

# The hash named by the JWS alg (OIDC Core §3.1.3.6); EdDSA per the OpenID
# Foundation's errata: Ed25519 -> SHA-512, Ed448 -> SHAKE256 with 114 octets.
_AT_HASH: dict[str, str] = {
    **{f"{kind}{bits}": f"sha{bits}" for kind in ("RS", "PS", "ES") for bits in (256, 384, 512)},
    "EdDSA": "sha512",
    "Ed25519": "sha512",
}


def id_token_policy(
    *,
    issuer: str,
    client_id: str,
    algorithms: Sequence[str],
    leeway: float = 30.0,
    issuer_aliases: Sequence[str] = (),
    max_bytes: int = 16384,
) -> JWTPolicy:
    """The `JWTPolicy` of ID tokens issued by ``issuer`` to ``client_id``.

    Raises:
        ConfigurationError: ``id_token_algorithms_must_be_asymmetric`` when
            ``algorithms`` is empty or names HMAC or unknown algorithms (an ID
            token signed with the client secret is not accepted), or any
            `JWTPolicy` refusal.
    """
    algs = frozenset(algorithms)
    if not algs or not algs <= ASYMMETRIC_ALGS:
        raise ConfigurationError(
            "id_token_algorithms_must_be_asymmetric",
            message=(
                "ID tokens are accepted only with asymmetric algorithms (RS*, PS*, ES*, EdDSA); "
                "HMAC and 'none' are refused"
            ),
        )
    return JWTPolicy(
        issuer=issuer,
        audiences=frozenset({client_id}),
        algorithms=algs,
        token_type="id_token",
        leeway=float(leeway),
        required_claims=ID_TOKEN_REQUIRED_CLAIMS,
        max_token_bytes=max_bytes,
        issuer_aliases=frozenset(issuer_aliases),
    )


def at_hash(access_token: str, alg: str) -> str | None:
    """The ``at_hash`` of ``access_token`` for a token signed with ``alg`` (``None``: no rule).

    The left half of the hash named by ``alg``, base64url without padding
    (OIDC Core §3.1.3.6).
    """
    raw = access_token.encode("utf-8", "surrogatepass")
    if alg == "Ed448":
        digest = hashlib.shake_256(raw).digest(114)
    else:
        name = _AT_HASH.get(alg)
        if name is None:
            return None
        digest = hashlib.new(name, raw).digest()
    half = digest[: len(digest) // 2]
    return base64.urlsafe_b64encode(half).rstrip(b"=").decode("ascii")


def _invalid(reason: str) -> LoginError:
    return LoginError(f"id_token_invalid:{reason}")


async def verify_id_token(
    token: str,
    *,
    keys: RemoteJWKS,
    issuer: str,
    issuer_aliases: Sequence[str] = (),
    client_id: str,
    nonce: str | None,
    algorithms: Sequence[str],
    leeway: float,
    now: float,
    access_token: str | None = None,
    max_bytes: int = 16384,
) -> dict[str, Any]:
    """Verify an ID token from a token response; return its claims.

    Args:
        token: The ``id_token`` of the token response.
        keys: The provider's key set (fetched and cached like the resource
            server's: an unknown ``kid`` refetches at most once per cooldown).
        issuer: The exact ``iss`` expected.
        issuer_aliases: Other exact spellings of ``iss`` the provider uses.
        client_id: The app's client id: ``aud`` must name it; ``azp``, when
            present, must equal it (and must be present with several audiences).
        nonce: The transaction's nonce: the token's ``nonce`` must equal it
            (constant-time). ``None`` when the request sent none.
        algorithms: Accepted JWS algorithms (asymmetric only).
        leeway: Clock skew tolerated for ``exp``, ``iat`` and ``nbf`` (seconds).
        now: The current time (POSIX seconds).
        access_token: The access token of the same response: when the ID token
            carries ``at_hash``, it must be this token's.
        max_bytes: Longer tokens are refused before any decoding.

    Returns:
        The verified claims.

    Raises:
        LoginError: ``id_token_invalid:<reason>`` (``token_too_large``,
            ``malformed_token``, ``algorithm_not_allowed``, ``unknown_key``,
            ``bad_signature``, ``issuer_mismatch``, ``audience_mismatch``,
            ``authorized_party_mismatch``, ``expired``, ``missing_claim``...),
            ``nonce_mismatch``, ``at_hash_mismatch``.
        ProviderUnavailable: the provider's keys could not be obtained.
        ConfigurationError: ``algorithms`` names HMAC or unknown algorithms.
    """
    policy = id_token_policy(
        issuer=issuer,
        client_id=client_id,
        algorithms=algorithms,
        leeway=leeway,
        issuer_aliases=issuer_aliases,
        max_bytes=max_bytes,
    )
    try:
        parsed = parse_compact(token, max_bytes=max_bytes)
        alg, kid = check_header(parsed.header, policy)
        _, candidates = await keys.lookup(kid, alg)
        if not candidates:
            raise InvalidToken("unknown_key")
        verifier = next(
            (
                key
                for key in candidates[:_MAX_CANDIDATE_KEYS]
                if key.verify(alg, parsed.signing_input, parsed.signature)
            ),
            None,
        )
        if verifier is None:
            raise InvalidToken("bad_signature")
        claims = parsed.claims
        check_claims(claims, policy, now)
    except InvalidToken as exc:
        raise _invalid(exc.reason) from None
    _check_authorized_party(claims, client_id)
    _check_nonce(claims, nonce)
    # EdDSA names no curve: the key says which hash at_hash uses.
    hash_alg = "Ed448" if alg == "EdDSA" and "Ed448" in verifier.algorithms else alg
    _check_at_hash(claims, hash_alg, access_token)
    return claims


def _check_authorized_party(claims: dict[str, Any], client_id: str) -> None:
    # check_claims required azp with several audiences; present, it must be us.
    if "azp" in claims and claims["azp"] != client_id:
        raise _invalid("authorized_party_mismatch")


def _check_nonce(claims: dict[str, Any], nonce: str | None) -> None:
    if nonce is None:
        return
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), nonce.encode("utf-8")
    ):
        raise LoginError("nonce_mismatch")


def _check_at_hash(claims: dict[str, Any], alg: str, access_token: str | None) -> None:
    if "at_hash" not in claims or access_token is None:
        return
    presented = claims["at_hash"]
    expected = at_hash(access_token, alg)
    if (
        not isinstance(presented, str)
        or expected is None
        or not hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode())
    ):
        raise LoginError("at_hash_mismatch")
