"""The provider recipes (docs/providers/*.md): every Python block runs, every preset has one.

Same approach as tests/test_docs.py: per page, in order, in one namespace, each block is
executed (a block titled with a module path is only compiled). Constructing apps and
providers makes no network request, so the production-looking snippets run here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "providers"
BLOCK = re.compile(r'^```python(?: title="([^"]+)")?[^\n]*\n(.*?)^```', re.S | re.M)
PRESETS = (
    "oidc", "google", "github", "entra", "gitlab", "facebook",
    "apple", "keycloak", "auth0", "okta", "cognito",
)  # fmt: skip


def blocks(page: Path) -> list[tuple[str | None, str]]:
    return [(title or None, code) for title, code in BLOCK.findall(page.read_text("utf-8"))]


PAGES = sorted(p for p in DOCS.glob("*.md") if blocks(p))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_python_block_runs(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default SQLite file, if anything opened it, lands here
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    namespace: dict[str, Any] = {"__name__": f"recipe_{page.stem}"}
    try:
        for index, (title, code) in enumerate(blocks(page)):
            where = f"{page.name}#{index}"
            if title and title.endswith(".py"):
                compile(code, where, "exec")
                continue
            exec(compile(code, where, "exec"), namespace)
    finally:
        for module in set(sys.modules) - before:
            if module.split(".")[0] not in ("authbridge", "fastapi", "starlette", "httpx"):
                sys.modules.pop(module, None)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_has_a_login_recipe(name: str) -> None:
    page = DOCS / f"{name}.md"
    text = page.read_text("utf-8")
    assert "/oauth/callback" in text, "the redirect URI to register"
    login_blocks = [
        code for _, code in blocks(page) if "AuthBridge(" in code and "AppIssuer(" in code
    ]
    assert login_blocks, f"{page.name}: no AuthBridge(providers=[...], issuer=AppIssuer(...))"
    assert any("issuer=AppIssuer(" in code for code in login_blocks)


def test_the_blocks_really_run() -> None:
    bad = DOCS / "oidc.md"
    code = next(code for _, code in blocks(bad) if "OIDCProvider(" in code)
    with pytest.raises(Exception):  # noqa: B017, PT011 - a broken snippet must fail
        exec(compile(code.replace('issuer="https://op', 'issuer="op'), "x", "exec"), {})
