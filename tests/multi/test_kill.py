"""``kill -9`` of an instance in the middle of a refresh or a code redemption.

Four more instances of the app (D to G) join the cluster, each able to stall at one
moment the test arms through a file: just before or just after the store's rotation of a
refresh family (``refresh.advance``) or its taking of an authorization code
(``one_time.take``). The test sends the request to that instance, waits for the stall's
marker, kills the process with SIGKILL, and retries on another instance. Nothing is lost
(the retry succeeds, or is refused as the rules say), nothing is issued twice (counted in
the database), and A, B and C serve throughout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from authbridge.issuer._authorize import code_hash
from authbridge.issuer._code_grant import access_token_id, family_id

from .flows import (
    LOCAL_PASSWORD,
    LOCAL_USER,
    Authorization,
    Forms,
    bearer,
    location,
    password_grant,
)
from .harness import Browser, Cluster, Instance, Prober, sql, wait_for
from .test_refresh import family_of, generations

VICTIMS = {
    ("advance", "after"): "D",
    ("advance", "before"): "E",
    ("take", "after"): "F",
    ("take", "before"): "G",
}
NAMES = ("A", "B", "C")
STALL_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("multi-control")


@pytest.fixture(scope="module")
def victims(cluster: Cluster, control: Path) -> Iterator[dict[str, Instance]]:
    """D, E, F and G, started together, each to be killed once."""
    started = cluster.launch(VICTIMS.values(), control=str(control))
    yield {instance.name: instance for instance in started}
    for instance in started:
        instance.terminate()
    for instance in started:
        instance.stop()


class InFlight:
    """One request sent to the victim from a thread: it never gets an answer."""

    def __init__(self, cluster: Cluster, victim: Instance, send: Any) -> None:
        self.outcome: object = None
        self._browser = Browser(cluster, [victim.name])
        self._thread = threading.Thread(target=self._run, args=(send,), daemon=True)
        self._thread.start()

    def _run(self, send: Any) -> None:
        try:
            self.outcome = send(self._browser)
        except httpx.TransportError as exc:
            self.outcome = exc
        finally:
            self._browser.close()

    def join(self) -> object:
        self._thread.join(15)
        assert not self._thread.is_alive()
        return self.outcome


def kill_in_the_middle(
    cluster: Cluster,
    victim: Instance,
    control: Path,
    operation: str,
    when: str,
    send: Any,
    access_token: str,
    then: Callable[[], httpx.Response],
) -> tuple[dict[str, list[int]], httpx.Response]:
    """Arm the stall, send, wait for it, kill -9, then at once ``then()`` (the client's
    retry); A, B and C are asked all along.

    Returns what A, B and C answered (``/whoami`` with ``access_token``) meanwhile, and
    what ``then`` returned.
    """
    (control / f"{victim.name}.{operation}").write_text(when)
    others = [cluster[name] for name in NAMES]
    with Prober(others, "/whoami", bearer(access_token), pause=0.02) as prober:
        request = InFlight(cluster, victim, send)
        wait_for(
            control / f"{victim.name}.{operation}.{when}.reached",
            timeout=STALL_TIMEOUT,
            alive=victim,
        )
        stalled = time.monotonic()
        prober.wait_for_more(3)  # the others serve while the victim is stuck ...
        victim.kill()
        lost = request.join()
        assert isinstance(lost, httpx.TransportError), lost  # the answer never came
        retried = then()
        answered = time.monotonic()
        prober.wait_for_more(3)  # ... and once it is gone
    print(
        f"kill -9 {operation} {when}: retry answered {retried.status_code} "
        f"{answered - stalled:.3f} s after the stall was reached"
    )
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{victim.base_url}/healthz", timeout=2)
    return prober.answers, retried


def assert_served(answers: dict[str, list[int]], case: str) -> None:
    """A, B and C answered every request while the victim stalled and died."""
    assert sorted(answers) == sorted(NAMES)
    assert all(statuses and set(statuses) == {200} for statuses in answers.values()), answers
    print(f"kill -9 {case}: A/B/C answered {[len(answers[n]) for n in NAMES]} requests, all 200")


def families_since(cluster: Cluster, start: float, subject: str) -> int:
    rows = sql(
        cluster.store_url,
        "SELECT count(*) AS n FROM authbridge_refresh_families WHERE subject = $1 "
        "AND created_at >= $2",
        subject,
        start,
    )
    return int(rows[0]["n"])


@pytest.mark.parametrize("when", ["after", "before"])
def test_killed_in_the_middle_of_a_refresh(
    cluster: Cluster, victims: dict[str, Instance], control: Path, browser: Browser, when: str
) -> None:
    start = time.time()
    login = password_grant(browser, on="A")
    assert login.status_code == 200, login.text
    tokens = login.json()
    token = tokens["refresh_token"]
    family = family_of(cluster, token)["id"]
    victim = victims[VICTIMS[("advance", when)]]

    rotated = when == "after"
    form = {"grant_type": "refresh_token", "client_id": "cli", "refresh_token": token}

    def retry_on_b() -> httpx.Response:
        # After: the rotation was stored, its answer lost. Before: nothing was written.
        assert generations(cluster, family) == ([0, 1] if rotated else [0])
        return browser.token(form, on="B")

    served, retry = kill_in_the_middle(
        cluster,
        victim,
        control,
        "advance",
        when,
        lambda b: b.token(form, on=victim.name),
        tokens["access_token"],
        retry_on_b,
    )
    assert retry.status_code == 200, retry.text  # a sibling (after) or the rotation (before)
    state = family_of(cluster, token)
    assert (state["generation"], state["siblings"], state["revoked_at"]) == (
        1,
        1 if rotated else 0,
        None,
    )
    assert generations(cluster, family) == ([0, 1, 1] if rotated else [0, 1])
    assert families_since(cluster, start, f"user-{LOCAL_USER}") == 1
    onward = browser.token(
        {
            "grant_type": "refresh_token",
            "client_id": "cli",
            "refresh_token": retry.json()["refresh_token"],
        },
        on="C",
    )
    assert onward.status_code == 200, onward.text
    assert family_of(cluster, token)["generation"] == 2
    assert_served(served, f"refresh {when}")


def _code(browser: Browser, auth: Authorization) -> str:
    page = browser.get(auth.path, on="A")
    fields = next(fields for _, fields in Forms(page.text).forms if "password" in fields)
    fields.update(username=LOCAL_USER, password=LOCAL_PASSWORD)
    return auth.code_from(location(browser.post("/oauth/authorize", on="B", data=fields)))


@pytest.mark.parametrize("when", ["after", "before"])
def test_killed_in_the_middle_of_a_code_redemption(
    cluster: Cluster, victims: dict[str, Instance], control: Path, browser: Browser, when: str
) -> None:
    login = password_grant(browser, on="C")
    assert login.status_code == 200
    auth = Authorization.new()
    code = _code(browser, auth)
    hashed = code_hash(code)
    victim = victims[VICTIMS[("take", when)]]

    families = "SELECT generation, revoked_at FROM authbridge_refresh_families WHERE id = $1"

    def retry_on_b() -> httpx.Response:
        assert sql(cluster.store_url, families, family_id(hashed)) == []  # nothing issued
        return auth.redeem(browser, code, on="B")

    served, retry = kill_in_the_middle(
        cluster,
        victim,
        control,
        "take",
        when,
        lambda b: auth.redeem(b, code, on=victim.name),
        login.json()["access_token"],
        retry_on_b,
    )
    assert_served(served, f"code {when}")
    if when == "before":
        # The code was never taken: the retry redeems it, once.
        assert retry.status_code == 200, retry.text
        assert sql(cluster.store_url, families, family_id(hashed)) == [
            {"generation": 0, "revoked_at": None}
        ]
        return
    # Taken by the killed instance, which issued nothing: a used code, refused. Its
    # would-be access token is on the durable revocation list, its family never exists.
    assert (retry.status_code, retry.json()["error"]) == (400, "invalid_grant")
    assert sql(cluster.store_url, families, family_id(hashed)) == []
    revoked = sql(
        cluster.store_url,
        "SELECT key FROM authbridge_replay WHERE key = $1",
        "at:" + access_token_id(hashed),
    )
    assert len(revoked) == 1
    # The user logs in again, on any instance.
    again = Authorization.new()
    assert again.redeem(browser, _code(browser, again), on="C").status_code == 200
