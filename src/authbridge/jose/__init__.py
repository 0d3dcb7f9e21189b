"""Thin, strict JOSE layer: compact JWS parsing, key sets, remote JWKS, JWT claim checks.

Key material is imported with joserfc; signatures are verified with
``cryptography`` directly after strict parsing (see ``docs/decisions.md``).
"""

from ._compact import ParsedJWT, parse_compact
from ._jwt import JWTPolicy, check_claims, check_header
from .keys import KeySet, VerificationKey, import_jwks, key_from_secret
from .remote import RemoteJWKS

__all__ = [
    "JWTPolicy",
    "KeySet",
    "ParsedJWT",
    "RemoteJWKS",
    "VerificationKey",
    "check_claims",
    "check_header",
    "import_jwks",
    "key_from_secret",
    "parse_compact",
]
