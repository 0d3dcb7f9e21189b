"""mkdocs hook: fail the (strict) docs build on API-reference leftovers.

Docstrings are rendered by mkdocstrings, which understands markdown
cross-references (``[Principal][authbridge.Principal]``), not Sphinx roles: a
``:class:`X``` would show up as literal text. Signatures should show default
values, not the names of module constants. Each leftover is logged as a
warning, and ``mkdocs build --strict`` turns warnings into a failure.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

log = logging.getLogger("mkdocs.plugins.authbridge")

# A Sphinx role as it survives rendering: ":class:`Foo`" becomes ":class:<code>Foo</code>".
_ROLE = re.compile(r":(?:py:)?(?:class|meth|mod|func|attr|data|exc|obj|ref|const):(?:<code>|`)")
# "= SOME_CONSTANT" in a rendered signature (defaults should be values).
_CONSTANT_DEFAULT = re.compile(r"=\s*(?:<[^>]+>)*\s*([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b")
_SIGNATURE = re.compile(r'<div class="doc-signature[^"]*">(.*?)</div>', re.S)


def on_page_content(page_html: str, page: Any, **_: Any) -> str:
    """Warn about every Sphinx role and constant-named default on the page."""
    where = page.file.src_path
    for match in _ROLE.finditer(page_html):
        start = max(0, match.start() - 40)
        context = html.unescape(re.sub(r"<[^>]+>", "", page_html[start : match.end() + 40]))
        log.warning("%s: Sphinx role left in a docstring: ...%s...", where, context.strip())
    for signature in _SIGNATURE.findall(page_html):
        text = re.sub(r"<[^>]+>", "", signature)
        for name in _CONSTANT_DEFAULT.findall(html.unescape(text)):
            log.warning("%s: a signature shows the constant %s, not its value", where, name)
    return page_html
