"""Strict parsing of compact-serialized JWS tokens (RFC 7515 §7.1).

Everything here is cheap and bounded: the size cap is checked before any
decoding, the alphabet and segment count by one regular expression, base64url
must be canonical and unpadded, JSON must be UTF-8 objects without duplicate
member names or non-finite numbers.
"""

from __future__ import annotations

import binascii
import json
import math
from typing import Any, NamedTuple

from ..errors import InvalidToken

_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_VALUE = {c: i for i, c in enumerate(_B64_ALPHABET)}
_TO_STD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", None, b"==", b"=")


class ParsedJWT(NamedTuple):
    """A structurally valid, *unverified* compact JWS.

    ``claims`` must not be trusted before the signature has been verified.
    """

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def b64url_decode(segment: str) -> bytes:
    """Decode canonical, unpadded base64url or raise :class:`InvalidToken`."""
    pad = _PADDING[len(segment) % 4]
    if pad is None:
        raise InvalidToken("malformed_base64url")
    # The final character may only use the bits that carry data: otherwise
    # several spellings decode to the same bytes.
    if pad:
        unused = 0x0F if pad == b"==" else 0x03
        if _B64_VALUE.get(segment[-1], 0) & unused:
            raise InvalidToken("non_canonical_base64url")
    try:
        # str.translate is slow; bytes.translate is a table lookup in C.
        raw = segment.encode("ascii").translate(_TO_STD) + pad
        return binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidToken("malformed_base64url") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise InvalidToken("duplicate_json_member")
    return obj


def _reject_constant(name: str) -> Any:
    raise InvalidToken("non_finite_number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to inf
        raise InvalidToken("non_finite_number")
    return value


_JSON_WHITESPACE = " \t\n\r"

# One decoder for all calls: json.loads with options builds a new one every time.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_reject_duplicates,
    parse_constant=_reject_constant,
    parse_float=_finite_float,
)


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Parse ``raw`` as a UTF-8 JSON object, strictly."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidToken(f"malformed_{what}") from None
    if text[:1] in _JSON_WHITESPACE or text[-1:] in _JSON_WHITESPACE:
        text = text.strip(_JSON_WHITESPACE)  # JSON allows it; tokens rarely have it
    try:
        # raw_decode: decode() without its two whitespace scans (done above).
        value, end = _DECODER.raw_decode(text)
    except InvalidToken:
        raise
    except (ValueError, RecursionError):
        # JSONDecodeError is a ValueError; huge integers hit the int-conversion
        # limit (ValueError); deep nesting raises RecursionError.
        raise InvalidToken(f"malformed_{what}") from None
    if end != len(text):
        raise InvalidToken(f"malformed_{what}")
    if not isinstance(value, dict):
        raise InvalidToken(f"{what}_not_an_object")
    return value


_HEADER_CACHE: dict[str, dict[str, Any]] = {}
_HEADER_CACHE_SIZE = 256


def _header(segment: str) -> dict[str, Any]:
    # An issuer sends the same few headers over and over: decoding a given
    # segment always gives the same result, so remember a bounded number of
    # them. Callers never mutate a header.
    header = _HEADER_CACHE.get(segment)
    if header is None:
        header = json_object(b64url_decode(segment), "header")
        if len(_HEADER_CACHE) >= _HEADER_CACHE_SIZE:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[segment] = header
    return header


def parse_compact(token: str, *, max_bytes: int) -> ParsedJWT:
    """Split and decode a compact JWS without verifying it.

    Args:
        token: The token as presented (no surrounding whitespace allowed).
        max_bytes: Upper bound on the token length, checked first.

    Raises:
        InvalidToken: with a reason naming the structural defect.
    """
    if len(token) > max_bytes:
        raise InvalidToken("token_too_large")
    if not token.isascii():
        raise InvalidToken("malformed_token")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("jwe_not_accepted" if len(parts) == 5 else "malformed_token")
    h64, p64, s64 = parts
    # base64url only: "+", "/" and "=" belong to other alphabets or to padding;
    # b64url_decode's strict mode rejects everything else outside the alphabet.
    if not (h64 and p64 and s64) or "+" in token or "/" in token or "=" in token:
        raise InvalidToken("malformed_token")
    header = _header(h64)
    claims = json_object(b64url_decode(p64), "payload")
    signature = b64url_decode(s64)
    return ParsedJWT(
        header=header,
        claims=claims,
        signing_input=token[: len(h64) + 1 + len(p64)].encode("ascii"),
        signature=signature,
    )
