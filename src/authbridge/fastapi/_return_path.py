"""Where a login may send the browser afterwards: same-origin relative paths only.

A ``next=`` parameter is attacker-controlled (a link in a mail), so anything
a browser could read as another origin is refused, whatever its spelling:
absolute and scheme-relative URLs (``https://evil``, ``//evil``, ``/\\evil``,
``\\\\evil``), encoded slashes and backslashes (``/%2F%2Fevil``,
``/%5Cevil``), schemes (``javascript:``, ``data:``), userinfo and look-alike
hosts (only paths are accepted, so no host at all), control characters,
whitespace and anything outside printable ASCII (CR/LF, tabs and newlines
inside, the full-width solidus and reverse solidus U+FF0F and U+FF3C, which
some parsers fold to ``/`` and ``\\``), and dot segments (``/..//evil`` normalises to ``//evil``).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, urlsplit

from ..errors import LoginError

MAX_RETURN_PATH = 2048
"""Longest return path accepted, in characters."""

# Printable ASCII except the backslash (some browsers read it as '/').
_ALLOWED = re.compile(r"[!-\[\]-~]*")
# Encoded '/', '\', '.', '%' (double encoding) or a control character.
_ENCODED_DANGER = re.compile(r"%(?:2f|5c|2e|25|[01][0-9a-f]|7f)", re.IGNORECASE)


def safe_return_path(value: str | None, *, default: str) -> str:
    """``value`` if it is a plain path of this app, ``default`` when it is absent or empty.

    Args:
        value: The ``next`` parameter as received (already percent-decoded
            once by the query parser).
        default: The configured path used when there is no ``next``.

    Raises:
        LoginError: ``unsafe_return_path`` for anything else (never
            silently replaced by the default: a crafted link should fail
            visibly).
    """
    if value is None or value == "":
        return default
    if not is_safe_return_path(value):
        raise LoginError("unsafe_return_path")
    return value


def is_safe_return_path(value: str) -> bool:
    """Whether ``value`` is a same-origin relative path (see the module's rules)."""
    if len(value) > MAX_RETURN_PATH or not _ALLOWED.fullmatch(value):
        return False
    if not value.startswith("/") or value.startswith("//"):
        return False
    if _ENCODED_DANGER.search(value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if parts.scheme or parts.netloc:
        return False
    try:
        decoded = unquote(parts.path, errors="strict")
    except UnicodeDecodeError:
        return False
    # What a lenient parser might make of it: full-width and other compatibility
    # forms of '/', '\\' and '.' folded (NFKC), then the same rules again.
    path = unicodedata.normalize("NFKC", decoded)
    if "\\" in path or "//" in path or any(_invisible(c) for c in path):
        return False
    return not any(segment in (".", "..") for segment in path.split("/"))


def _invisible(char: str) -> bool:
    """Control, format and separator characters (CR, LF, tab, NUL, bidi marks, spaces)."""
    return unicodedata.category(char)[0] in "CZ"
