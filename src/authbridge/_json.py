"""JSON text whose strings can be passed on: no lone surrogates (RFC 7493 §2.1).

JSON's ``\\uXXXX`` escapes can spell half of a UTF-16 surrogate pair on its own
(``"\\ud800"``). Python decodes that to a ``str`` holding a lone surrogate, which
cannot be encoded as UTF-8: it would reach a `Principal`, then fail when a log
line or a response is written (a 500), or be stored under a different spelling
than the issuer meant. Strict UTF-8 input cannot contain a surrogate, so only an
escape can produce one: the values are inspected only when the text has a
``\\u`` at all, which keeps the common path to one substring search.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["UnencodableText", "has_lone_surrogate", "loads", "surrogate_escaped"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_BOM = b"\xef\xbb\xbf"


class UnencodableText(ValueError):
    """JSON text decoded to a string that holds a lone surrogate."""


def has_lone_surrogate(value: Any) -> bool:
    """Whether any string in ``value`` (object keys included, at any depth) has a surrogate.

    The JSON decoder joins a properly paired escape (``"\\ud83d\\ude00"``) into one
    code point, so any surrogate left in a decoded string is a lone one. The
    walk uses an explicit stack: the decoder accepts nesting close to the
    recursion limit.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            for key, member in item.items():
                if not key.isascii() and _SURROGATE.search(key):
                    return True
                if not isinstance(member, int | float | bool) and member is not None:
                    stack.append(member)
        elif isinstance(item, list):
            stack.extend(item)
    return False


def surrogate_escaped(text: str, value: Any) -> bool:
    """Whether ``value``, decoded from the strict UTF-8 JSON ``text``, holds a lone surrogate.

    Only a ``\\u`` escape can put a surrogate in a value decoded from text that was
    itself decoded strictly from UTF-8; without one the answer is ``False`` at the
    cost of one substring search.
    """
    return "\\u" in text and has_lone_surrogate(value)


def loads(data: bytes) -> Any:
    """Parse a JSON document received from elsewhere, as strict UTF-8.

    A leading UTF-8 byte order mark is ignored (RFC 8259 §8.1 allows it);
    other encodings are refused, as is any string holding a lone surrogate.

    Raises:
        UnencodableText: a string decoded to a lone surrogate (a subclass of
            ValueError).
        ValueError: the bytes are not UTF-8 or not one JSON value.
        RecursionError: the nesting is deeper than the decoder can follow.
    """
    # json.loads(bytes) would guess UTF-16/32 and decode with "surrogatepass",
    # letting encoded surrogates through without any escape.
    text = data.removeprefix(_BOM).decode("utf-8")
    value = json.loads(text)
    if surrogate_escaped(text, value):
        raise UnencodableText("lone_surrogate")
    return value
