# ruff: noqa: F811 - the redis_prefix fixture is imported, then requested by name
"""The full demo (README command 1): every flow it prints works as printed.

The demo command runs in a subprocess, as a user starts it, once on its
embedded defaults (a temporary SQLite file) and once with ``--postgres`` and
``--redis`` against the real servers (a database and a Redis key prefix of
this test's own). Every printed ``curl`` line is replayed with httpx (the
same method, URL, headers and body: see ``test_demo_issuer.curl``), in the
order a reader follows them, and answers as its comment says; at the end,
no printed line was left out. The page ``/demo`` shows the same lines, its
secrets as ``$NAME`` variables.
"""

from __future__ import annotations

import html
import re
import shlex
from pathlib import Path
from typing import Any

import httpx
import pytest

from authbridge._demo_accounts import CLI_CLIENT, GARAGE_CLIENT, MACHINE_CLIENT, PROVIDER_USERS
from authbridge._demo_guide import (
    HIDDEN,
    Section,
    Step,
    delegation_body,
    guide_html,
)
from store_support import (  # noqa: F401 - redis_prefix: a fixture, requested by name
    REDIS_URL,
    fresh_postgres_database,
    redis_prefix,
    run_async,
)
from test_demo_issuer import Demo, curl, running_demo


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _curl_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("  curl ")]


class Walk:
    """Replays the demo's printed lines and remembers which it ran."""

    def __init__(self, demo: Demo, client: httpx.Client) -> None:
        self.demo = demo
        self.client = client
        self.ran: set[str] = set()

    def run(self, pattern: str, **variables: str) -> httpx.Response:
        line = self.demo.line(pattern)
        self.ran.add(line)
        return curl(self.client, line, **variables)

    def left_out(self) -> set[str]:
        return set(_curl_lines(self.demo.text)) - self.ran


