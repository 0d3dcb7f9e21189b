"""Strict parsing of compact-serialized JWS tokens (RFC 7515 §7.1).

Everything here is cheap and bounded: the size cap is checked before any
decoding, then the alphabet and the segment count; base64url must be canonical
and unpadded, JSON must be UTF-8 objects without duplicate member names,
non-finite numbers or lone surrogates, nested at most 128 levels deep.
"""

from __future__ import annotations

import binascii
import json
import math
import sys
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from .._json import has_lone_surrogate, nested_deeper_than
from ..errors import InvalidToken

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_VALUE = {c: i for i, c in enumerate(_B64_ALPHABET)}
_TO_STD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", None, b"==", b"=")


class ParsedJWT(NamedTuple):
    """A structurally valid, *unverified* compact JWS.

    ``claims`` must not be trusted before the signature has been verified.
    ``header`` is read-only (it may be shared with other parses of tokens
    that carry the very same header).
    """

    header: Mapping[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def b64url_decode(segment: str) -> bytes:
    """Decode canonical, unpadded base64url or raise `InvalidToken`."""
    try:
        raw = segment.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidToken("malformed_base64url") from None
    return _b64decode(raw)


def _b64decode(segment: bytes) -> bytes:
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
        # bytes.translate is a table lookup in C.
        return binascii.a2b_base64(segment.translate(_TO_STD) + pad, strict_mode=True)
    except binascii.Error:
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
    """Parse ``raw`` as a UTF-8 JSON object, strictly.

    Raises:
        InvalidToken: ``malformed_<what>`` (also for nesting deeper than
            128 levels), ``<what>_not_an_object``,
            ``duplicate_json_member``, ``non_finite_number``, or
            ``invalid_unicode`` when a string (a member name too) decodes to a
            lone surrogate.
    """
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
    # Within the decoder's reach but beyond what serialisers follow (a 500 later).
    if nested_deeper_than(text, value):
        raise InvalidToken(f"malformed_{what}")
    # surrogate_escaped() inlined: this runs twice per first-sight token.
    if "\\u" in text and has_lone_surrogate(value):
        raise InvalidToken("invalid_unicode")
    return value


class _HeaderCache:
    """Decoded headers of tokens that have verified, bounded in bytes.

    An issuer sends the same few headers over and over, so decoding one once
    is worth it, but only once a token carrying it has passed a signature
    check: anything else is attacker data. `parse_compact` leaves the last
    header it had to decode in `pending` (one small header at most); a
    signature check that succeeds for a token with that very header segment
    moves it into the cache (`remember_header`). Only small, flat headers
    (every value a string, number, boolean or null) are kept, behind a
    read-only mapping, so what is handed out can be shared safely. Oldest
    entries go first when the byte budget is reached.

    Attributes:
        headers: Header segment -> decoded header; read directly on every parse.
        pending: ``(segment + b".", header)`` of the last header decoded and
            not cached yet, or ``None``.
        bytes_used: What the entries hold, estimated per entry when it is added.
    """

    __slots__ = ("_costs", "_lock", "budget", "bytes_used", "headers", "max_segment", "pending")

    def __init__(self, *, budget: int, max_segment: int) -> None:
        self.headers: dict[bytes, Mapping[str, Any]] = {}
        self.pending: tuple[bytes, Mapping[str, Any]] | None = None
        self._costs: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self.budget = budget
        self.max_segment = max_segment
        self.bytes_used = 0

    def __len__(self) -> int:
        return len(self.headers)

    def __contains__(self, segment: object) -> bool:
        return segment in self.headers

    def add(self, segment: bytes, header: Mapping[str, Any]) -> None:
        """Keep ``header``, decoded from ``segment``, if it is small and flat."""
        if len(segment) > self.max_segment or not all(_flat(v) for v in header.values()):
            return
        cost = _cost(segment, header)
        with self._lock:
            if segment in self.headers or cost > self.budget:
                return
            costs = self._costs
            while self.bytes_used + cost > self.budget:
                oldest = next(iter(costs))
                self.bytes_used -= costs.pop(oldest)
                del self.headers[oldest]
            costs[segment] = cost
            self.headers[segment] = header
            self.bytes_used += cost

    def clear(self) -> None:
        with self._lock:
            self.headers.clear()
            self._costs.clear()
            self.bytes_used = 0
            self.pending = None


def _flat(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


# What one entry holds besides its key and dict, roughly: the read-only view, the
# cost, and one slot in each of the cache's two tables.
_ENTRY_OVERHEAD = sys.getsizeof(MappingProxyType({})) + sys.getsizeof(2**20) + 2 * 64


def _cost(segment: bytes, header: Mapping[str, Any]) -> int:
    members = sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in header.items())
    return sys.getsizeof(segment) + sys.getsizeof(dict(header)) + members + _ENTRY_OVERHEAD


_HEADERS = _HeaderCache(budget=64 * 1024, max_segment=512)
_CACHED = _HEADERS.headers  # one dict lookup per token, no method call


def remember_header(signing_input: bytes) -> None:
    """Mark the header of a token whose signature just verified as worth caching.

    Costs one attribute read when the header came from the cache: it is called
    after every successful signature check.
    """
    pending = _HEADERS.pending
    if pending is not None and signing_input.startswith(pending[0]):
        _HEADERS.pending = None
        _HEADERS.add(pending[0][:-1], pending[1])


def parse_compact(token: str, *, max_bytes: int) -> ParsedJWT:
    """Split and decode a compact JWS without verifying it.

    Args:
        token: The token as presented (no surrounding whitespace allowed).
        max_bytes: Upper bound on the token length, checked first.

    Returns:
        The parts; ``header`` is a read-only mapping, ``claims`` a new dict.

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
    # strict mode in _b64decode rejects everything else outside the alphabet.
    # (These searches, and the split, are several times faster on str than on bytes.)
    if not (h64 and p64 and s64) or "+" in token or "/" in token or "=" in token:
        raise InvalidToken("malformed_token")
    h64b = h64.encode("ascii")
    header = _CACHED.get(h64b)
    if header is None:
        header = MappingProxyType(json_object(_b64decode(h64b), "header"))
        if len(h64b) <= _HEADERS.max_segment:
            _HEADERS.pending = (h64b + b".", header)
    claims = json_object(_b64decode(p64.encode("ascii")), "payload")
    signature = _b64decode(s64.encode("ascii"))
    return ParsedJWT(
        header=header,
        claims=claims,
        signing_input=token[: len(h64) + 1 + len(p64)].encode("ascii"),
        signature=signature,
    )
