"""The API reference renders: no Sphinx roles, defaults shown as values.

mkdocstrings renders markdown cross-references, not Sphinx roles, and shows a
default as it is written in the signature. The docs build (``mkdocs build
--strict``, with the hook in ``docs/_hooks``) fails on either leftover; these
tests find them in the source first, and check that the literal defaults of
public signatures equal the constants the code uses.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
from pathlib import Path

import pytest

from authbridge import AuthBridge, GitHubProvider, GoogleProvider, OIDCProvider, ResourceServer
from authbridge._http import DEFAULT_TIMEOUT
from authbridge.providers import github, google

SRC = Path(__file__).resolve().parents[1] / "src" / "authbridge"
ROLE = re.compile(r":(?:py:)?(?:class|meth|mod|func|attr|data|exc|obj|const):`")


@pytest.mark.parametrize(
    "path", sorted(SRC.rglob("*.py")), ids=lambda p: p.relative_to(SRC).as_posix()
)
def test_no_sphinx_roles_in_docstrings(path: Path) -> None:
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ROLE.search(line)
    ]
    assert not found, "use [Name][authbridge.Name] or backticks:\n" + "\n".join(found)


def test_hook_flags_roles_and_constant_defaults() -> None:
    spec = importlib.util.spec_from_file_location(
        "reference_check", SRC.parents[1] / "docs" / "_hooks" / "reference_check.py"
    )
    assert spec is not None
    assert spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)

    class Page:
        class file:
            src_path = "reference.md"

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    hook.log.addHandler(handler)
    try:
        html = (
            "<p>See :class:<code>Principal</code>.</p>"
            '<div class="doc-signature highlight"><span>timeout</span>=<span>DEFAULT_TIMEOUT'
            "</span></div>"
            '<div class="doc-signature highlight"><span>timeout</span>=<span>5.0</span></div>'
        )
        assert hook.on_page_content(html, page=Page()) == html
    finally:
        hook.log.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert len(messages) == 2, messages
    assert "Sphinx role" in messages[0]
    assert "DEFAULT_TIMEOUT" in messages[1]


def _default(function: object, name: str) -> object:
    return inspect.signature(function).parameters[name].default  # type: ignore[arg-type]


def test_literal_defaults_equal_the_constants() -> None:
    assert _default(AuthBridge, "http_timeout") == DEFAULT_TIMEOUT
    assert _default(ResourceServer, "http_timeout") == DEFAULT_TIMEOUT
    assert _default(OIDCProvider.bind, "timeout") == DEFAULT_TIMEOUT
    assert _default(GoogleProvider.bind, "timeout") == DEFAULT_TIMEOUT
    assert _default(GitHubProvider, "token_prefixes") == github.GITHUB_TOKEN_PREFIXES
    assert _default(GoogleProvider, "tokeninfo_url") == google.GOOGLE_TOKENINFO
    assert _default(GoogleProvider, "jwks_uri") == google.GOOGLE_JWKS_URI