def walk_every_flow(demo: Demo, client: httpx.Client) -> dict[str, Any]:
    """Follow the printed guide, section by section; what it made, for further checks."""
    walk, base = Walk(demo, client), demo.base
    names = ("READER_TOKEN", "WRITER_TOKEN", "ADMIN_TOKEN")
    tokens = {name: demo.value(rf"^{name}=(\S+)$") for name in names}

    # 1. A protected API, with the embedded provider's tokens.
    assert walk.run(r"curl -i \S+/items   # 401").status_code == 401
    assert walk.run(r"READER_TOKEN\" \S+/items", **tokens).status_code == 200
    assert walk.run(r"POST .*READER_TOKEN", **tokens).status_code == 403
    created = walk.run(r"POST .*WRITER_TOKEN", **tokens)
    assert created.status_code == 201, created.text
    assert created.json()["added_by"] == "writer"
    me = walk.run(r"ADMIN_TOKEN\" \S+/me", **tokens)
    assert (me.status_code, me.json()["subject"]) == (200, "admin")

    # 2. Local login: alice's password, her token, a refresh.
    login = walk.run(r"grant_type=password .*username=alice")
    assert login.status_code == 200, login.text
    assert login.json()["scope"] == "garage:open items:read items:write"
    access, first_refresh = login.json()["access_token"], login.json()["refresh_token"]
    assert walk.run(r"ACCESS_TOKEN\" \S+/items", ACCESS_TOKEN=access).status_code == 200
    refreshed = walk.run(r"client_id=demo-cli -d refresh_token=", REFRESH_TOKEN=first_refresh)
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != first_refresh
    access = refreshed.json()["access_token"]
    alice = client.get(f"{base}/me", headers=_bearer(access)).json()
    assert (alice["provider"], alice["client_id"], alice["actors"]) == ("app", CLI_CLIENT, [])

    # 3. A provider's token exchanged for the API's own; another client's refused.
    provider_token = demo.value(r"^  PROVIDER_TOKEN=(\S+)$")
    exchanged = walk.run(r"subject_token=\$PROVIDER_TOKEN", PROVIDER_TOKEN=provider_token)
    assert exchanged.status_code == 200, exchanged.text
    carol = client.get(f"{base}/me", headers=_bearer(exchanged.json()["access_token"])).json()
    assert (carol["provider"], carol["client_id"]) == ("app", CLI_CLIENT)
    refused = walk.run(r"subject_token=\$READER_TOKEN", **tokens)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_request")
    assert walk.run(r"/auth/session").status_code == 401

    # 4. The machine client.
    machine = walk.run(r"grant_type=client_credentials")
    assert machine.status_code == 200, machine.text
    assert "refresh_token" not in machine.json()
    machine_token = machine.json()["access_token"]
    assert walk.run(r"MACHINE_TOKEN\" \S+/items", MACHINE_TOKEN=machine_token).status_code == 200
    assert walk.run(r"POST .*MACHINE_TOKEN", MACHINE_TOKEN=machine_token).status_code == 403

    # 5. alice delegates to the garage robot, which uses, renews, and loses the token.
    minted = walk.run(r"-d '\{.*\}' \S+/me/delegations", ACCESS_TOKEN=access)
    assert minted.status_code == 201, minted.text
    delegation, robot = minted.json()["delegation"], minted.json()["token"]
    assert delegation["actor"] == GARAGE_CLIENT
    assert robot["scope"] == "garage:open"
    assert 0 < robot["expires_in"] <= 3600
    assert robot["refresh_token"]
    robot_vars = {
        "ROBOT_TOKEN": robot["access_token"],
        "ROBOT_REFRESH_TOKEN": robot["refresh_token"],
        "DELEGATION_ID": delegation["id"],
        "ACCESS_TOKEN": access,
    }
    opened = walk.run(r"ROBOT_TOKEN\" \S+/garage/open   # 200", **robot_vars)
    assert opened.status_code == 200, opened.text
    assert opened.json() == {
        "message": f"{GARAGE_CLIENT} opened the garage, acting for alice",
        "user": "alice",
        "actor": GARAGE_CLIENT,
        "actors": [GARAGE_CLIENT],
    }
    who = client.get(f"{base}/me", headers=_bearer(robot["access_token"])).json()
    assert (who["subject"], who["client_id"], who["actors"]) == (
        alice["subject"],
        GARAGE_CLIENT,
        [GARAGE_CLIENT],
    )
    code = walk.run(r"ROBOT_TOKEN\" \S+/garage/code", **robot_vars)
    assert code.status_code == 403, code.text
    assert code.headers["www-authenticate"].startswith("Bearer")
    items = walk.run(r"ROBOT_TOKEN\" \S+/items", **robot_vars)
    assert items.status_code == 403
    assert 'error="insufficient_scope"' in items.headers["www-authenticate"]

    renewed = walk.run(r"garage-robot:\S+ -d grant_type=refresh_token .*# new", **robot_vars)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["scope"] == "garage:open"
    assert renewed.json()["refresh_token"] != robot["refresh_token"]
    robot_vars["ROBOT_TOKEN"] = renewed.json()["access_token"]
    robot_vars["ROBOT_REFRESH_TOKEN"] = renewed.json()["refresh_token"]
    again = client.post(f"{base}/garage/open", headers=_bearer(robot_vars["ROBOT_TOKEN"]))
    assert again.status_code == 200, again.text
    assert again.json()["actor"] == GARAGE_CLIENT

    traded = walk.run(r"garage-robot:\S+ -d grant_type=urn:\S+token-exchange", **robot_vars)
    assert traded.status_code == 200, traded.text
    assert "refresh_token" not in traded.json()
    assert traded.json()["scope"] == "garage:open"
    traded_token = traded.json()["access_token"]
    by_exchange = client.post(f"{base}/garage/open", headers=_bearer(traded_token))
    assert by_exchange.status_code == 200, by_exchange.text
    assert by_exchange.json()["actor"] == GARAGE_CLIENT

    assert walk.run(r"ACCESS_TOKEN\" \S+/garage/code", **robot_vars).json() == {
        "message": "alice changed the door code",
        "user": "alice",
    }
    listed = walk.run(r"ACCESS_TOKEN\" \S+/me/delegations   #", **robot_vars)
    assert listed.status_code == 200, listed.text
    assert delegation["id"] in listed.text
    revoked = walk.run(r"-X DELETE", **robot_vars)
    assert revoked.status_code == 204, revoked.text
    after = walk.run(r"garage/open   # 401", **robot_vars)
    assert after.status_code == 401, after.text
    assert 'error="invalid_token"' in after.headers["www-authenticate"]
    stale = walk.run(r"grant_type=refresh_token .*# 400", **robot_vars)
    assert (stale.status_code, stale.json()["error"]) == (400, "invalid_grant")
    # The exchanged token ended with the delegation, and no new one is given.
    ended = client.post(f"{base}/garage/open", headers=_bearer(traded_token))
    assert ended.status_code == 401, ended.text
    exchange = demo.line(r"grant_type=urn:\S+token-exchange -d subject_token=\$ACCESS_TOKEN")
    no_more = curl(client, exchange, **robot_vars)
    assert (no_more.status_code, no_more.json()["error"]) == (400, "invalid_request")
    assert "access_token" not in no_more.text

    assert walk.left_out() == set()
    return {
        "alice": access,
        "machine": machine_token,
        "robot": robot_vars,
        "first_robot_refresh": robot["refresh_token"],
        "secrets": [
            login.text,
            refreshed.text,
            minted.text,
            renewed.text,
            exchanged.text,
            traded.text,
        ],
    }


