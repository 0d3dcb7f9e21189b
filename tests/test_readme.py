"""The README's quickstart is real code: run its Python blocks in order."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


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
