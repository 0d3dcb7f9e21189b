"""Verification keys and key sets.

A `VerificationKey` pairs one public key (or an explicitly configured
HMAC secret) with the JWS algorithms it may verify. Keys are scoped to one
issuer by construction: each provider owns its own `KeySet`.

Importing a JWKS never fails as a whole because of one odd key: weak, unusable
or unsupported keys are skipped with a warning naming only their ``kid`` and
the reason (RFC 7517 §5 asks implementations to ignore keys they cannot use).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.jwk import JWKRegistry

from ..errors import ConfigurationError
from ._compact import remember_header

logger = logging.getLogger("authbridge.keys")

MIN_RSA_BITS = 2048
MIN_HMAC_BYTES = 32

_SHA = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
_PKCS1 = padding.PKCS1v15()
_PSS = {
    bits: padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size) for bits, h in _SHA.items()
}
_EC_ALG_FOR_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_EC_COORD_BYTES = {"ES256": 32, "ES384": 48, "ES512": 66}
_ECDSA = {alg: ec.ECDSA(_SHA[alg[2:]]) for alg in _EC_COORD_BYTES}
_HMAC_DIGEST = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}

RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGS = frozenset(_EC_COORD_BYTES)
OKP_ALGS = frozenset({"EdDSA", "Ed25519", "Ed448"})
HMAC_ALGS = frozenset(_HMAC_DIGEST)
ASYMMETRIC_ALGS = RSA_ALGS | EC_ALGS | OKP_ALGS
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class UnusableKey(ValueError):
    """A JWK that cannot be used for verification (reason in ``args[0]``)."""


@dataclass(frozen=True, slots=True, eq=False)
class VerificationKey:
    """One key usable for verifying JWS signatures.

    Attributes:
        kid: The key id, or ``None``.
        algorithms: The JWS ``alg`` values this key may verify. Derived from the
            key type (and the JWK's own ``alg`` member, which narrows it), so
            an RSA key can never verify an HMAC or ECDSA signature.
    """

    kid: str | None
    algorithms: frozenset[str]
    _key: Any = field(repr=False)
    # alg -> the one signature length that alg has with this key.
    _lengths: Mapping[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lengths = {alg: _signature_length(alg, self._key) for alg in self.algorithms}
        object.__setattr__(self, "_lengths", lengths)

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is valid for ``signing_input`` under ``alg``.

        A signature of any other length than the one ``alg`` has with this key is
        refused before any cryptography: one token has exactly one valid
        spelling (the RSA backend would accept a signature stripped of its
        leading zero octets).
        """
        if len(signature) != self._lengths.get(alg):
            return False
        key = self._key
        try:
            if alg[0] == "R":
                key.verify(signature, signing_input, _PKCS1, _SHA[alg[2:]])
            elif alg[0] == "P":
                key.verify(signature, signing_input, _PSS[alg[2:]], _SHA[alg[2:]])
            elif alg[0] == "E" and alg[1] == "S":
                size = len(signature) // 2
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                key.verify(encode_dss_signature(r, s), signing_input, _ECDSA[alg])
            elif alg[0] == "H":
                expected = hmac.digest(key, signing_input, _HMAC_DIGEST[alg])
                if not hmac.compare_digest(expected, signature):
                    return False
            else:  # EdDSA / Ed25519 / Ed448
                key.verify(signature, signing_input)
        except (InvalidSignature, ValueError):
            return False
        remember_header(signing_input)
        return True


def _signature_length(alg: str, key: Any) -> int:
    """The exact length of an ``alg`` signature made with ``key`` (-1: none can be valid).

    RSA: the modulus length in octets (RFC 8017 §8.1.2, §8.2.2); ECDSA: both
    coordinates at the curve's size (RFC 7518 §3.4); HMAC: the full digest
    (RFC 7518 §3.2); Ed25519 64 and Ed448 114 octets (RFC 8032 §5.1.6, §5.2.6).
    """
    if alg in RSA_ALGS:
        return (key.key_size + 7) // 8 if isinstance(key, rsa.RSAPublicKey) else -1
    if alg in EC_ALGS:
        return 2 * _EC_COORD_BYTES[alg]
    if alg in HMAC_ALGS:
        return hashlib.new(_HMAC_DIGEST[alg]).digest_size
    if isinstance(key, ed25519.Ed25519PublicKey) and alg in ("EdDSA", "Ed25519"):
        return 64
    if isinstance(key, ed448.Ed448PublicKey) and alg in ("EdDSA", "Ed448"):
        return 114
    return -1


def key_from_secret(
    secret: str | bytes, *, algorithms: Iterable[str], kid: str | None = None
) -> VerificationKey:
    """Wrap an explicitly configured HMAC secret.

    Raises:
        ConfigurationError: if the secret is shorter than 32 bytes or an
            algorithm is not an HMAC algorithm.
    """
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(raw) < MIN_HMAC_BYTES:
        raise ConfigurationError("hmac_secret_too_short")
    algs = frozenset(algorithms)
    if not algs or not algs <= HMAC_ALGS:
        raise ConfigurationError("hmac_secret_needs_hs_algorithms")
    return VerificationKey(kid=kid, algorithms=algs, _key=raw)


def key_from_jwk(jwk: Mapping[str, Any]) -> VerificationKey:
    """Import one public JWK.

    Raises:
        UnusableKey: for symmetric keys, encryption keys, weak keys, unknown
            types or curves, and malformed material.
    """
    kty = jwk.get("kty")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise UnusableKey("kid_not_a_string")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise UnusableKey("not_a_signing_key")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise UnusableKey("key_ops_exclude_verify")
    if kty == "oct":
        raise UnusableKey("symmetric_key_in_jwks")
    if kty not in ("RSA", "EC", "OKP"):
        raise UnusableKey("unsupported_key_type")
    public = {k: v for k, v in jwk.items() if k not in PRIVATE_MEMBERS}
    try:
        imported = JWKRegistry.import_key(public)
        key = imported.public_key
    except Exception as exc:  # noqa: BLE001 - any import failure means "unusable"
        raise UnusableKey(f"invalid_key_material:{type(exc).__name__}") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise UnusableKey("rsa_key_too_small")
        algs = RSA_ALGS
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve_alg = _EC_ALG_FOR_CURVE.get(key.curve.name)
        if curve_alg is None:
            raise UnusableKey("unsupported_curve")
        algs = frozenset({curve_alg})
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algs = frozenset({"EdDSA", "Ed25519"})
    elif isinstance(key, ed448.Ed448PublicKey):
        algs = frozenset({"EdDSA", "Ed448"})
    else:
        raise UnusableKey("unsupported_key_type")
    declared = jwk.get("alg")
    if declared is not None:
        if declared not in algs:
            raise UnusableKey("alg_does_not_match_key")
        algs = frozenset({declared})
    return VerificationKey(kid=kid, algorithms=algs, _key=key)


class KeySet:
    """An immutable set of verification keys for one issuer."""

    __slots__ = ("_by_kid", "_keys", "_memo")

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        self._keys: tuple[VerificationKey, ...] = tuple(keys)
        by_kid: dict[str, list[VerificationKey]] = {}
        for key in self._keys:
            if key.kid is not None:
                by_kid.setdefault(key.kid, []).append(key)
        self._by_kid = {kid: tuple(keys) for kid, keys in by_kid.items()}
        # (kid, alg) -> candidates, only for kids in the set: bounded by its size.
        self._memo: dict[tuple[str | None, str], tuple[VerificationKey, ...]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return any(k is key for k in self._keys)

    @property
    def keys(self) -> tuple[VerificationKey, ...]:
        """All keys, in document order."""
        return self._keys

    def has_kid(self, kid: str) -> bool:
        """Whether a key with this ``kid`` is present."""
        return kid in self._by_kid

    def candidates(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        """Keys that may verify a token with this ``kid`` (or none) and ``alg``.

        With a ``kid``, only keys carrying exactly that ``kid`` are candidates
        (duplicates are all tried). Without one, every key allowed for ``alg``.
        """
        found = self._memo.get((kid, alg))
        if found is not None:
            return found
        pool = self._by_kid.get(kid, ()) if kid is not None else self._keys
        found = tuple(k for k in pool if alg in k.algorithms)
        if pool and len(self._memo) < 64:
            self._memo[(kid, alg)] = found
        return found


def import_jwks(document: Mapping[str, Any], *, source: str = "jwks") -> KeySet:
    """Build a `KeySet` from a JWKS document, skipping unusable keys.

    Args:
        document: The parsed JWKS (``{"keys": [...]}``).
        source: A safe label for warnings (e.g. the provider name).

    Raises:
        ValueError: if the document has no ``keys`` array.
    """
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("jwks_without_keys_array")
    usable: list[VerificationKey] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            logger.warning("Skipping JWKS entry #%d from %s: not an object", index, source)
            continue
        try:
            usable.append(key_from_jwk(entry))
        except UnusableKey as exc:
            kid = entry.get("kid")
            label = kid[:64] if isinstance(kid, str) else f"#{index}"
            logger.warning("Skipping key %r from %s: %s", label, source, exc.args[0])
    return KeySet(usable)
