"""Every Python snippet in the docs runs.

Per page, in order, in one namespace:
- a block titled with a module path (```` ```python title="myapp/main.py" ````) is written to
  a temporary directory on ``sys.path``, so later blocks can import it (a titled script
  that is not imported, such as ``dev.py``, is only checked to compile);
- every other block is executed;
- then each ``test_*`` function a page defined is called (``fake_issuer`` is supplied;
  coroutines are run), so documented tests really pass.

Constructing apps and providers makes no network request, so production-looking snippets
run here too.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authbridge.testing import FakeIssuer

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r'^```python(?: title="([^"]+)")?[^\n]*\n(.*?)^```', re.S | re.M)


def blocks(page: Path) -> list[tuple[str | None, str]]:
    return BLOCK.findall(page.read_text(encoding="utf-8")) and [
        (title or None, code) for title, code in BLOCK.findall(page.read_text(encoding="utf-8"))
    ]


PAGES = [p for p in sorted(DOCS.rglob("*.md")) if blocks(p)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_snippets_run(
    page: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    authbridge_signing_key: rsa.RSAPrivateKey,
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem}"}
    label = page.relative_to(DOCS).as_posix()
    try:
        for index, (title, code) in enumerate(blocks(page)):
            where = f"{label}#{index}"
            if title and title.endswith(".py") and not title.startswith("tests/"):
                target = tmp_path / title
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(code, encoding="utf-8")
                compile(code, where, "exec")
                continue
            exec(compile(code, where, "exec"), namespace)
        tests = {n: f for n, f in namespace.items() if n.startswith("test_") and callable(f)}
        for name, function in tests.items():
            params = inspect.signature(function).parameters
            if hasattr(function, "pytestmark") or not set(params) <= {"fake_issuer"}:
                continue
            kwargs = {"fake_issuer": FakeIssuer(key=authbridge_signing_key)} if params else {}
            result = function(**kwargs)
            if inspect.iscoroutine(result):
                asyncio.run(result)
            assert result is None or inspect.iscoroutine(result), name
    finally:
        for module in set(sys.modules) - before:
            if module.split(".")[0] not in ("authbridge", "fastapi", "starlette", "httpx"):
                sys.modules.pop(module, None)


SRC = DOCS.parent / "src" / "authbridge"
LOGIN_REASON = re.compile(r'LoginError\(\s*f?"([a-z_]+:?)')


def test_every_login_refusal_reason_is_explained_in_login_md() -> None:
    reasons = {
        match.group(1)
        for path in SRC.rglob("*.py")
        for match in LOGIN_REASON.finditer(path.read_text(encoding="utf-8"))
    }
    assert {"state_unknown", "browser_mismatch", "iss_mismatch", "account_refused"} <= reasons
    page = (DOCS / "login.md").read_text(encoding="utf-8")
    exchange = (DOCS / "token-exchange.md").read_text(encoding="utf-8")
    missing = sorted(r for r in reasons if f"`{r}" not in page and f"`{r}" not in exchange)
    assert missing == [], f"login refusal reasons not explained in docs/login.md: {missing}"


def test_the_seed_page_labels_every_question_with_a_legend_label() -> None:
    text = (DOCS / "seed-questions.md").read_text(encoding="utf-8")
    legend = re.search(r"^Labels: (.*(?:\n\S.*)*)", text, re.M)
    assert legend is not None
    labels = set(re.findall(r"\*\*([^*]+)\*\*", legend.group(1)))
    assert labels == {"Available now"}
    body = text[legend.end() :]
    found = re.findall(r"\*\*((?:Available|Planned)[^*]*)\*\*", body)
    used = {label.rstrip(":.") for label in found}
    used |= {f"Planned: {m}" for m in re.findall(r"\*\*planned:\s*([^*]+?)\*\*", body)}
    assert used <= labels | {"Available now" + s for s in ("", " too")}, used
    questions = re.split(r"^### ", body, flags=re.M)[1:]
    assert len(questions) >= 10
    for question in questions:
        assert "**Available now" in question, question.splitlines()[0]
    assert "login flows" not in text  # the planned labels this release delivered are gone
    assert "planned: token exchange" not in text.lower()
    assert "planned" not in body.lower()  # delegation, the last planned work, is available
