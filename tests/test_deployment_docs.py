"""docs/deployment.md says what the code does: its tables, commands, modules and manifests.

tests/test_docs.py runs the page's untitled Python blocks and compiles its modules; here the
modules run for real (in-process, and under ``uvicorn --workers 2``), the release step and the
KEK procedure run through the command line, the settings table is compared with
AuthBridgeSettings, the Kubernetes manifest with the health endpoints and the settings, and
the outage table with what the app answers when PostgreSQL or Redis is cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from tests.cli_support import free_port
from typer.testing import CliRunner as TyperRunner
from uvicorn.main import main as uvicorn_main

import store_support
from authbridge import ConfigurationError
from authbridge.cli import app as cli
from authbridge.fastapi._health import install_health
from authbridge.issuer._kek import new_kek
from authbridge.settings import _VARIABLES, AuthBridgeSettings, _variable
from authbridge.store import SQLStore

postgres_database = store_support.postgres_database
postgres_store_url = store_support.postgres_store_url
redis_prefix = store_support.redis_prefix

PAGE = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text("utf-8")
FENCE = re.compile(r"^```(\w+)(?: title=\"([^\"]+)\")?\n(.*?)^```", re.S | re.M)
PASSWORD = "D0cs-Pa55word"


def section(title: str) -> str:
    """The text of the section headed ``title`` (to the next heading of its level or above)."""
    match = re.search(rf"^(#+) {re.escape(title)}\n(.*?)(?=^#{{1,%d}} |\Z)", PAGE, re.S | re.M)
    assert match is not None, title
    level = len(match.group(1))
    found = re.search(
        rf"^#{{{level}}} {re.escape(title)}\n(.*?)(?=^#{{1,{level}}} |\Z)", PAGE, re.S | re.M
    )
    assert found is not None
    return found.group(1)


def blocks(text: str, language: str) -> list[tuple[str | None, str]]:
    return [(title or None, code) for lang, title, code in FENCE.findall(text) if lang == language]


def module_block(title: str) -> str:
    [code] = [c for t, c in blocks(PAGE, "python") if t == title]
    return code


def table(text: str, first_header: str) -> list[list[str]]:
    """The rows of the table whose first header cell is ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def environment(text: str) -> dict[str, str]:
    """The ``export NAME=VALUE`` lines of a bash block, placeholders ``<...>`` filled in."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = shlex.split(line.removeprefix("export "))[0].partition("=")
            value = value.replace("<password>", PASSWORD)
            found[name] = new_kek() if value.startswith("<") else value
    return found


def write(title: str, directory: Path) -> Path:
    """Write the page's module ``title`` below ``directory``."""
    path = directory / title
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(module_block(title), encoding="utf-8")
    return path


def load(title: str, directory: Path, name: str) -> ModuleType:
    """Write the page's module ``title`` below ``directory`` and import it under ``name``."""
    path = write(title, directory)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def command(*args: str) -> tuple[int, str]:
    """Run ``authbridge ARGS`` in-process (in a thread: it runs its own event loop)."""
    result = await asyncio.to_thread(TyperRunner().invoke, cli, list(args))
    return result.exit_code, result.output


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


# --- the settings table and the example environment -----------------------------------------------


def test_the_settings_table_names_every_variable_with_its_default() -> None:
    rows = table(section("Settings from the environment"), "Variable")
    fields = {_variable(name): field for name, field in AuthBridgeSettings.model_fields.items()}
    assert [row[0].strip("`") for row in rows] == list(fields)
    for variable, default, meaning in rows:
        expected = fields[variable.strip("`")].default
        shown = re.match(r"`([^`]*)`", default)
        assert meaning, variable
        if expected in (None, ()):
            assert shown is None, variable
            continue
        assert shown is not None, variable
        value = shown.group(1)
        if isinstance(expected, bool):
            assert value == str(expected).lower(), variable
        elif isinstance(expected, int | float):
            assert float(value) == expected, variable
        else:
            assert value == expected, variable


