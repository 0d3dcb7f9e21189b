"""Signing keys at rest: their records (generation, encryption under key-encryption
keys (KEKs), states), free of any running key manager.

A KEK is base64url (padding optional) of 32 random bytes, given as
``AppIssuer(key_encryption_key=...)`` or in the environment variable
``AUTHBRIDGE_KEY_ENCRYPTION_KEY`` (comma-separated, newest first). The first
encrypts, every one decrypts: rotating the KEK is "prepend the new one, keep
the old one until no key encrypted under it is left".

A private key is stored as AES-256-GCM (``cryptography``'s ``AESGCM``) of its
PKCS#8 DER under a random 96-bit nonce, with the key's ``kid`` as associated
data, so a ciphertext moved to another record does not decrypt. Each record
names its KEK by ``kek_id``: the first 16 hex characters of the SHA-256 of
the KEK, which identifies it without revealing it. In development mode
without a KEK, the DER is stored as it is under ``kek_id`` ``"none"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey, OKPKey, RSAKey

from ..errors import ConfigurationError
from ..store import SigningKeyRecord

if TYPE_CHECKING:
    from ._config import SigningAlgorithm

KeyState = Literal["next", "active", "retired", "revoked"]

UNENCRYPTED = "none"
"""The ``kek_id`` of a private key stored without encryption (development mode only)."""

KEK_BYTES = 32
NONCE_BYTES = 12
RSA_BITS = 2048
_KEY_MEMBERS = {"EC": ("crv", "x", "y"), "RSA": ("n", "e"), "OKP": ("crv", "x")}
_JWK_CLASSES: dict[str, Any] = {"EC": ECKey, "RSA": RSAKey, "OKP": OKPKey}
_KEK_ENV = "AUTHBRIDGE_KEY_ENCRYPTION_KEY"


class UndecryptableKey(Exception):
    """A stored private key could not be decrypted (``args[0]``: why, safe to log)."""


def new_kek() -> str:
    """A fresh key-encryption key: base64url of 32 random bytes, unpadded."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEK_BYTES)).rstrip(b"=").decode("ascii")


def kek_id(kek: bytes) -> str:
    """The public name of a KEK: the first 16 hex characters of its SHA-256."""
    return hashlib.sha256(kek).hexdigest()[:16]


def _parse(value: str, position: int) -> bytes:
    """The 32 bytes of one configured KEK; the value never appears in the error."""
    refusal = ConfigurationError(
        "invalid_key_encryption_key",
        message=f"key-encryption key #{position + 1} is not base64url of 32 bytes; make one "
        f"with `authbridge keys kek` and set it in {_KEK_ENV} (or "
        "AppIssuer(key_encryption_key=...))",
    )
    if not isinstance(value, str):
        raise refusal
    text = value.strip()
    if not text.isascii() or set(text) - set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="
    ):
        raise refusal
    text = text.rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise refusal from None
    if len(raw) != KEK_BYTES:
        raise refusal
    return raw


class KeyEncryption:
    """The configured KEKs: the first encrypts, all decrypt.

    Args:
        keks: The KEKs, newest first (may be empty: no encryption, allowed in
            development mode only, which the key manager checks).

    Raises:
        ConfigurationError: ``invalid_key_encryption_key`` for a value that is
            not base64url of 32 bytes (the value is never echoed).
    """

    __slots__ = ("_aead", "_current")

    def __init__(self, keks: Sequence[str]) -> None:
        aead: dict[str, AESGCM] = {}
        current: str | None = None
        for position, value in enumerate(keks):
            raw = _parse(value, position)
            name = kek_id(raw)
            aead.setdefault(name, AESGCM(raw))
            if current is None:
                current = name
        self._aead = aead
        self._current = current

    @property
    def configured(self) -> bool:
        """Whether at least one KEK is configured."""
        return self._current is not None

    @property
    def current_id(self) -> str:
        """The ``kek_id`` new records are stored under (``"none"`` without a KEK)."""
        return self._current or UNENCRYPTED

    @property
    def ids(self) -> frozenset[str]:
        """The ``kek_id`` of every configured KEK."""
        return frozenset(self._aead)

    def knows(self, kek_id: str) -> bool:
        """Whether a record stored under ``kek_id`` can be decrypted here."""
        return kek_id in self._aead or kek_id == UNENCRYPTED

    def encrypt(self, kid: str, der: bytes) -> tuple[bytes, str]:
        """Encrypt a private key (PKCS#8 DER) for the record of ``kid``.

        Returns:
            The stored bytes (nonce, then ciphertext and tag) and the ``kek_id``.
        """
        if self._current is None:
            return der, UNENCRYPTED
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[self._current].encrypt(nonce, der, kid.encode("utf-8"))
        return nonce + sealed, self._current

    def decrypt(self, kid: str, stored: bytes, kek_id: str) -> bytes:
        """The PKCS#8 DER of the record of ``kid``.

        Raises:
            UndecryptableKey: ``unknown_key_encryption_key`` (not configured
                here) or ``signing_key_decryption_failed`` (wrong kid, changed
                bytes: the tag does not match).
        """
        if kek_id == UNENCRYPTED:
            return bytes(stored)
        aead = self._aead.get(kek_id)
        if aead is None:
            raise UndecryptableKey("unknown_key_encryption_key")
        if len(stored) < NONCE_BYTES + 16:
            raise UndecryptableKey("signing_key_decryption_failed")
        try:
            return aead.decrypt(
                bytes(stored[:NONCE_BYTES]), bytes(stored[NONCE_BYTES:]), kid.encode("utf-8")
            )
        except InvalidTag:
            raise UndecryptableKey("signing_key_decryption_failed") from None


