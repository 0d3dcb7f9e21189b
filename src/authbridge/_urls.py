"""Showing a store or Redis URL without the credentials it may hold.

Shared by the settings (``repr``, ``model_dump``), the store's ``repr`` and the
command line's messages: one rule for every place a URL is shown.
"""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit

MASK = "***"
"""What a hidden password is shown as."""

SECRET_PARAMETERS = frozenset({"password"})
"""Query parameters holding a credential (redis-py and asyncpg take ``?password=``);
compared without case, after percent-decoding."""


def _masked_query(query: str) -> str:
    pieces: list[str] = []
    for piece in query.split("&"):
        name, equals, _ = piece.partition("=")
        if unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            pieces.append(f"{name}={MASK}" if equals else piece)
        else:
            pieces.append(piece)
    return "&".join(pieces)


def redact_url(url: str, *, unparsable: str = "<unparsable URL>") -> str:
    """``url`` with every password replaced by ``***``.

    The userinfo's password (``redis://:PASSWORD@host``) and each query
    parameter named ``password`` (any case: ``?password=``, ``?PassWord=``)
    are masked; a fragment, where a password with an unescaped ``#`` would
    end up, is masked whole. The rest of the URL is shown as given.

    Args:
        url: A store or Redis URL.
        unparsable: Shown instead of a URL that does not parse (nothing of it).
    """
    try:
        password = urlsplit(url).password
    except ValueError:
        return unparsable
    # Split as urlsplit does (the fragment at the first '#', the query at the first '?'
    # before it), but put the URL back together as given (unix:///PATH keeps its '//').
    rest, hashed, fragment = url.partition("#")
    rest, asked, query = rest.partition("?")
    if password is not None:
        scheme, slashes, after = rest.partition("//")
        netloc, slash, path = after.partition("/")
        user = netloc.rsplit("@", 1)[0].split(":", 1)[0]
        host = netloc.rsplit("@", 1)[1]
        rest = f"{scheme}{slashes}{user}:{MASK}@{host}{slash}{path}"
    return rest + asked + _masked_query(query) + hashed + (MASK if fragment else "")
