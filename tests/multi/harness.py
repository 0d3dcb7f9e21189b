"""Several processes of one app on loopback, and a client that spreads its requests over them.

* `Instance`: one ``python -m multi.app`` process serving a socket the test process bound
  (its port is known before it starts and no other test can take it), killed or stopped by
  PID;
* `Cluster`: the instances of one app sharing one store and one public URL (its
  ``issuer``: a port reserved here that nothing listens on, as a load balancer's would be).
  `Cluster.launch` starts any number of instances at once and waits for them all;
* `Browser`: a user agent (one cookie jar) whose requests to the public URL go to the
  instance it names (``on="B"``) or to the next one in turn; other URLs (the upstream
  provider) are fetched as they are;
* `sql`: a query on the shared PostgreSQL database, to count what was issued;
* `SECRETS` and `assert_no_secret`: every token, code and cookie value the clients were
  given, to look for in the instances' logs.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy.engine import make_url

from store_support import run_async

from .app import ENV

TESTS_DIR = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 15.0

T = TypeVar("T")

SECRETS: set[str] = set()
"""Every token, code and cookie value a `Browser` was given (looked for in the logs)."""

_SECRET_FIELDS = ("access_token", "refresh_token", "id_token", "code")


def remember_secrets(response: httpx.Response) -> None:
    """Add what ``response`` handed the client (tokens, a code, cookies) to `SECRETS`."""
    SECRETS.update(value for value in response.cookies.values() if len(value) >= 16)
    where = response.headers.get("location")
    if where:
        SECRETS.update(v for k, v in httpx.URL(where).params.multi_items() if k == "code")
    if response.headers.get("content-type", "").startswith("application/json"):
        with contextlib.suppress(ValueError):
            body = response.json()
            if isinstance(body, dict):
                SECRETS.update(str(body[k]) for k in _SECRET_FIELDS if body.get(k))


def assert_no_secret(text: str, secrets: Iterable[str]) -> None:
    """No secret appears in ``text`` (a log, an error body): its name says which did."""
    found = [secret[:12] + "..." for secret in secrets if secret and secret in text]
    assert found == [], f"{len(found)} secrets in the text: {found}"


def die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies (Linux prctl)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def child_env(**extra: str) -> dict[str, str]:
    """This authbridge and ``tests/`` importable; no key-encryption key from the outside."""
    import authbridge  # noqa: PLC0415

    src = str(Path(authbridge.__file__).resolve().parent.parent)
    env = dict(os.environ)
    parts = [src, str(TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.pop("AUTHBRIDGE_KEY_ENCRYPTION_KEY", None)
    env.update(extra)
    return env


def bound_socket() -> socket.socket:
    """A TCP socket bound to a free port of 127.0.0.1 (not listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def stop_process(process: subprocess.Popen[Any], *, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` by PID, SIGKILL after a grace period; reap the child."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


class Instance:
    """One process of the app (``multi.app``), on a socket bound here."""

    def __init__(self, name: str, config: dict[str, Any], log_path: Path) -> None:
        self.name = name
        self.config = {**config, "name": name}
        self.log_path = log_path
        self._socket: socket.socket | None = bound_socket()
        self.port = int(self._socket.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Instance({self.name!r}, port={self.port})"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not launched"
        return self.process.pid

    def launch(self) -> None:
        """Start the process (it inherits the socket; this process then closes its copy,
        so a killed instance's port refuses connections as a dead server's does)."""
        sock = self._socket
        assert sock is not None, "an instance is launched once"
        fd = sock.fileno()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "multi.app", "--fd", str(fd)],
                cwd=TESTS_DIR,
                env=child_env(**{ENV: json.dumps(self.config)}),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads depend on it
            )
        sock.close()
        self._socket = None

    def wait_ready(self, deadline: float) -> None:
        """Return once ``/readyz`` answers 200 (the lifespan ran, the store answers, keys are
        loaded) from this very instance (``/instance`` names it)."""
        process = self.process
        assert process is not None, "launch() first"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"instance {self.name} exited with {process.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{self.base_url}/readyz", timeout=2, trust_env=False)
                named = httpx.get(f"{self.base_url}/instance", timeout=2, trust_env=False)
                if ready.status_code == 200 and named.json().get("name") == self.name:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"instance {self.name} not ready in time:\n{self.log_tail()}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """``kill -9`` by PID, and reap it."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def terminate(self) -> None:
        """SIGTERM by PID (uvicorn shuts down gracefully); `stop` waits for it."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self.process is not None:
            stop_process(self.process)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Cluster:
    """The instances of one app: one store, one public URL, one configuration.

    Attributes:
        config: What every instance's ``$AUTHBRIDGE_MULTI_APP`` holds (but its name).
        log_dir: Where each instance writes its log (``<name>.log``).
        instances: The instances launched so far, by name.
        robot_secret: The client secret of the ``robot`` machine client.
    """

    config: dict[str, Any]
    log_dir: Path
    instances: dict[str, Instance] = field(default_factory=dict)
    robot_secret: str = field(default="", repr=False)
    _public: socket.socket = field(default_factory=bound_socket)

    def __post_init__(self) -> None:
        port = self._public.getsockname()[1]
        self.origin = f"http://127.0.0.1:{port}"
        self.config = {**self.config, "issuer": self.origin}

    @property
    def store_url(self) -> str:
        return str(self.config["store"])

    @property
    def names(self) -> list[str]:
        return [name for name, instance in self.instances.items() if instance.alive]

    def __getitem__(self, name: str) -> Instance:
        return self.instances[name]

    def launch(self, names: Iterable[str], **overrides: Any) -> list[Instance]:
        """Start these instances at once and return when every one is ready."""
        started = []
        for name in names:
            if name in self.instances:
                raise ValueError(f"instance {name} exists")
            instance = Instance(name, {**self.config, **overrides}, self.log_dir / f"{name}.log")
            self.instances[name] = instance
            started.append(instance)
        for instance in started:
            instance.launch()
        deadline = time.monotonic() + READY_TIMEOUT
        for instance in started:
            instance.wait_ready(deadline)
        return started

    def close(self) -> None:
        for instance in self.instances.values():
            instance.terminate()  # all at once, then wait for each
        for instance in self.instances.values():
            instance.stop()
        self._public.close()

    def logs(self) -> str:
        return "".join(instance.log_text() for instance in self.instances.values())


class Browser:
    """A user agent: one cookie jar, its requests to the app spread over the instances.

    ``on`` names the instance a request goes to; without it, the next one of ``names``
    in turn (round-robin). URLs outside the app's public origin go where they point.
    Redirects are never followed by themselves: a test says where each hop goes.
    """

    def __init__(self, cluster: Cluster, names: Sequence[str] | None = None) -> None:
        self.cluster = cluster
        self.http = httpx.Client(timeout=REQUEST_TIMEOUT, follow_redirects=False, trust_env=False)
        self._turns = itertools.cycle(list(names or cluster.names))
        self.served_by: list[str] = []
        """The instance each request to the app went to, in order."""

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, target: str, on: str | None = None) -> str:
        """Where a request for ``target`` (a path or URL of the app, or another URL) goes."""
        origin = self.cluster.origin
        if target.startswith("/"):
            path = target
        elif target == origin or target.startswith(origin + "/"):
            path = target[len(origin) :] or "/"
        else:
            assert on is None, f"{target} is not the app's"
            return target
        name = on or next(self._turns)
        self.served_by.append(name)
        return self.cluster[name].base_url + path

    def request(
        self, method: str, target: str, *, on: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        response = self.http.request(method, self.url(target, on), **kwargs)
        remember_secrets(response)
        return response

    def get(self, target: str, *, on: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("GET", target, on=on, **kwargs)

    def post(self, target: str, *, on: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", target, on=on, **kwargs)

    def token(
        self, form: dict[str, str], *, on: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """POST ``form`` to the token endpoint."""
        return self.post("/oauth/token", on=on, data=form, **kwargs)

    def whoami(self, access_token: str, *, on: str | None = None) -> httpx.Response:
        return self.get("/whoami", on=on, headers={"Authorization": f"Bearer {access_token}"})


@dataclass(frozen=True)
class Timed:
    """What one of several concurrent calls returned (or raised), and when it ran."""

    result: Any
    sent: float
    done: float


def at_once(calls: Sequence[Callable[[], Any]]) -> list[Timed]:
    """Run ``calls`` in threads released together by a barrier; their outcomes in order.

    An exception is returned as the result, not raised.
    """
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Timed:
        barrier.wait()
        sent = time.perf_counter()
        try:
            result = call()
        except Exception as exc:  # the caller judges it
            result = exc
        return Timed(result, sent, time.perf_counter())

    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(run, call) for call in calls]]


class Prober:
    """Asks instances for ``path`` (with ``headers``) in a thread, until the block ends.

    ``answers`` holds every status by instance; a request that failed counts as 0.
    """

    def __init__(
        self, instances: Sequence[Instance], path: str, headers: dict[str, str], pause: float
    ) -> None:
        self.answers: dict[str, list[int]] = {i.name: [] for i in instances}
        self._instances = instances
        self._path, self._headers, self._pause = path, headers, pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT, trust_env=False) as http:
            while not self._stop.is_set():
                for instance in self._instances:
                    try:
                        status = http.get(
                            instance.base_url + self._path, headers=self._headers
                        ).status_code
                    except httpx.HTTPError:
                        status = 0
                    self.answers[instance.name].append(status)
                self._stop.wait(self._pause)

    def wait_for_more(self, count: int, timeout: float = 5.0) -> None:
        """Return once every instance answered ``count`` more requests than now."""
        goal = {name: len(answers) + count for name, answers in self.answers.items()}
        deadline = time.monotonic() + timeout
        while any(len(self.answers[name]) < n for name, n in goal.items()):
            assert time.monotonic() < deadline, "the prober is stuck"
            time.sleep(0.005)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT * 2)


def overlapped(timed: Sequence[Timed]) -> bool:
    """Whether every call was in flight at one moment (all sent before any returned)."""
    return max(t.sent for t in timed) < min(t.done for t in timed)


# --- the database ---------------------------------------------------------------------------


def sql(url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    """Run one query on the PostgreSQL database at ``url``; its rows as dictionaries."""
    import asyncpg  # noqa: PLC0415 - the test extra has it

    parsed = make_url(url)

    async def run() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password,
            database=parsed.database,
            timeout=5,
        )
        try:
            return [dict(row) for row in await connection.fetch(query, *args)]
        finally:
            await connection.close()

    return run_async(run)


def wait_for(path: Path, *, timeout: float, alive: Instance | None = None) -> None:
    """Wait until ``path`` exists (an instance says it reached a point)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if alive is not None and not alive.alive:
            raise RuntimeError(f"{alive.name} died first:\n{alive.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.01)
