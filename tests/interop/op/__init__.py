"""Run the real OpenID Provider ``oidc-provider`` (npm) on 127.0.0.1 for interop tests.

Typical use (see ``tests/interop/conftest.py`` for the fixtures)::

    config = default_config()  # fresh RSA key, two resources, three clients, test users
    with OidcProvider(workdir) as op:
        op.start(config)
        token = op.client_credentials_token(JWT_RESOURCE, "items:read")
        op.restart(jwks=[generate_rsa_jwk()])  # key rotation: same issuer and port

The npm package is installed once into a cache directory outside the repository
(``$AUTHBRIDGE_CACHE_DIR`` or ``~/.cache/authbridge``); ``server.mjs`` is copied next to its
``node_modules`` because ES modules ignore ``NODE_PATH``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "CC_CLIENT_ID",
    "CC_CLIENT_SECRET",
    "JWT_RESOURCE",
    "JWT_RESOURCE_SCOPE",
    "OIDC_PROVIDER_VERSION",
    "OPAQUE_RESOURCE",
    "OPAQUE_RESOURCE_SCOPE",
    "PUBLIC_CLIENT_ID",
    "PUBLIC_REDIRECT_URI",
    "SWAGGER_CLIENT_ID",
    "SWAGGER_REDIRECT_URI",
    "TEST_USERS",
    "AuthorizationCode",
    "OidcProvider",
    "OidcProviderConfig",
    "OidcProviderError",
    "OidcProviderFactory",
    "ResourceServer",
    "TestUser",
    "default_clients",
    "default_config",
    "ensure_oidc_provider_installed",
    "generate_rsa_jwk",
    "pkce_pair",
    "public_jwk",
    "swagger_client",
]

OIDC_PROVIDER_VERSION = "9.13.3"
SERVER_SCRIPT = Path(__file__).with_name("server.mjs")

JWT_RESOURCE = "https://api.example.test/jwt"
JWT_RESOURCE_SCOPE = "items:read items:write"
OPAQUE_RESOURCE = "https://api.example.test/opaque"
OPAQUE_RESOURCE_SCOPE = "items:read items:write"

CC_CLIENT_ID = "cc-client"
CC_CLIENT_SECRET = "cc-client-secret-0123456789"  # a fixed test credential
PUBLIC_CLIENT_ID = "public-client"
# A native client's loopback redirect URI: the provider accepts it with any port.
PUBLIC_REDIRECT_URI = "http://127.0.0.1/cb"
# Swagger UI served by an API on 127.0.0.1 (any port): a public native client too.
SWAGGER_CLIENT_ID = "swagger-client"
SWAGGER_REDIRECT_URI = "http://127.0.0.1/docs/oauth2-redirect"

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
INSTALL_TIMEOUT = 300.0


class OidcProviderError(RuntimeError):
    """The provider could not be installed or started, or answered unexpectedly."""


@dataclass(frozen=True)
class TestUser:
    """A fixed end-user known to the provider's login form."""

    __test__ = False  # not a pytest test class despite the name

    username: str
    password: str
    claims: dict[str, Any] = field(default_factory=dict)


TEST_USERS: tuple[TestUser, ...] = (
    TestUser(
        "alice",
        "wonderland",
        {
            "email": "alice@example.test",
            "email_verified": True,
            "name": "Alice Liddell",
            "preferred_username": "alice",
        },
    ),
    TestUser(
        "bob",
        "builder",
        {
            "email": "bob@example.test",
            "email_verified": False,
            "name": "Bob Builder",
            "preferred_username": "bob",
        },
    ),
)


@dataclass(frozen=True)
class ResourceServer:
    """A resource indicator (RFC 8707) the provider issues access tokens for."""

    identifier: str
    scope: str
    access_token_format: Literal["jwt", "opaque"] = "jwt"
    audience: str | None = None  # defaults to the identifier
    access_token_ttl: int | None = None  # defaults to OidcProviderConfig.access_token_ttl
    signing_alg: str = "RS256"
    signing_kid: str | None = None  # pin a key; otherwise the provider picks (first fitting key)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "scope": self.scope,
            "accessTokenFormat": self.access_token_format,
            "audience": self.audience or self.identifier,
            "signingAlg": self.signing_alg,
        }
        if self.access_token_ttl is not None:
            data["accessTokenTTL"] = self.access_token_ttl
        if self.signing_kid is not None:
            data["signingKid"] = self.signing_kid
        return data


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an RSA JWK."""
    members = {"e": jwk["e"], "kty": jwk["kty"], "n": jwk["n"]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def generate_rsa_jwk(
    kid: str | None = None, *, alg: str = "RS256", bits: int = 2048
) -> dict[str, Any]:
    """A fresh private RSA JWK (``use: sig``); ``kid`` defaults to its RFC 7638 thumbprint."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    numbers = key.private_numbers()
    public = numbers.public_numbers
    jwk: dict[str, Any] = {
        "kty": "RSA",
        "use": "sig",
        "alg": alg,
        "n": _b64url_uint(public.n),
        "e": _b64url_uint(public.e),
        "d": _b64url_uint(numbers.d),
        "p": _b64url_uint(numbers.p),
        "q": _b64url_uint(numbers.q),
        "dp": _b64url_uint(numbers.dmp1),
        "dq": _b64url_uint(numbers.dmq1),
        "qi": _b64url_uint(numbers.iqmp),
    }
    jwk["kid"] = kid or _jwk_thumbprint(jwk)
    return jwk


