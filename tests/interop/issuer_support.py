"""Run the app's own authorization server and its peers in real processes for interop tests.

* `AppProcess`: an authbridge app (``interop.issuer_app``) served by uvicorn on a free port of
  127.0.0.1, stopped by PID;
* `JoseVerifier`: npm ``jose`` (panva) in one Node process, verifying tokens with
  ``createRemoteJWKSet`` + ``jwtVerify`` (``jose_verify.mjs``);
* `ensure_jose_installed`: ``jose@JOSE_VERSION`` installed once into the same cache directory as
  oidc-provider (see ``op.ensure_oidc_provider_installed``);
* small helpers: a machine client in the store, a client-credentials token, tampered tokens.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from .op import OidcProviderError, _cache_root, _file_lock, _which

JOSE_VERSION = "6.2.19"
VERIFY_SCRIPT = Path(__file__).with_name("jose_verify.mjs")
TESTS_DIR = Path(__file__).resolve().parent.parent

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
INSTALL_TIMEOUT = 300.0
ANSWER_TIMEOUT = 30.0

CLIENT_ID = "robot"
SCOPES = ("items:read", "items:write")


# ------------------------------------------------------------------------------------------
# npm jose


def ensure_jose_installed(cache_dir: Path | None = None) -> Path:
    """Install ``jose@JOSE_VERSION`` once (file lock, completion marker); return its directory."""
    install_dir = cache_dir or _cache_root() / f"jose-{JOSE_VERSION}"
    marker = install_dir / ".install-complete"
    if marker.is_file():
        return install_dir
    with _file_lock(install_dir.with_name(install_dir.name + ".lock")):
        if marker.is_file():
            return install_dir
        install_dir.mkdir(parents=True, exist_ok=True)
        package_json = install_dir / "package.json"
        if not package_json.exists():
            package_json.write_text(
                json.dumps({"name": "authbridge-interop-jose", "private": True}) + "\n"
            )
        command = [
            _which("npm"), "install", "--no-audit", "--no-fund", "--no-save",
            "--prefix", str(install_dir), f"jose@{JOSE_VERSION}",
        ]  # fmt: skip
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise OidcProviderError(
                f"npm install jose failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        installed = install_dir / "node_modules" / "jose" / "package.json"
        version = json.loads(installed.read_text())["version"]
        if version != JOSE_VERSION:
            raise OidcProviderError(f"npm installed jose {version}")
        marker.write_text(JOSE_VERSION + "\n")
    return install_dir


def _install_script(install_dir: Path, script: Path) -> Path:
    """Copy ``script`` next to node_modules under a content-addressed name (atomic)."""
    content = script.read_bytes()
    target = install_dir / f"{script.stem}-{hashlib.sha256(content).hexdigest()[:16]}.mjs"
    if not target.is_file():
        temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        temporary.write_bytes(content)
        temporary.replace(target)
    return target


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies (Linux prctl)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM by PID, SIGKILL after a grace period; reaps the child."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


class JoseVerifier:
    """npm jose in one long-lived Node process; `verify` asks it about one token.

    The process keeps its remote key sets (one per JWKS URL and cooldown) between calls, like
    a resource server: after a key rotation, a token with a new ``kid`` makes it refetch.
    """

    def __init__(self, install_dir: Path, log_path: Path) -> None:
        self.install_dir = install_dir
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._next_id = 0
        self._buffer = b""

    def __enter__(self) -> Self:
        script = _install_script(self.install_dir, VERIFY_SCRIPT)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [_which("node"), str(script)],
                cwd=self.install_dir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads started here
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _stop(process)
        if process.stdout is not None:
            process.stdout.close()

    def verify(
        self,
        token: str,
        *,
        jwks_uri: str,
        issuer: str,
        audience: str,
        typ: str | None = "at+jwt",
        algorithms: list[str] | None = None,
        cooldown_ms: int | None = None,
    ) -> dict[str, Any]:
        """jose's verdict: ``{"ok": True, "payload", "protectedHeader", "kids"}`` or
        ``{"ok": False, "code", "name", "message", "kids"}``."""
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise RuntimeError("JoseVerifier is not started")
        self._next_id += 1
        request: dict[str, Any] = {
            "id": self._next_id,
            "token": token,
            "jwks_uri": jwks_uri,
            "issuer": issuer,
            "audience": audience,
            "typ": typ,
        }
        if algorithms is not None:
            request["algorithms"] = algorithms
        if cooldown_ms is not None:
            request["cooldown_ms"] = cooldown_ms
        process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
        answer = json.loads(self._read_line(process.stdout))
        if answer.get("id") != self._next_id:
            raise RuntimeError(f"unexpected answer from jose_verify.mjs: {answer}")
        return dict(answer)

    def _read_line(self, stdout: IO[bytes]) -> bytes:
        deadline = time.monotonic() + ANSWER_TIMEOUT
        fd = stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"no answer from jose within {ANSWER_TIMEOUT:.0f} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"jose_verify.mjs exited; log:\n{self._log_tail()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return "(no log)"


# ------------------------------------------------------------------------------------------
# authbridge apps in their own processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_kek() -> str:
    """A key-encryption key: base64url of 32 random bytes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this authbridge, ``interop`` importable."""
    import authbridge  # noqa: PLC0415

    src = str(Path(authbridge.__file__).resolve().parent.parent)
    env = dict(os.environ)
    parts = [src, str(TESTS_DIR)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.pop("AUTHBRIDGE_KEY_ENCRYPTION_KEY", None)
    env.update(extra)
    return env


class AppProcess:
    """``uvicorn --factory interop.issuer_app:create_app`` with one configuration (see there).

    ``port`` is chosen before start so that an issuer can name its own URL; `start` returns
    once ``GET /healthz`` answers 200 (the lifespan has run: store open, keys loaded).
    """

    def __init__(
        self, config: dict[str, Any], log_path: Path, *, port: int | None = None, **env: str
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config = config
        self.log_path = log_path
        self.env = env
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def launch(self) -> Self:
        """Start the process without waiting (see `wait_ready`)."""
        argv = [
            sys.executable, "-m", "uvicorn", "--factory", "interop.issuer_app:create_app",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        env = child_env(AUTHBRIDGE_INTEROP_APP=json.dumps(self.config), **self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv,
                cwd=TESTS_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads started here
            )
        return self

    def wait_ready(self) -> Self:
        process = self._process
        assert process is not None, "launch() first"
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"app exited with {process.returncode}; log {self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"app not ready within {READY_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def start(self) -> Self:
        return self.launch().wait_ready()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _stop(process)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.base_url}{path}", timeout=10, **kwargs)

    def whoami(self, token: str) -> httpx.Response:
        return self.get("/whoami", headers={"Authorization": f"Bearer {token}"})


def issuer_config(
    issuer_url: str, store_url: str, *, kek: str, algorithm: str = "ES256", **extra: Any
) -> dict[str, Any]:
    """The configuration of an issuer app (``role: issuer``)."""
    return {
        "role": "issuer",
        "issuer": issuer_url,
        "store": store_url,
        "signing_algorithm": algorithm,
        "scopes": list(SCOPES),
        "key_encryption_key": kek,
        **extra,
    }


async def add_machine_client(
    store_url: str,
    client_id: str = CLIENT_ID,
    *,
    scopes: tuple[str, ...] = SCOPES,
    auth_method: str = "client_secret_basic",
) -> str:
    """Register a client-credentials client in the store (migrating it); return its secret."""
    from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret  # noqa: PLC0415
    from authbridge.store import ClientRecord, open_store  # noqa: PLC0415

    secret = new_secret(CLIENT_SECRET_PREFIX)
    store = open_store(store_url)
    await store.start()
    try:
        await store.clients.add(
            ClientRecord(
                client_id=client_id,
                name=client_id,
                auth_method=auth_method,  # type: ignore[arg-type]
                secret_hash=hash_secret(secret, "client_secret"),
                grant_types=frozenset({"client_credentials"}),
                scopes=frozenset(scopes),
                created_at=time.time(),
            )
        )
    finally:
        await store.aclose()
    return secret


def client_credentials(
    base_url: str,
    client_id: str,
    secret: str,
    *,
    scope: str | None = None,
    resource: str | None = None,
    token_path: str = "/oauth/token",
) -> httpx.Response:
    """POST a client_credentials request with ``client_secret_basic``."""
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    if resource is not None:
        data["resource"] = resource
    return httpx.post(
        f"{base_url}{token_path}", data=data, auth=httpx.BasicAuth(client_id, secret), timeout=10
    )


def access_token(base_url: str, client_id: str, secret: str, **kwargs: Any) -> str:
    response = client_credentials(base_url, client_id, secret, **kwargs)
    if response.status_code != 200:
        raise RuntimeError(f"token endpoint -> {response.status_code}: {response.text[:500]}")
    token: str = response.json()["access_token"]
    return token


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m authbridge ARGS`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "authbridge", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env or child_env(),
        stdin=subprocess.DEVNULL,
    )


# ------------------------------------------------------------------------------------------
# Tokens


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt_header(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(_b64decode(token.split(".", maxsplit=1)[0]))
    return header


def jwt_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(_b64decode(token.split(".")[1]))
    return claims


def with_claims(token: str, **changes: Any) -> str:
    """The token with some claims changed and its original signature (so: invalid)."""
    head, _, rest = token.partition(".")
    _, _, signature = rest.partition(".")
    claims = {**jwt_claims(token), **changes}
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{head}.{payload}.{signature}"


def with_flipped_signature(token: str) -> str:
    """The token with one bit of its signature changed."""
    head, _, signature = token.rpartition(".")
    raw = bytearray(_b64decode(signature))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{_b64encode(bytes(raw))}"