def refusals(demo: Demo, client: httpx.Client, made: dict[str, Any]) -> None:
    """What the printed lines do not show: the delegation's refusals."""
    base = demo.base
    url = f"{base}/me/delegations"
    body = {"actor": GARAGE_CLIENT, "scope": "garage:open", "expires_in": 3600}
    # bob holds no garage:open: he cannot hand it on.
    bob_password = demo.value(r"^  user bob +password (\S+)")
    form = {"grant_type": "password", "client_id": CLI_CLIENT, "username": "bob"}
    bob = client.post(f"{base}/oauth/token", data={**form, "password": bob_password})
    bob = bob.json()["access_token"]
    denied = client.post(url, json=body, headers=_bearer(bob))
    assert (denied.status_code, denied.json()["error"]) == (400, "invalid_scope"), denied.text
    # The machine client holds no garage:open either: alice cannot make it open her garage.
    other = client.post(url, json={**body, "actor": MACHINE_CLIENT}, headers=_bearer(made["alice"]))
    assert (other.status_code, other.json()["error"]) == (400, "invalid_scope"), other.text
    # A fresh delegation: the robot cannot pass it on, nor call the route for people.
    fresh = client.post(url, json=body, headers=_bearer(made["alice"]))
    assert fresh.status_code == 201, fresh.text
    robot = fresh.json()["token"]
    for actor, error in ((GARAGE_CLIENT, "invalid_request"), (MACHINE_CLIENT, "invalid_scope")):
        chained = client.post(
            url, json={**body, "actor": actor}, headers=_bearer(robot["access_token"])
        )
        assert (chained.status_code, chained.json()["error"]) == (400, error), chained.text
    # Its refresh token is the robot's: with another secret, or by another client, refused.
    token_url = f"{base}/oauth/token"
    form = {"grant_type": "refresh_token", "refresh_token": robot["refresh_token"]}
    wrong = client.post(token_url, data=form, auth=(GARAGE_CLIENT, "not-its-secret"))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    foreign = client.post(token_url, data={**form, "client_id": CLI_CLIENT})
    assert (foreign.status_code, foreign.json()["error"]) == (400, "invalid_grant")
    # bob cannot end alice's delegation; she can.
    delegation_id = fresh.json()["delegation"]["id"]
    assert client.delete(f"{url}/{delegation_id}", headers=_bearer(bob)).status_code == 404
    assert (
        client.delete(f"{url}/{delegation_id}", headers=_bearer(made["alice"])).status_code == 204
    )
    gone = client.post(f"{base}/garage/open", headers=_bearer(robot["access_token"]))
    assert gone.status_code == 401
    # The first delegation's first refresh token: rotated, and its delegation ended.
    old = client.post(
        token_url,
        data={"grant_type": "refresh_token", "refresh_token": made["first_robot_refresh"]},
        auth=(GARAGE_CLIENT, demo.value(r"^  client garage-robot +secret (\S+)")),
    )
    assert (old.status_code, old.json()["error"]) == (400, "invalid_grant")