def public_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    """The public members of a private RSA/EC/OKP JWK."""
    private = {"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}
    return {name: value for name, value in jwk.items() if name not in private}


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` pair using S256."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def swagger_client(
    client_id: str = SWAGGER_CLIENT_ID, redirect_uri: str = SWAGGER_REDIRECT_URI
) -> dict[str, Any]:
    """Swagger UI's "Authorize" as a public native client (authorization code + PKCE).

    Its browser origin must also be listed in :attr:`OidcProviderConfig.cors_origins` for the
    token request from the page to pass CORS.
    """
    return {
        "client_id": client_id,
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": [redirect_uri],
    }


def default_clients() -> list[dict[str, Any]]:
    """A confidential client-credentials client and public native (PKCE) clients."""
    return [
        {
            "client_id": CC_CLIENT_ID,
            "client_secret": CC_CLIENT_SECRET,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "token_endpoint_auth_method": "client_secret_basic",
        },
        {
            "client_id": PUBLIC_CLIENT_ID,
            "application_type": "native",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": [PUBLIC_REDIRECT_URI],
        },
        swagger_client(),
    ]


@dataclass(frozen=True)
class OidcProviderConfig:
    """What ``server.mjs`` is started with; see the comment at its top for the JSON layout."""

    jwks: tuple[dict[str, Any], ...]
    resources: tuple[ResourceServer, ...] = (
        ResourceServer(JWT_RESOURCE, JWT_RESOURCE_SCOPE, "jwt"),
        ResourceServer(OPAQUE_RESOURCE, OPAQUE_RESOURCE_SCOPE, "opaque"),
    )
    clients: tuple[dict[str, Any], ...] = field(default_factory=lambda: tuple(default_clients()))
    users: tuple[TestUser, ...] = TEST_USERS
    access_token_ttl: int = 300
    use_granted_resource: bool = True
    default_resource: str | None = None
    # Browser origins (exact, e.g. "http://127.0.0.1:8000") allowed to make CORS requests to the
    # token endpoint etc. as a client, by client_id; no origin is allowed otherwise.
    cors_origins: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Deep-merged over the oidc-provider configuration built by server.mjs (JSON values only).
    provider_configuration: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> OidcProviderConfig:
        return dataclasses.replace(self, **changes)

    def with_cors_origin(self, client_id: str, origin: str) -> OidcProviderConfig:
        """The same configuration with ``origin`` also allowed CORS requests as ``client_id``."""
        origins = {**self.cors_origins}
        origins[client_id] = (*origins.get(client_id, ()), origin)
        return self.replace(cors_origins=origins)

    def with_ttl(self, seconds: int) -> OidcProviderConfig:
        """The same configuration with every access token lifetime set to ``seconds``."""
        resources = tuple(dataclasses.replace(r, access_token_ttl=seconds) for r in self.resources)
        return self.replace(access_token_ttl=seconds, resources=resources)

    def to_json(self, *, port: int, ready_file: Path) -> dict[str, Any]:
        return {
            "port": port,
            "readyFile": str(ready_file),
            "jwks": {"keys": list(self.jwks)},
            "cookieKeys": [secrets.token_urlsafe(32)],
            "accessTokenTTL": self.access_token_ttl,
            "useGrantedResource": self.use_granted_resource,
            "defaultResource": self.default_resource,
            "resources": {r.identifier: r.to_json() for r in self.resources},
            "clients": list(self.clients),
            "corsOrigins": {client: list(origins) for client, origins in self.cors_origins.items()},
            "users": {u.username: {"password": u.password, "claims": u.claims} for u in self.users},
            "providerConfiguration": self.provider_configuration,
        }


def default_config(
    jwks: list[dict[str, Any]] | None = None, *, access_token_ttl: int = 300
) -> OidcProviderConfig:
    """Two resources (JWT and opaque), the default clients and users, one fresh RSA key."""
    keys = jwks if jwks is not None else [generate_rsa_jwk()]
    return OidcProviderConfig(jwks=tuple(keys)).with_ttl(access_token_ttl)


# ------------------------------------------------------------------------------------------
# Installation


def _cache_root() -> Path:
    explicit = os.environ.get("AUTHBRIDGE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "authbridge"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _which(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise OidcProviderError(f"{program!r} is not on PATH; the interop tests need Node.js")
    return found


def ensure_oidc_provider_installed(cache_dir: Path | None = None) -> Path:
    """Install ``oidc-provider@OIDC_PROVIDER_VERSION`` once; return the install directory.

    Safe to call from parallel test workers (an exclusive file lock guards the install); a
    marker file written after a successful ``npm install`` makes later calls return at once.
    """
    install_dir = cache_dir or _cache_root() / f"oidc-provider-{OIDC_PROVIDER_VERSION}"
    marker = install_dir / ".install-complete"
    if marker.is_file():
        return install_dir
    with _file_lock(install_dir.with_name(install_dir.name + ".lock")):
        if marker.is_file():
            return install_dir
        install_dir.mkdir(parents=True, exist_ok=True)
        # A package.json keeps npm from walking up to some unrelated project.
        package_json = install_dir / "package.json"
        if not package_json.exists():
            package_json.write_text(
                json.dumps({"name": "authbridge-interop-op", "private": True}) + "\n"
            )
        command = [
            _which("npm"),
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--prefix",
            str(install_dir),
            f"oidc-provider@{OIDC_PROVIDER_VERSION}",
        ]
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
                f"npm install failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        installed = install_dir / "node_modules" / "oidc-provider" / "package.json"
        version = json.loads(installed.read_text())["version"]
        if version != OIDC_PROVIDER_VERSION:
            raise OidcProviderError(f"npm installed oidc-provider {version}")
        marker.write_text(OIDC_PROVIDER_VERSION + "\n")
    return install_dir


def _install_server_script(install_dir: Path) -> Path:
    """Copy server.mjs next to node_modules under a content-addressed name (atomic, idempotent)."""
    content = SERVER_SCRIPT.read_bytes()
    target = install_dir / f"server-{hashlib.sha256(content).hexdigest()[:16]}.mjs"
    if not target.is_file():
        temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        temporary.write_bytes(content)
        temporary.replace(target)
    return target


# ------------------------------------------------------------------------------------------
# HTML forms of the interaction pages


@dataclass
class _Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    input_names: set[str] = field(default_factory=set)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self._current: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._current = _Form(
                action=attributes.get("action", ""),
                method=attributes.get("method", "get").lower(),
            )
            self.forms.append(self._current)
        elif tag in {"input", "button"} and self._current is not None:
            name = attributes.get("name")
            if name:
                self._current.input_names.add(name)
                if attributes.get("type") == "hidden" or tag == "button":
                    self._current.fields[name] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def _parse_forms(html: str) -> list[_Form]:
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


# ------------------------------------------------------------------------------------------
# The running provider


class OidcProvider:
    """One ``oidc-provider`` process on 127.0.0.1, started from an :class:`OidcProviderConfig`.

    ``workdir`` receives ``config.json``, ``ready.json`` and ``provider.log`` (the process's
    output, appended across restarts). Stop it with :meth:`stop` or use it as a context manager.
    """

    def __init__(self, workdir: Path, *, install_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.install_dir = install_dir
        self.log_path = workdir / "provider.log"
        self.config_path = workdir / "config.json"
        self.ready_path = workdir / "ready.json"
        self.config: OidcProviderConfig | None = None
        self.issuer = ""
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, config: OidcProviderConfig, *, port: int = 0) -> Self:
        """Start the provider (``port=0``: any free port) and wait until it listens."""
        if self._process is not None:
            raise OidcProviderError("provider already started; stop() or restart() it")
        install_dir = self.install_dir or ensure_oidc_provider_installed()
        self.install_dir = install_dir
        script = _install_server_script(install_dir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ready_path.unlink(missing_ok=True)
        self.config = config
        self.config_path.write_text(
            json.dumps(config.to_json(port=port, ready_file=self.ready_path), indent=2)
        )
        env = {**os.environ, "NODE_ENV": "test"}
        with self.log_path.open("ab") as log:
            # The child keeps its own descriptor for the log file; ours closes with the block.
            self._process = subprocess.Popen(
                [_which("node"), str(script), str(self.config_path)],
                cwd=install_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            ready = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.issuer = ready["issuer"]
        self.port = int(ready["port"])
        return self

    def _wait_ready(self) -> dict[str, Any]:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise OidcProviderError(
                    f"oidc-provider exited with {self._process.returncode} before it was ready;"
                    f" log {self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                ready: dict[str, Any] = json.loads(self.ready_path.read_text())
                if ready.get("pid") == self._process.pid:
                    return ready
            time.sleep(0.05)
        raise OidcProviderError(
            f"oidc-provider not ready within {READY_TIMEOUT:.0f} s; log {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the process by PID: SIGTERM, then SIGKILL after a grace period. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)
        self.ready_path.unlink(missing_ok=True)

    def restart(
        self,
        jwks: list[dict[str, Any]] | None = None,
        *,
        config: OidcProviderConfig | None = None,
    ) -> Self:
        """Restart on the same port (so the same issuer), optionally with new keys or config.

        The provider keeps tokens, grants and sessions in memory: they do not survive this.
        """
        base = config or self.config
        if base is None:
            raise OidcProviderError("provider was never started")
        if jwks is not None:
            base = base.replace(jwks=tuple(jwks))
        port = self.port
        self.stop()
        return self.start(base, port=port)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- HTTP helpers --------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` for the issuer (no redirects followed); close it after use."""
        self._require_running()
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.issuer, follow_redirects=False, **kwargs)

    def _require_running(self) -> None:
        if not self.running:
            raise OidcProviderError(f"provider is not running; log:\n{self.log_tail()}")

    def url(self, path: str) -> str:
        return urljoin(self.issuer + "/", path.lstrip("/"))

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def discovery(self) -> dict[str, Any]:
        with self.client() as http:
            return _json(http.get(self.discovery_url))

    def jwks(self) -> dict[str, Any]:
        with self.client() as http:
            return _json(http.get(self.discovery()["jwks_uri"]))

    def token_request(
        self,
        data: dict[str, str],
        *,
        client_id: str,
        client_secret: str | None = None,
    ) -> httpx.Response:
        """POST to the token endpoint (Basic auth with a secret, else ``client_id`` in the body)."""
        with self.client() as http:
            return http.post("/token", data=data, auth=_client_auth(client_id, client_secret, data))

    def client_credentials_token(
        self,
        resource: str | None = JWT_RESOURCE,
        scope: str | None = "items:read",
        *,
        client_id: str = CC_CLIENT_ID,
        client_secret: str = CC_CLIENT_SECRET,
    ) -> dict[str, Any]:
        """A client-credentials token response (RFC 6749 §4.4) for ``resource``."""
        data = {"grant_type": "client_credentials"}
        if resource is not None:
            data["resource"] = resource
        if scope is not None:
            data["scope"] = scope
        response = self.token_request(data, client_id=client_id, client_secret=client_secret)
        return _json(response)

    def authorization_code_pkce_login(
        self,
        client_id: str = PUBLIC_CLIENT_ID,
        redirect_uri: str = PUBLIC_REDIRECT_URI,
        scope: str = "openid items:read",
        resource: str | None = JWT_RESOURCE,
        username: str = "alice",
        password: str = "wonderland",
        *,
        client_secret: str | None = None,
        extra_params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Log in over plain HTTP and exchange the code (with PKCE); return the token response.

        GET /auth -> login form -> consent form -> redirect_uri?code=... -> POST /token.
        """
        code = self.authorize(
            client_id=client_id,
            redirect_uri=redirect_uri,
            scope=scope,
            resource=resource,
            username=username,
            password=password,
            extra_params=extra_params,
        )
        data = {
            "grant_type": "authorization_code",
            "code": code.code,
            "redirect_uri": redirect_uri,
            "code_verifier": code.code_verifier,
        }
        if resource is not None:
            data["resource"] = resource
        response = self.token_request(data, client_id=client_id, client_secret=client_secret)
        return _json(response)

    def authorize(
        self,
        *,
        client_id: str = PUBLIC_CLIENT_ID,
        redirect_uri: str = PUBLIC_REDIRECT_URI,
        scope: str = "openid items:read",
        resource: str | None = JWT_RESOURCE,
        username: str = "alice",
        password: str = "wonderland",
        extra_params: dict[str, str] | None = None,
        max_steps: int = 12,
    ) -> AuthorizationCode:
        """Drive the authorization endpoint and interactions; return the authorization code."""
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        params = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": scope,
            "state": state,
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if resource is not None:
            params["resource"] = resource
        params.update(extra_params or {})

        with self.client() as http:
            response = http.get("/auth", params=params)
            for _ in range(max_steps):
                if response.is_redirect:
                    location = urljoin(str(response.url), response.headers["location"])
                    if _same_endpoint(location, redirect_uri):
                        query = parse_qs(urlsplit(location).query)
                        if "error" in query:
                            raise OidcProviderError(f"authorization failed: {location}")
                        if query.get("state") != [state]:
                            raise OidcProviderError(f"state mismatch in {location}")
                        return AuthorizationCode(
                            code=query["code"][0],
                            code_verifier=verifier,
                            state=state,
                            iss=query.get("iss", [""])[0],
                            redirect_location=location,
                        )
                    response = http.get(location)
                elif response.status_code == 200 and "text/html" in response.headers.get(
                    "content-type", ""
                ):
                    response = self._submit_interaction(http, response, username, password)
                else:
                    raise OidcProviderError(
                        f"unexpected {response.status_code} from {response.url}:"
                        f" {response.text[:500]}\nlog:\n{self.log_tail()}"
                    )
        raise OidcProviderError(f"no authorization code after {max_steps} steps")

    def _submit_interaction(
        self, http: httpx.Client, page: httpx.Response, username: str, password: str
    ) -> httpx.Response:
        forms = _parse_forms(page.text)
        login = next((f for f in forms if "password" in f.input_names), None)
        if login is not None:
            data = {**login.fields, "login": username, "password": password}
            response = http.post(urljoin(str(page.url), login.action), data=data)
            if not response.is_redirect:
                raise OidcProviderError(f"login as {username!r} failed ({response.status_code})")
            return response
        consent = next((f for f in forms if f.action.endswith("/confirm")), None)
        if consent is not None:
            return http.post(urljoin(str(page.url), consent.action), data=consent.fields)
        raise OidcProviderError(f"no login or consent form at {page.url}: {page.text[:500]}")

    def introspect(
        self,
        token: str,
        *,
        client_id: str = CC_CLIENT_ID,
        client_secret: str | None = CC_CLIENT_SECRET,
        token_type_hint: str | None = None,
    ) -> dict[str, Any]:
        """RFC 7662 introspection response (any confidential client may introspect any token)."""
        data = {"token": token}
        if token_type_hint:
            data["token_type_hint"] = token_type_hint
        with self.client() as http:
            response = http.post(
                "/token/introspection", data=data, auth=_client_auth(client_id, client_secret, data)
            )
        return _json(response)

    def userinfo(self, access_token: str) -> dict[str, Any]:
        """The userinfo response; needs an access token issued without a ``resource``."""
        with self.client() as http:
            response = http.get("/me", headers={"Authorization": f"Bearer {access_token}"})
        return _json(response)

    def revoke(
        self,
        token: str,
        *,
        client_id: str = CC_CLIENT_ID,
        client_secret: str | None = CC_CLIENT_SECRET,
        token_type_hint: str | None = None,
    ) -> httpx.Response:
        """RFC 7009 revocation; the provider lets a client revoke only its own tokens."""
        data = {"token": token}
        if token_type_hint:
            data["token_type_hint"] = token_type_hint
        with self.client() as http:
            return http.post(
                "/token/revocation", data=data, auth=_client_auth(client_id, client_secret, data)
            )


class OidcProviderFactory(Protocol):
    """The ``oidc_provider_factory`` fixture: start a private provider for one test."""

    def __call__(
        self, config: OidcProviderConfig | None = None, **overrides: Any
    ) -> OidcProvider: ...


@dataclass(frozen=True)
class AuthorizationCode:
    """The outcome of :meth:`OidcProvider.authorize`."""

    code: str
    code_verifier: str
    state: str
    iss: str
    redirect_location: str


def _client_auth(client_id: str, client_secret: str | None, data: dict[str, str]) -> httpx.Auth:
    """client_secret_basic with a secret; otherwise (auth method none) client_id in the body."""
    if client_secret is None:
        data["client_id"] = client_id
        return httpx.Auth()  # the base class sends the request unchanged
    return httpx.BasicAuth(client_id, client_secret)


def _same_endpoint(location: str, redirect_uri: str) -> bool:
    """Whether ``location`` goes to ``redirect_uri`` (loopback redirect URIs match any port)."""
    got, want = urlsplit(location), urlsplit(redirect_uri)
    return (got.scheme, got.hostname, got.path) == (want.scheme, want.hostname, want.path) and (
        want.port is None or got.port == want.port
    )


def _json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise OidcProviderError(
            f"{response.request.method} {response.request.url} -> {response.status_code}:"
            f" {response.text[:1000]}"
        )
    body: dict[str, Any] = response.json()
    return body