def test_the_example_environment_configures_the_documented_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [(_, shell)] = blocks(section("Settings from the environment"), "bash")
    env = environment(shell)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = AuthBridgeSettings()
    assert settings.issuer == "https://api.example.com"
    assert settings.migrate is False
    assert settings.redis_url is not None
    assert PASSWORD not in repr(settings)
    issuer = settings.app_issuer()
    assert issuer.key_encryption_keys == (env["AUTHBRIDGE_KEY_ENCRYPTION_KEY"],)
    [launch] = [line for line in shell.splitlines() if line.startswith("uvicorn ")]
    assert shlex.split(launch)[1] == "myapp.main:app"
    assert "myapp/main.py" in [t for t, _ in blocks(PAGE, "python")]


def test_an_invalid_value_is_refused_as_the_page_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = re.search(r"`(invalid_settings: AUTHBRIDGE_ACCESS_TOKEN_TTL: [^`]+)`", PAGE)
    assert shown is not None
    monkeypatch.setenv("AUTHBRIDGE_ACCESS_TOKEN_TTL", "0")
    with pytest.raises(ConfigurationError) as refused:
        AuthBridgeSettings()
    assert str(refused.value).endswith(shown.group(1))


# --- the commands shown exist ---------------------------------------------------------------------


def test_every_command_line_on_the_page_exists() -> None:
    lines = [
        line.split("#")[0].strip()
        for _, code in blocks(PAGE, "bash")
        for line in code.splitlines()
        if line.startswith(("authbridge ", "uvicorn "))
    ]
    uvicorn_help = CliRunner().invoke(uvicorn_main, ["--help"]).output
    assert {line.split()[0] for line in lines} == {"authbridge", "uvicorn"}
    for line in lines:
        words = shlex.split(line)
        if words[0] == "uvicorn":
            for option in (w for w in words if w.startswith("--")):
                assert f"{option} " in uvicorn_help or f"{option}/" in uvicorn_help, option
            continue
        path = [w for w in words[1:] if not w.startswith("-") and w.islower()][:2]
        result = TyperRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, line
        for option in (w for w in words if w.startswith("--")):
            assert option in result.output, (line, option)


# --- the documented module, the release step, workers ---------------------------------------------


async def test_the_release_step_then_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_prefix: str
) -> None:
    [(_, shell)] = blocks(section("Settings from the environment"), "bash")
    with store_support.fresh_postgres_database() as url:  # an empty database: no schema yet
        for name, value in environment(shell).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AUTHBRIDGE_STORE", url)
        monkeypatch.setenv("AUTHBRIDGE_REDIS_URL", store_support.REDIS_URL)
        monkeypatch.setenv("AUTHBRIDGE_REDIS_PREFIX", redis_prefix)
        early = load("myapp/main.py", tmp_path, "docs_app_early")
        with pytest.raises(ConfigurationError, match="authbridge db upgrade"):
            async with early.auth:
                pass
        await early.auth.issuer.store.aclose()
        [(_, steps)] = blocks(section("Migrations on deploy"), "bash")
        for line in steps.splitlines():
            code, output = await command(*shlex.split(line.split("#")[0])[1:])
            assert code == 0, output
            assert PASSWORD not in output
        main = load("myapp/main.py", tmp_path, "docs_app")
        transport = httpx.ASGITransport(app=main.app)
        async with (
            main.auth,
            httpx.AsyncClient(transport=transport, base_url=main.auth.issuer.config.issuer) as http,
        ):
            ready = await http.get("/readyz")
            live = await http.head("/healthz")
            items = await http.get("/items")
    assert (ready.status_code, ready.json()["checks"]) == (
        200,
        {"store": "ok", "redis": "ok", "keys": "ok"},
    )
    assert live.status_code == 200
    assert items.status_code == 401


