"""The README's quickstart is real code: run its Python blocks in order."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
DOCS = README.parent / "docs"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_quickstart_runs() -> None:
    blocks = _python_blocks()
    assert len(blocks) >= 2, "the quickstart and its testing block"
    namespace: dict[str, object] = {"__name__": "readme_quickstart"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert "app" in namespace


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "./scripts/demo" in text
    assert "./scripts/test" in text
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "./scripts/test" in ci


def _pip_installs(text: str) -> list[list[str]]:
    """The arguments of every ``pip install`` command line (shell comments removed)."""
    lines = re.findall(r"^\s*(?:\$ )?(?:python -m )?pip install (.+)$", text, re.M)
    return [shlex.split(line, comments=True) for line in lines]


@pytest.mark.parametrize(
    "page",
    [README, *sorted(DOCS.rglob("*.md"))],
    ids=lambda p: p.relative_to(README.parent).as_posix(),
)
def test_install_commands_install_from_a_checkout(page: Path) -> None:
    # authbridge is on no package index: `pip install authbridge` finds nothing. Every
    # documented install names a path (".", "./authbridge", ...) instead.
    for arguments in _pip_installs(page.read_text(encoding="utf-8")):
        names = [re.split(r"[\[<>=!~;@ ]", a)[0] for a in arguments if not a.startswith("-")]
        assert "authbridge" not in names, arguments


def test_readme_installs_from_a_checkout() -> None:
    installs = _pip_installs(README.read_text(encoding="utf-8"))
    assert any(a and a[-1].split("[")[0] in (".", "./authbridge") for a in installs), installs
    assert "git clone" in README.read_text(encoding="utf-8")