def page_matches_the_terminal(demo: Demo, client: httpx.Client) -> None:
    """The page shows the printed lines, with ``$NAME`` for every secret."""
    page = client.get(f"{demo.base}/demo")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # no script at all, inline or not
    assert "<script" not in page.text.lower()
    assert page.headers["x-content-type-options"] == "nosniff"
    blocks = re.findall(r'<pre class="commands"><code>(.*?)</code></pre>', page.text, re.S)
    shown = [html.unescape(line) for block in blocks for line in block.split("\n")]
    secrets = {
        "ALICE_PASSWORD": demo.value(r"^  user alice +password (\S+)"),
        "BOB_PASSWORD": demo.value(r"^  user bob +password (\S+)"),
        "ROBOT_SECRET": demo.value(r"^  client robot +secret (\S+)"),
        "GARAGE_ROBOT_SECRET": demo.value(r"^  client garage-robot +secret (\S+)"),
        **{
            f"{name.upper()}_PASSWORD": demo.value(rf"^  user {name} +password (\S+)")
            for name in PROVIDER_USERS
        },
    }
    for value in secrets.values():
        assert value not in page.text  # only the terminal shows them
    for name, value in secrets.items():
        shown = [line.replace(f"${name}", value) for line in shown]
    assert shown == _curl_lines(demo.text)
    assert "The garage</h2>" in page.text
    assert f"{GARAGE_CLIENT} opened the garage, acting for alice" in page.text
    style = client.get(f"{demo.base}/demo/guide.css")
    assert style.headers["content-type"].startswith("text/css")


def no_secret_in_the_log(log: str, made: dict[str, Any]) -> None:
    served = log.split("Serving the demo API on", 1)[1]  # what was logged while serving
    robot = made["robot"]
    values = [made["alice"], made["machine"], robot["ROBOT_TOKEN"], robot["ROBOT_REFRESH_TOKEN"]]
    for answer in made["secrets"]:
        values += re.findall(r'"(?:access_token|refresh_token)"\s*:\s*"([^"]+)"', answer)
    assert values
    for value in values:
        assert value not in served


def test_every_printed_flow_on_the_embedded_defaults(tmp_path: Path) -> None:
    # An app's deployment variables name the app's store: the demo never writes there.
    app_store = tmp_path / "app.db"
    env = {
        "AUTHBRIDGE_STORE": f"sqlite+aiosqlite:///{app_store}",
        "AUTHBRIDGE_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    with running_demo(tmp_path, env=env) as demo, httpx.Client(trust_env=False) as client:
        assert "store: sqlite+aiosqlite:///" in demo.text
        assert str(app_store) not in demo.text
        assert "Short-lived state" not in demo.text
        docs_show_what_the_demo_prints(demo)
        made = walk_every_flow(demo, client)
        refusals(demo, client, made)
        page_matches_the_terminal(demo, client)
        log = demo.log()
    no_secret_in_the_log(log, made)
    assert not app_store.exists()


def test_every_printed_flow_on_postgres_and_redis(tmp_path: Path, redis_prefix: str) -> None:
    with (
        fresh_postgres_database("authbridge_demo") as database,
        running_demo(
            tmp_path, "--postgres", database, "--redis", REDIS_URL, "--redis-prefix", redis_prefix
        ) as demo,
        httpx.Client(trust_env=False) as client,
    ):
        assert f"keys {redis_prefix}*" in demo.text
        assert "store: postgresql" in demo.text
        made = walk_every_flow(demo, client)
        refusals(demo, client, made)
        log = demo.log()
        # The short-lived state went to Redis, the delegations to PostgreSQL.
        assert _redis_keys(redis_prefix), "nothing was written under the demo's prefix"
        assert _delegations(database) == 2
    no_secret_in_the_log(log, made)


def _redis_keys(prefix: str) -> list[bytes]:
    import redis  # noqa: PLC0415

    connection = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        return list(connection.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000))
    finally:
        connection.close()