def _workers(pid: int) -> list[int]:
    """The worker processes of a uvicorn supervisor (not multiprocessing's resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(p) for p in path.read_text().split()] if path.exists() else []
    found = []
    for child in children:
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


@pytest.mark.slow
def test_the_app_under_uvicorn_workers_on_one_sqlite_file(tmp_path: Path) -> None:
    write("myapp/main.py", tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "AUTHBRIDGE_ISSUER": f"http://127.0.0.1:{port}",  # development mode: no KEK needed...
        "AUTHBRIDGE_KEY_ENCRYPTION_KEY": new_kek(),  # ...but sessions must span the workers
        "AUTHBRIDGE_STORE": f"sqlite+aiosqlite:///{tmp_path / 'authbridge.db'}",
    }
    log = tmp_path / "uvicorn.log"
    port_args = ("--port", str(port))
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "myapp.main:app", "--workers", "2", *port_args],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200 and len(_workers(server.pid)) >= 2:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, log.read_text()
            time.sleep(0.1)
        answers = [httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2) for _ in range(10)]
        workers = _workers(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert len(workers) == 2
    assert {a.status_code for a in answers} == {200}
    assert answers[0].json() == {"status": "ok", "checks": {"store": "ok", "keys": "ok"}}


def test_the_health_paths_module(tmp_path: Path) -> None:
    module = load("myapp/health.py", tmp_path, "docs_health")
    paths = {getattr(route, "path", "") for route in module.app.routes}
    assert {"/livez", "/ready"} <= paths
    assert not {"/healthz", "/readyz"} & paths


# --- the manifest and the connection budget -------------------------------------------------------


def test_the_kubernetes_manifest_matches_the_endpoints_and_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [(_, manifest)] = blocks(section("Health endpoints and Kubernetes probes"), "yaml")
    deployment = yaml.safe_load(manifest)
    pod = deployment["spec"]["template"]["spec"]
    [migrate] = pod["initContainers"]
    [api] = pod["containers"]
    assert migrate["command"] == ["authbridge", "db", "upgrade"]
    defaults = inspect.signature(install_health).parameters
    assert api["startupProbe"]["httpGet"]["path"] == defaults["live"].default
    assert api["livenessProbe"]["httpGet"]["path"] == defaults["live"].default
    assert api["readinessProbe"]["httpGet"]["path"] == defaults["ready"].default
    assert api["readinessProbe"]["timeoutSeconds"] > defaults["timeout"].default
    port = api["ports"][0]["containerPort"]
    assert api["command"][:2] == ["uvicorn", "myapp.main:app"]
    assert api["command"][api["command"].index("--port") + 1] == str(port)
    assert {probe["httpGet"]["port"] for k, probe in api.items() if k.endswith("Probe")} == {port}
    names = [e["name"] for e in api["env"]] + [e["name"] for e in migrate["env"]]
    assert set(names) - _VARIABLES == {"FORWARDED_ALLOW_IPS"}
    secrets = {"store": "sqlite+aiosqlite:///x.db", "redis": "redis://r:6379/0", "kek": new_kek()}
    for entry in api["env"]:
        reference = entry.get("valueFrom", {}).get("secretKeyRef", {}).get("key")
        monkeypatch.setenv(entry["name"], secrets[reference] if reference else entry["value"])
    settings = AuthBridgeSettings()
    assert settings.migrate is False
    # the page's connection budget is this Deployment's: replicas plus one during a rollout
    workers = int(api["command"][api["command"].index("--workers") + 1])
    processes = (deployment["spec"]["replicas"] + 1) * workers
    budget = section("Connections to PostgreSQL")
    assert f"make {processes} processes: {processes * 2 * 10} connections" in budget
    pool = settings.store_pool_size
    assert f"`AUTHBRIDGE_STORE_POOL_SIZE={pool}` makes {processes * 2 * pool}" in budget


def test_each_process_holds_at_most_twice_the_pool(postgres_store_url: str) -> None:
    store = SQLStore(postgres_store_url, pool_size=4)
    pool: Any = store._db.engine.pool
    assert (pool.size(), pool._max_overflow, pool._timeout) == (4, 4, 10.0)
    assert "wait up to 10 seconds for a connection" in section("Connections to PostgreSQL")
