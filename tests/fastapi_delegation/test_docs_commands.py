"""Every command of docs/delegation.md runs, in order, against the page's own app.

The page's ``console`` blocks hold ``$ authbridge ...`` and ``$ curl ...`` lines
followed by what they print. Here each ``authbridge`` line runs through the
command line's own entry point (with ``--store`` added), and each ``curl``
line is read as curl reads it (``-X``, ``-H``, ``-d``, ``--json``, ``-u``,
``-w '%{http_code}\\n'``) and sent to the app defined in the page's first
Python block. ``$NAME`` variables take the values the earlier answers gave.
What the page shows is checked against what came back: the same JSON members
at every level, the same literal values, ``...`` standing for the rest of a
string, and numbers as numbers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from typer.testing import CliRunner

from authbridge.cli import app as authbridge_cli
from authbridge.store import ClientRecord, UserRecord

PAGE = Path(__file__).resolve().parents[2] / "docs" / "delegation.md"
CONSOLE = re.compile(r"^```console\n(.*?)^```", re.S | re.M)
PYTHON = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
VARIABLE = re.compile(r"\$([A-Z_]+)")
PASSWORD = "correct horse battery staple"


@dataclass
class Command:
    line: str
    shown: list[str] = field(default_factory=list)


def commands() -> list[Command]:
    found: list[Command] = []
    for block in CONSOLE.findall(PAGE.read_text(encoding="utf-8")):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append(Command(line[2:]))
            elif found and line.strip():
                found[-1].shown.append(line)
    return found


def page_app() -> Any:
    """The ``garage_app`` factory of the page's first Python block."""
    namespace: dict[str, Any] = {"__name__": "docs_delegation_app"}
    exec(PYTHON.findall(PAGE.read_text(encoding="utf-8"))[0], namespace)
    return namespace["garage_app"]


def matches(shown: Any, actual: Any, where: str = "") -> None:
    """``actual`` has what the page shows (see the module's description)."""
    if isinstance(shown, dict):
        assert isinstance(actual, dict), where
        assert set(actual) == set(shown), f"{where}: {sorted(actual)} != {sorted(shown)}"
        for key, value in shown.items():
            matches(value, actual[key], f"{where}.{key}")
    elif isinstance(shown, list):
        assert isinstance(actual, list), where
        assert len(actual) == len(shown), where
        for index, (a, b) in enumerate(zip(shown, actual, strict=True)):
            matches(a, b, f"{where}[{index}]")
    elif isinstance(shown, str) and "..." in shown:
        assert isinstance(actual, str), where
        assert actual.startswith(shown.split("...", 1)[0]), f"{where}: {actual[:20]}"
    elif isinstance(shown, bool) or shown is None:
        assert actual is shown, where
    elif isinstance(shown, int | float):
        assert isinstance(actual, int | float), where
        assert not isinstance(actual, bool), where
    else:
        assert actual == shown, f"{where}: {actual!r} != {shown!r}"


def curl(words: list[str]) -> tuple[httpx.Request, str | None]:
    """The request a curl command line sends, and its ``-w`` format."""
    method: str | None = None
    headers: dict[str, str] = {}
    data: list[str] = []
    body: bytes | None = None
    auth: tuple[str, str] | None = None
    write_out: str | None = None
    url: str | None = None
    args = iter(words[1:])
    for word in args:
        if word == "-s":
            continue
        if word == "-X":
            method = next(args)
        elif word == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data.append(next(args))
        elif word == "--json":
            body = next(args).encode()
            headers.setdefault("Content-Type", "application/json")
            headers.setdefault("Accept", "application/json")
        elif word == "-u":
            user, _, password = next(args).partition(":")
            auth = (user, password)
        elif word == "-w":
            write_out = next(args)
        else:
            assert not word.startswith("-"), f"an option this reader does not know: {word}"
            url = word
    assert url is not None
    if data:
        body = "&".join(data).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    if auth is not None:
        pair = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
    method = method or ("POST" if body is not None else "GET")
    return httpx.Request(method, url, headers=headers, content=body), write_out


async def test_every_command_of_the_page_runs_as_shown(tmp_path: Path) -> None:
    found = commands()
    assert sum(c.line.startswith("curl ") for c in found) >= 7
    store = f"sqlite+aiosqlite:///{tmp_path / 'garage.db'}"
    env = {"ALICE_PASSWORD": PASSWORD}
    app, auth = page_app()(store, key_encryption_key=base64.urlsafe_b64encode(bytes(32)).decode())
    transport = httpx.ASGITransport(app=app)
    async with auth, httpx.AsyncClient(transport=transport) as client:
        issuer = auth.issuer
        assert issuer is not None
        await issuer.store.users.add(
            UserRecord(
                id="u-alice",
                username="alice",
                password_hash=await issuer.passwords.hash(PASSWORD),
                scopes=frozenset({"garage:open", "items:read"}),
            )
        )
        await issuer.store.clients.add(
            ClientRecord(
                client_id="garage-app",
                auth_method="none",
                grant_types=frozenset({"password", "refresh_token"}),
                scopes=frozenset({"garage:open", "items:read"}),
            )
        )
        for command in found:
            line = VARIABLE.sub(lambda m: env[m.group(1)], command.line)
            words = shlex.split(line)
            if words[0] == "authbridge":
                result = await asyncio.to_thread(
                    CliRunner().invoke, authbridge_cli, [*words[1:], "--store", store]
                )
                assert result.exit_code == 0, result.output
                printed = result.stdout.splitlines()
                for shown in command.shown:
                    prefix = shown.split("...", 1)[0]
                    assert any(p.startswith(prefix) for p in printed), (shown, printed)
                env["ROBOT_SECRET"] = result.stdout.split("client_secret: ")[1].split()[0]
                continue
            assert words[0] == "curl", command.line
            request, write_out = curl(words)
            answer = await client.send(request)
            text = answer.text
            if write_out is not None:
                assert write_out == "%{http_code}\\n"
                text += f"{answer.status_code}\n"
            shown = "\n".join(command.shown)
            assert answer.status_code < 300, (command.line, answer.status_code, answer.text)
            if shown.startswith("{"):
                matches(json.loads(shown), answer.json(), urlsplit(str(request.url)).path)
            else:
                assert text.strip() == shown.strip(), (command.line, text)
            body = answer.json() if answer.content else {}
            if "delegation" in body:
                env["DELEGATION_ID"] = body["delegation"]["id"]
                env["ROBOT_TOKEN"] = body["token"]["access_token"]
                env["ROBOT_REFRESH_TOKEN"] = body["token"]["refresh_token"]
            elif "grant_type=password" in line:
                env["ALICE_TOKEN"] = body["access_token"]
    assert {"ROBOT_SECRET", "ALICE_TOKEN", "DELEGATION_ID"} <= set(env)
