"""docs/why-401.md explains every refusal reason the source can produce."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "authbridge"
WHY_401 = Path(__file__).resolve().parents[1] / "docs" / "why-401.md"
_ERRORS = {"InvalidToken", "ProviderUnavailable", "MissingToken"}
# Where `reason = ...` names an OAuth grant's or the store's own code (documented with the
# issuer), not a bearer token's refusal; their InvalidToken/ProviderUnavailable calls count.
_OWN_REASONS_ELSEWHERE = ("issuer", "store")


def _literal(node: ast.expr, constants: dict[str, str]) -> str | None:
    """A reason code, or its fixed part (``f"http_status:{n}"`` gives ``http_status:``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.JoinedStr):
        first, last = node.values[0], node.values[-1]
        for part in (first, last):
            if isinstance(part, ast.Constant) and part.value.strip("_:"):
                return str(part.value)
    return None


def reason_codes() -> set[str]:
    codes: set[str] = set()
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            node.targets[0].id: node.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            found: ast.expr | None = None
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name in _ERRORS or name == "refusal":
                    found = node.args[0]
            elif (
                isinstance(node, ast.Assign)
                and path.relative_to(SRC).parts[0] not in _OWN_REASONS_ELSEWHERE
                and any(isinstance(t, ast.Name) and t.id == "reason" for t in node.targets)
            ):
                found = node.value
            elif isinstance(node, ast.FunctionDef) and node.name.endswith("_reason"):
                codes.update(
                    code
                    for ret in ast.walk(node)
                    if isinstance(ret, ast.Return) and ret.value is not None
                    for code in [_literal(ret.value, constants)]
                    if code
                )
            if found is not None:
                code = _literal(found, constants)
                if code:
                    codes.add(code)
    return codes


def test_every_reason_code_is_explained() -> None:
    codes = reason_codes()
    assert {"audience_mismatch", "unknown_issuer", "no_credentials", "timeout"} <= codes
    assert "http_status:" in codes  # f-strings count by their fixed part
    page = WHY_401.read_text(encoding="utf-8")
    missing = sorted(c for c in codes if f"`{c.strip(':')}" not in page and f"{c}`" not in page)
    assert missing == [], f"reasons not explained in docs/why-401.md: {missing}"
