"""The demo's own tokens: every printed curl line works against the running demo.

The demo command runs in a subprocess on a free port, as a user starts it;
each printed ``curl`` line is replayed with httpx (the same method, form body,
Basic credentials and headers), with the shell variables the demo tells the
user to set substituted.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from authbridge._demo import CLI_CLIENT, LOCAL_USERS, MACHINE_CLIENT
from cli_support import run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Demo:
    base: str
    text: str
    log_path: Path | None = None

    def log(self) -> str:
        """Everything the demo has printed and logged so far."""
        assert self.log_path is not None
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def line(self, pattern: str) -> str:
        """The one printed command line matching ``pattern``."""
        found = [
            line.strip()
            for line in self.text.splitlines()
            if line.startswith("  curl ") and re.search(pattern, line)
        ]
        assert len(found) == 1, (pattern, found)
        return found[0]

    def value(self, pattern: str) -> str:
        match = re.search(pattern, self.text, re.M)
        assert match is not None, (pattern, self.text)
        return match.group(1)


@contextmanager
def running_demo(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Demo]:
    port = _free_port()
    log = tmp_path / f"demo-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "authbridge", "demo", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            text = log.read_text(encoding="utf-8", errors="replace")
            if "Application startup complete" in text:
                break
            assert process.poll() is None, text
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        yield Demo(f"http://127.0.0.1:{port}", text, log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # uvicorn stops gracefully, then re-raises the SIGINT (exit code 130).
    assert process.returncode in (0, 130), log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log.read_text(encoding="utf-8", errors="replace")


def curl(client: httpx.Client, line: str, **variables: str) -> httpx.Response:
    """Replay a printed curl command line (the options the demo prints) with httpx."""
    for name, value in variables.items():
        line = line.replace(f"${name}", value)
    assert "$" not in line, line  # every variable the line uses was given
    args = shlex.split(line, comments=True)
    assert args[0] == "curl", line
    data: list[str] = []
    headers: dict[str, str] = {}
    auth: tuple[str, str] | None = None
    method: str | None = None
    url: str | None = None
    rest = iter(args[1:])
    for arg in rest:
        if arg in ("-s", "-i"):
            continue
        if arg == "-d":
            data.append(next(rest))
        elif arg == "-u":
            user, _, password = next(rest).partition(":")
            auth = (user, password)
        elif arg == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-X":
            method = next(rest)
        else:
            assert not arg.startswith("-"), f"unexpected curl option {arg} in {line}"
            url = arg
    assert url is not None, line
    if data:  # curl -d: joined with &, sent as a form, not encoded any further
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    return client.request(
        method or ("POST" if data else "GET"),
        url,
        content="&".join(data) if data else None,
        headers=headers,
        auth=auth,
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_printed_flow_works_and_a_rerun_resets_the_accounts(tmp_path: Path) -> None:
    store = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    with running_demo(tmp_path, "--store", store) as demo, httpx.Client(trust_env=False) as client:
        base = demo.base
        assert f"Its own issuer:       {base}" in demo.text
        for name, scopes in LOCAL_USERS.items():
            assert re.search(
                rf"user {name} +password \S+ +scopes {' '.join(scopes)}$", demo.text, re.M
            )
        assert f"In Swagger UI: open {base}/docs -> Authorize -> AppPassword" in demo.text

        # The password grant, as printed: alice may read and write.
        login = curl(client, demo.line(r"grant_type=password .*username=alice"))
        assert login.status_code == 200, login.text
        assert login.headers["cache-control"] == "no-store"
        body = login.json()
        assert body["token_type"] == "Bearer"
        assert body["scope"] == "garage:open items:read items:write"
        access, refresh = body["access_token"], body["refresh_token"]
        protected = demo.line(r"Bearer \$ACCESS_TOKEN\" \S+/items")
        assert curl(client, protected, ACCESS_TOKEN=access).status_code == 200
        me = client.get(f"{base}/me", headers=_bearer(access)).json()
        assert (me["provider"], me["issuer"], me["client_id"]) == ("app", base, CLI_CLIENT)
        alice = me["subject"]
        created = client.post(f"{base}/items?name=drill", headers=_bearer(access))
        assert created.status_code == 201, created.text
        assert client.get(f"{base}/admin", headers=_bearer(access)).status_code == 403

        # The refresh, as printed: new tokens, the access token works.
        refresh_line = demo.line(r"grant_type=refresh_token -d client_id=demo-cli")
        refreshed = curl(client, refresh_line, REFRESH_TOKEN=refresh)
        assert refreshed.status_code == 200, refreshed.text
        second = refreshed.json()
        assert second["refresh_token"] != refresh
        assert curl(client, protected, ACCESS_TOKEN=second["access_token"]).status_code == 200

        # bob, with the same command and his printed password: read only.
        bob_password = demo.value(r"^  user bob +password (\S+)")
        bob_line = demo.line(r"username=alice").replace("username=alice", "username=bob")
        bob_line = re.sub(r"password=\S+", f"password={bob_password}", bob_line)
        bob = curl(client, bob_line)
        assert bob.status_code == 200, bob.text
        assert bob.json()["scope"] == "items:read"
        bob_token = bob.json()["access_token"]
        assert client.get(f"{base}/items", headers=_bearer(bob_token)).status_code == 200
        assert client.post(f"{base}/items?name=saw", headers=_bearer(bob_token)).status_code == 403

        # The machine client, as printed.
        machine = curl(client, demo.line(r"grant_type=client_credentials"))
        assert machine.status_code == 200, machine.text
        assert "refresh_token" not in machine.json()
        robot_token = machine.json()["access_token"]
        robot = client.get(f"{base}/me", headers=_bearer(robot_token)).json()
        assert (robot["subject"], robot["client_id"], robot["scopes"]) == (
            MACHINE_CLIENT,
            MACHINE_CLIENT,
            ["items:read"],
        )
        assert curl(client, protected, ACCESS_TOKEN=robot_token).status_code == 200
        assert client.post(f"{base}/items?name=x", headers=_bearer(robot_token)).status_code == 403

        # The test issuer's tokens still work beside them.
        reader = demo.value(r"^READER_TOKEN=(\S+)$")
        assert client.get(f"{base}/items", headers=_bearer(reader)).status_code == 200

        # Swagger UI's boxes and the published metadata.
        schemes = client.get(f"{base}/openapi.json").json()["components"]["securitySchemes"]
        assert schemes["AppPassword"]["flows"]["password"]["tokenUrl"] == "/oauth/token"
        assert "clientCredentials" in schemes["AppClientCredentials"]["flows"]
        metadata = client.get(f"{base}/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == base
        assert metadata["token_endpoint"] == f"{base}/oauth/token"
        assert sorted(metadata["scopes_supported"]) == [
            "admin",
            "garage:open",
            "items:read",
            "items:write",
        ]
        old_password_line = demo.line(r"grant_type=password .*username=alice")
        old_machine_line = demo.line(r"grant_type=client_credentials")
        old_refresh = second["refresh_token"]

    # Run it again on the same store: the accounts are reset, not duplicated.
    with running_demo(tmp_path, "--store", store) as again, httpx.Client(trust_env=False) as client:
        assert curl(client, old_password_line.replace(demo.base, again.base)).status_code == 400
        old_secret = curl(client, old_machine_line.replace(demo.base, again.base))
        assert old_secret.status_code == 401
        assert old_secret.json()["error"] == "invalid_client"
        stale = curl(
            client,
            again.line(r"grant_type=refresh_token -d client_id=demo-cli"),
            REFRESH_TOKEN=old_refresh,
        )  # the reset ended alice's refresh tokens
        assert stale.status_code == 400
        assert stale.json()["error"] == "invalid_grant"

        login = curl(client, again.line(r"grant_type=password .*username=alice"))
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        me = client.get(f"{again.base}/me", headers=_bearer(token)).json()
        assert me["subject"] == alice  # the same account, with a new password
        machine = curl(client, again.line(r"grant_type=client_credentials"))
        assert machine.status_code == 200, machine.text


def test_the_default_store_is_a_temporary_file_removed_at_exit(tmp_path: Path) -> None:
    with running_demo(tmp_path) as demo, httpx.Client(trust_env=False) as client:
        path = Path(demo.value(r"store: sqlite\+aiosqlite:///(\S+)$"))
        assert path.name == "demo.db"
        assert path.exists()
        login = curl(client, demo.line(r"grant_type=password .*username=alice"))
        assert login.status_code == 200, login.text
    assert not path.parent.exists()


def test_a_store_that_cannot_be_opened_is_said_plainly(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cases = {
        f"sqlite+aiosqlite:///{blocker / 'demo.db'}": "is unavailable (unreachable:",
        "mysql://root@localhost/demo": "unsupported store URL scheme 'mysql'",
    }
    for store, message in cases.items():
        result = run("demo", "--port", str(_free_port()), "--store", store)
        assert result.code == 2, result.text
        assert result.err.startswith("error: "), result.err
        assert message in result.err, result.err
        assert "password" not in result.out  # nothing printed that would not work