def generate(alg: SigningAlgorithm) -> Any:
    """A new private key for ``alg`` (P-256, RSA 2048-bit, or Ed25519)."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ConfigurationError("unsupported_signing_algorithm")


def public_jwk(public: Any) -> dict[str, Any]:
    """The public JWK members (``kty`` and the key's own members) of a public key."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        members = ECKey.import_key(public).as_dict(private=False)
    elif isinstance(public, rsa.RSAPublicKey):
        members = RSAKey.import_key(public).as_dict(private=False)
    elif isinstance(public, ed25519.Ed25519PublicKey):
        members = OKPKey.import_key(public).as_dict(private=False)
    else:  # pragma: no cover - only the three algorithms above are generated
        raise TypeError("unsupported key type")
    kty = str(members["kty"])
    return {"kty": kty, **{name: members[name] for name in _KEY_MEMBERS[kty]}}


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url) of a public JWK."""
    return str(_JWK_CLASSES[jwk["kty"]].import_key(dict(jwk)).thumbprint())


def _matches(private: Any, alg: str) -> bool:
    if alg == "ES256":
        return isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(
            private.curve, ec.SECP256R1
        )
    if alg == "RS256":
        return isinstance(private, rsa.RSAPrivateKey) and private.key_size >= RSA_BITS
    if alg == "EdDSA":
        return isinstance(private, ed25519.Ed25519PrivateKey)
    return False


def new_record(
    alg: SigningAlgorithm, encryption: KeyEncryption, *, now: float, active_from: float
) -> SigningKeyRecord:
    """Generate a key and its record: public JWK in clear, private part encrypted.

    CPU-bound (RSA generation takes a good fraction of a second): run it in a
    worker thread.
    """
    private = generate(alg)
    jwk = public_jwk(private.public_key())
    kid = thumbprint(jwk)
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    sealed, kek = encryption.encrypt(kid, der)
    return SigningKeyRecord(
        kid=kid,
        alg=alg,
        public_jwk={**jwk, "kid": kid, "alg": alg, "use": "sig"},
        private_key=sealed,
        kek_id=kek,
        created_at=now,
        active_from=max(active_from, now),
    )


def open_record(record: SigningKeyRecord, encryption: KeyEncryption, *, development: bool) -> Any:
    """The private key of a stored record, decrypted and checked against the record.

    The key must be of the record's algorithm, its public half the record's
    public JWK, and the ``kid`` its thumbprint: someone who can only write
    the table cannot make the issuer trust (or sign with) a key of theirs.

    Raises:
        UndecryptableKey: ``unencrypted_signing_key`` (stored without
            encryption, outside development mode), ``unknown_key_encryption_key``,
            ``signing_key_decryption_failed``, ``invalid_private_key``,
            ``key_does_not_match_alg``, ``public_key_does_not_match``.
    """
    if record.kek_id == UNENCRYPTED and not development:
        raise UndecryptableKey("unencrypted_signing_key")
    der = encryption.decrypt(record.kid, record.private_key, record.kek_id)
    try:
        private = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise UndecryptableKey("invalid_private_key") from None
    if not _matches(private, record.alg):
        raise UndecryptableKey("key_does_not_match_alg")
    computed = public_jwk(private.public_key())
    stored = {k: v for k, v in record.public_jwk.items() if k not in ("kid", "alg", "use")}
    if stored != computed or thumbprint(computed) != record.kid:
        raise UndecryptableKey("public_key_does_not_match")
    return private


@dataclass(frozen=True, slots=True)
class SigningKeyInfo:
    """What ``authbridge keys list`` shows of one key (no key material).

    Attributes:
        kid: The key id (RFC 7638 thumbprint).
        alg: ``ES256``, ``RS256`` or ``EdDSA``.
        state: ``next``, ``active``, ``retired`` or ``revoked``.
        kek_id: The key-encryption key it is stored under (``"none"``: unencrypted).
        created_at: When it was generated and first published.
        active_from: When it signs (signed) from.
        retired_at: When a newer key took over, or ``None``.
        revoked_at: When it was withdrawn, or ``None``.
        published_until: When it leaves the JWKS (``None``: not scheduled yet).
    """

    kid: str
    alg: str
    state: KeyState
    kek_id: str
    created_at: float
    active_from: float
    retired_at: float | None
    revoked_at: float | None
    published_until: float | None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dictionary."""
        return asdict(self)


def chosen_signer(records: Sequence[SigningKeyRecord], now: float) -> SigningKeyRecord | None:
    """The signer every instance picks at ``now``: newest ``active_from`` come, ties by kid."""
    candidates = [
        r for r in records if r.revoked_at is None and r.retired_at is None and r.active_from <= now
    ]
    return max(candidates, key=lambda r: (r.active_from, r.kid), default=None)


def describe_record(
    record: SigningKeyRecord, records: Sequence[SigningKeyRecord], now: float, retention: float
) -> SigningKeyInfo:
    chosen = chosen_signer(records, now)
    state: KeyState
    until: float | None = None
    if record.revoked_at is not None:
        state, until = "revoked", record.revoked_at
    elif record.active_from > now:
        state = "next"
    elif chosen is not None and chosen.kid == record.kid:
        state = "active"
    else:
        state = "retired"
    if record.retired_at is not None and record.revoked_at is None:
        until = record.retired_at + retention
    return SigningKeyInfo(
        kid=record.kid,
        alg=record.alg,
        state=state,
        kek_id=record.kek_id,
        created_at=record.created_at,
        active_from=record.active_from,
        retired_at=record.retired_at,
        revoked_at=record.revoked_at,
        published_until=until,
    )
