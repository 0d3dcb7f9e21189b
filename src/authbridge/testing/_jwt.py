"""Compact JWS signing and checking for the fakes (RS256 and HS256 out, ES256 in)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = ["sign_jwt"]

_SHA256 = hashes.SHA256()
_PKCS1 = padding.PKCS1v15()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Decode unpadded base64url; raises ``ValueError`` on anything else."""
    if not text or any(c not in _B64URL for c in text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as error:
        raise ValueError("not base64url") from error


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def sign_jwt(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    key: rsa.RSAPrivateKey | bytes | None,
) -> str:
    """Sign a compact JWS with an RSA key (RS256), an HMAC secret (HS256) or nothing.

    The header is used as given, so tests can craft any ``alg``/``typ``/``kid``.
    """
    signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
    if key is None:
        signature = b""
    elif isinstance(key, bytes):
        signature = hmac.digest(key, signing_input.encode("ascii"), hashlib.sha256)
    else:
        signature = key.sign(signing_input.encode("ascii"), _PKCS1, _SHA256)
    return f"{signing_input}.{_b64(signature)}"


def _public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": _int_b64(numbers.n),
        "e": _int_b64(numbers.e),
    }


def _half_hash(value: str) -> str:
    """OIDC ``at_hash``/``c_hash`` for RS256/ES256: the left half of SHA-256, base64url."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return _b64(digest[: len(digest) // 2])


def _es256_sign(
    key: ec.EllipticCurvePrivateKey, header: Mapping[str, Any], claims: Mapping[str, Any]
) -> str:
    """An ES256 compact JWS (``r || s``, 64 bytes), as a client builds Apple's client secret."""
    signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(_SHA256))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _es256_verify(
    token: str, key: ec.EllipticCurvePublicKey
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(header, claims)`` of an ES256 compact JWS signed by ``key``, or ``None``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        raw = _unb64(parts[2])
    except ValueError:
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "ES256":
        return None
    if len(raw) != 64:
        return None
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(_SHA256))
    except InvalidSignature:
        return None
    return header, claims


class _Signer:
    """An RSA signing key (made on first use), its JWKS and one-shot ID-token tampering."""

    def __init__(self, key: rsa.RSAPrivateKey | None, kid: str) -> None:
        self._key = key
        self.kid = kid
        self._tamper: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._lock = threading.Lock()

    @property
    def key(self) -> rsa.RSAPrivateKey:
        with self._lock:
            if self._key is None:
                self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return self._key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [_public_jwk(self.key, self.kid)]}

    def tamper_next(self, header: Mapping[str, Any] | None, claims: Mapping[str, Any]) -> None:
        with self._lock:
            self._tamper.append((dict(header or {}), dict(claims)))

    def id_token(self, claims: Mapping[str, Any]) -> str:
        """Sign ``claims`` (RS256, ``typ: JWT``), applying the next pending tampering."""
        with self._lock:
            header_extra, claims_extra = self._tamper.pop(0) if self._tamper else ({}, {})
        header: dict[str, Any] = {"alg": "RS256", "kid": self.kid, "typ": "JWT", **header_extra}
        merged = {k: v for k, v in {**claims, **claims_extra}.items() if v is not None}
        key = None if header.get("alg") == "none" else self.key
        return sign_jwt({k: v for k, v in header.items() if v is not None}, merged, key)