def _delegations(url: str) -> int:
    import asyncpg  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    parsed = make_url(url)

    async def count() -> int:
        connection = await asyncpg.connect(
            host=parsed.host, port=parsed.port or 5432, user=parsed.username,
            database=parsed.database,
        )  # fmt: skip
        try:
            return int(await connection.fetchval("SELECT count(*) FROM authbridge_delegations"))
        finally:
            await connection.close()

    return run_async(count)


def test_the_page_escapes_what_it_shows() -> None:
    hostile = '<script>alert("x")</script>&'
    section = Section(
        anchor='a"><script>',
        title=hostile,
        intro=hostile,
        facts=(hostile,),
        steps=(Step(text=hostile, command=f"curl {hostile}", expect=hostile),),
        swagger=hostile,
    )
    page = guide_html([section])
    assert "<script" not in page
    assert html.escape(hostile, quote=True) in page
    assert 'id="a&quot;&gt;&lt;script&gt;"' in page


def test_the_page_hides_every_secret() -> None:
    assert HIDDEN("ALICE_PASSWORD", "s3cret") == "$ALICE_PASSWORD"
    assert '"actor": "garage-robot"' in delegation_body()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "sqlite+aiosqlite:///x.db", "--postgres", "postgresql://u@h/d"],
         "give --store or --postgres, not both"),
        (["--postgres", "sqlite+aiosqlite:///x.db"], "--postgres takes a postgresql://"),
        (["--postgres", "mysql://root:hunter2@localhost/demo"], "--postgres takes a postgresql://"),
    ],
)  # fmt: skip
def test_postgres_option_refusals(args: list[str], message: str) -> None:
    from cli_support import run  # noqa: PLC0415

    result = run("demo", "--port", "0", *args)
    assert result.code == 2, result.text
    assert message in result.err
    assert "hunter2" not in result.err
    assert "_TOKEN=" not in result.out


def test_an_unreachable_redis_is_said_plainly(tmp_path: Path) -> None:
    from cli_support import run  # noqa: PLC0415

    store = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    result = run("demo", "--port", "0", "--store", store, "--redis",
                 "redis://:hunter2@127.0.0.1:1/0")  # fmt: skip
    assert result.code == 2, result.text
    assert result.err.startswith("error: the store at "), result.err
    assert "is unavailable" in result.err
    assert "hunter2" not in result.err
    assert "password" not in result.out


ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED = {
    ROOT / "README.md": "## Two commands",
    ROOT / "docs" / "quickstart.md": "## Try the demo",
}
"""The pages whose demo section shows the demo's curl lines, and that section's heading."""

PLACEHOLDERS = ("PASSWORD", "SECRET")
"""What the pages write for a password or secret the demo makes at each start."""


def documented_lines(page: Path, heading: str) -> list[str]:
    """The curl lines of a page's demo section (up to the next ``## `` heading)."""
    text = page.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0] if heading in text else ""
    return [line.strip() for line in section.splitlines() if line.startswith("curl ")]


def _status(line: str) -> str | None:
    found = re.search(r"   # (\d{3})\b", line)
    return found.group(1) if found else None


def printed_as(documented: str, demo: Demo) -> bool:
    """Whether the demo printed this command (its base URL, secrets and comments aside)."""
    doc = documented.replace("http://127.0.0.1:8000", demo.base)
    wanted = shlex.split(doc, comments=True)
    patterns = [re.escape(arg) for arg in wanted]
    for placeholder in PLACEHOLDERS:
        patterns = [p.replace(placeholder, r"\S+") for p in patterns]
    for line in _curl_lines(demo.text):
        args = shlex.split(line, comments=True)
        same = len(args) == len(wanted) and all(
            re.fullmatch(p, a) for p, a in zip(patterns, args, strict=True)
        )
        if same and _status(doc) in (None, _status(line)):
            return True
    return False


def docs_show_what_the_demo_prints(demo: Demo) -> None:
    """Every curl line of the README's and the quickstart's demo sections is a printed one."""
    checked = 0
    for page, heading in DOCUMENTED.items():
        for line in documented_lines(page, heading):
            assert printed_as(line, demo), f"{page.name}: the demo prints no such line: {line}"
            checked += 1
    assert checked >= 10  # the quickstart's at least
