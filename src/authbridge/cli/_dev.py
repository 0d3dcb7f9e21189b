"""Development commands: ``demo``, ``mint`` and ``version``, and the key file they share.

A dev issuer is a key and a URL. ``--key-file`` makes the key outlive one
process, so ``authbridge demo --key-file K --issuer-port P`` and
``authbridge mint --serve --key-file K --port P`` publish the same key, and
``authbridge mint --key-file K --issuer http://127.0.0.1:P`` mints tokens
that either accepts, in any order.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .._version import __version__
from ..errors import ConfigurationError
from ..metadata import check_issuer_url
from ..testing import FakeIssuer, ServedFakeIssuer, sign_jwt
from ._app import UNAVAILABLE, command, fail

if TYPE_CHECKING:
    from .._demo_accounts import DemoCredentials

_MIN_BITS = 2048

KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        metavar="PATH",
        help="RSA private key (PEM) to sign with; created if missing. Shared by demo and mint "
        "so both accept the same tokens. Development only.",
        dir_okay=False,
    ),
]


def load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    """The RSA key in ``path``, or a new 2048-bit one written there (mode 0600).

    Creation is atomic: two commands started at once end up with one key.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _create_key(path)
    except OSError as exc:
        fail(f"error: cannot read the key file {str(path)!r}: {exc.strerror}", UNAVAILABLE)
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        fail(
            f"error: {str(path)!r} is not an unencrypted PEM private key (delete it to have a "
            "new one created)",
            UNAVAILABLE,
        )
    if not isinstance(loaded, rsa.RSAPrivateKey) or loaded.key_size < _MIN_BITS:
        fail(
            f"error: {str(path)!r} must hold an RSA private key of at least {_MIN_BITS} bits "
            "(the test issuer signs RS256)",
            UNAVAILABLE,
        )
    return loaded


def _create_key(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=_MIN_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file readable by its owner only.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".authbridge-key-")
    except OSError as exc:
        fail(f"error: cannot create the key file {str(path)!r}: {exc.strerror}", UNAVAILABLE)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        try:
            os.link(temporary, path)  # never replaces: fails if another process won the race
        except FileExistsError:
            return load_or_create_key(path)
        except OSError as exc:
            fail(f"error: cannot create the key file {str(path)!r}: {exc.strerror}", UNAVAILABLE)
    finally:
        os.unlink(temporary)
    return key


def bind(host: str, port: int, what: str, option: str) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a clear message and exit code 2."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"error: cannot listen on host {host!r}: {exc.strerror}", UNAVAILABLE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(
                f"error: port {port} on {host} is already in use ({what}); stop the program "
                f"using it or choose another with {option} PORT",
                UNAVAILABLE,
            )
        fail(f"error: cannot listen on {host}:{port} ({what}): {exc.strerror}", UNAVAILABLE)
    return sock


def enter_issuer(
    stack: ExitStack,
    *,
    port: int,
    host: str,
    key: rsa.RSAPrivateKey | None,
    audience: str,
    option: str,
) -> ServedFakeIssuer:
    """Serve a test issuer until ``stack`` closes; a clear message if the port is taken."""
    try:
        return stack.enter_context(
            FakeIssuer.serve(audience=audience, host=host, port=port, key=key)
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(
                f"error: port {port} on {host} is already in use (test issuer); stop the "
                f"program using it or choose another with {option} PORT",
                UNAVAILABLE,
            )
        fail(f"error: cannot serve the test issuer on {host}:{port}: {exc.strerror}", UNAVAILABLE)


def _claim(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        fail(f"error: --claim takes NAME=VALUE, got {text!r}", UNAVAILABLE)
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


@command("mint", "Mint a development token from a test issuer.")
def mint(
    *,
    subject: Annotated[str, typer.Option(metavar="SUBJECT", help="The sub claim.")] = "alice",
    scope: Annotated[
        list[str] | None,
        typer.Option(metavar="SCOPE", help="A granted scope; repeatable."),
    ] = None,
    audience: Annotated[
        str, typer.Option(metavar="AUDIENCE", help="The aud claim (your API's identifier).")
    ] = "https://api.example.test",
    expires_in: Annotated[
        float,
        typer.Option(
            "--expires-in", metavar="SECONDS", help="Lifetime; negative for an expired token."
        ),
    ] = 3600,
    client_id: Annotated[
        str, typer.Option("--client-id", metavar="CLIENT_ID", help="The client_id claim.")
    ] = "test-client",
    claim: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=VALUE",
            help="A claim to add or override (VALUE read as JSON if it is JSON; null removes "
            "the claim); repeatable.",
        ),
    ] = None,
    key_file: KeyFileOption = None,
    issuer: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The iss of the token: the URL where a test issuer with the same --key-file "
            "serves (not with --serve).",
        ),
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Serve the issuer's discovery and JWKS until Ctrl-C, so the token can be "
            "verified.",
        ),
    ] = False,
    host: Annotated[
        str, typer.Option(metavar="HOST", help="Interface to serve on (with --serve).")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(metavar="PORT", help="Port to serve on, 0 for any free one (with --serve)."),
    ] = 0,
) -> None:
    """Mint a development access token from the embedded test issuer (RS256, typ at+jwt).

    With --serve, the issuer serves its discovery document and JWKS on HOST:PORT
    until Ctrl-C; ISSUER= and TOKEN= lines are printed for the shell. Without
    it, give --issuer and --key-file of a test issuer serving elsewhere
    (`authbridge mint --serve` or `authbridge demo` with the same key file); only
    the token is printed. Never use these keys or tokens in production.
    """
    extra = dict(_claim(text) for text in claim or ())
    if serve and issuer is not None:
        fail("error: --issuer is decided by --host and --port with --serve", UNAVAILABLE)
    if not serve:
        if key_file is None or issuer is None:
            fail(
                "error: a token is only useful if something can verify it: give --key-file "
                "and --issuer of a running test issuer (authbridge mint --serve, authbridge "
                "demo), or --serve",
                UNAVAILABLE,
            )
        try:
            check_issuer_url(issuer)
        except ConfigurationError as exc:
            fail(f"error: {exc.message}", UNAVAILABLE)
    key = load_or_create_key(key_file) if key_file is not None else None

    def token_of(fake: FakeIssuer) -> str:
        claims = fake.claims(
            subject=subject, scopes=scope or (), expires_in=expires_in, client_id=client_id
        )
        claims.update(extra)  # --claim wins, even over sub, aud or exp
        claims = {name: value for name, value in claims.items() if value is not None}
        return sign_jwt({"alg": "RS256", "typ": "at+jwt", "kid": fake.kid}, claims, fake.key)

    if not serve:
        fake = FakeIssuer(issuer=str(issuer), audience=audience, key=key)
        typer.echo(token_of(fake))
        return
    with ExitStack() as stack:
        fake = enter_issuer(
            stack, port=port, host=host, key=key, audience=audience, option="--port"
        )
        typer.echo(f"ISSUER={fake.issuer}")
        typer.echo(f"TOKEN={token_of(fake)}")
        typer.echo(
            f"Serving discovery and JWKS at {fake.issuer} (Ctrl-C to stop). Check it with:\n"
            f'  authbridge verify - --issuer {fake.issuer} --audience {audience} <<< "$TOKEN"',
            err=True,
        )
        if key_file is not None:
            typer.echo(
                "More tokens:\n"
                f"  authbridge mint --key-file {key_file} --issuer {fake.issuer} "
                f"--audience {audience} --subject bob --scope items:read",
                err=True,
            )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            typer.echo("Stopped.", err=True)


@command("demo", "Run a demo API with an embedded test issuer and its own tokens.")
def demo(
    *,
    host: Annotated[
        str, typer.Option(metavar="HOST", help="Interface the demo API listens on.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port of the demo API.")] = 8000,
    issuer_port: Annotated[
        int,
        typer.Option(
            "--issuer-port",
            metavar="PORT",
            help="Port of the embedded test issuer (0 = any free port).",
        ),
    ] = 0,
    key_file: KeyFileOption = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="URL",
            help="The store of the demo API's own issuer (users, clients, signing keys), "
            "e.g. sqlite+aiosqlite:///demo.db to keep it (default: a SQLite file in a "
            "temporary directory, deleted at exit). Its demo users and clients are reset at "
            "each start.",
            show_default=False,
        ),
    ] = None,
    postgres: Annotated[
        str | None,
        typer.Option(
            "--postgres",
            metavar="URL",
            help="Run on this PostgreSQL database instead (postgresql://USER@HOST/DATABASE; "
            "a database of its own: the demo's users and clients are created or reset "
            "there, its signing keys kept unencrypted).",
            show_default=False,
        ),
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            metavar="URL",
            help="Keep the short-lived state (login transactions, codes, rate limits, replay "
            "caches) in this Redis (redis://HOST:PORT/DB), as several instances would.",
            show_default=False,
        ),
    ] = None,
    redis_prefix: Annotated[
        str,
        typer.Option(
            "--redis-prefix",
            metavar="PREFIX",
            help="Put before the demo's Redis key names (with --redis).",
        ),
    ] = "authbridge-demo:",
) -> None:
    """Run a demo API protected by authbridge, with an embedded test issuer.

    The API also issues its own tokens (password, refresh token and client
    credentials grants) to two local users, alice and bob, and a machine
    client, robot, whose new passwords and secret are printed at each start.
    People log in too, with a local password or at the embedded test issuer
    (users carol and dave): from Swagger UI (Authorize, AppLogin), from the
    page /demo (a session), or by exchanging a test issuer's token. alice
    lets the client garage-robot open her garage for an hour: she mints it a
    delegated token, which it renews with its own secret until she ends it.
    Prints ready-to-paste tokens and curl commands for every flow, also shown
    on the page /demo; Swagger UI is at /docs. With --postgres and --redis,
    the same demo runs on those servers (the app's AUTHBRIDGE_STORE and
    AUTHBRIDGE_REDIS_URL are never read: the demo writes its accounts where it
    runs). With --key-file (and a fixed
    --issuer-port), `authbridge mint` makes more tokens the demo accepts.
    """
    import uvicorn  # noqa: PLC0415 - only this command needs the server

    from .._demo import (  # noqa: PLC0415
        DEMO_AUDIENCE,
        DEMO_USERS,
        LOGIN_CLIENT,
        DemoCredentials,
        create_demo_app,
        demo_guide,
        demo_store,
        demo_tokens,
        guide_text,
    )
    from ._stores import redacted  # noqa: PLC0415

    if postgres is not None:
        if store is not None:
            fail("error: give --store or --postgres, not both", UNAVAILABLE)
        if urlsplit(postgres).scheme.split("+")[0] not in ("postgresql", "postgres"):
            fail(
                "error: --postgres takes a postgresql://USER@HOST/DATABASE URL, got "
                f"{redacted(postgres)!r}",
                UNAVAILABLE,
            )
        store = postgres
    key = load_or_create_key(key_file) if key_file is not None else None
    # Listen first: a taken port is reported before anything else happens.
    with ExitStack() as stack:
        listener = stack.enter_context(bind(host, port, "demo API", "--port"))
        issuer = enter_issuer(
            stack,
            port=issuer_port,
            host="127.0.0.1",
            key=key,
            audience=DEMO_AUDIENCE,
            option="--issuer-port",
        )
        port = listener.getsockname()[1]  # the real one when --port 0
        base = f"http://{host}:{port}"
        if store is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="authbridge-demo-"))
            store = f"sqlite+aiosqlite:///{Path(directory) / 'demo.db'}"
        credentials = DemoCredentials.generate()
        _prepare_demo_store(store, redis, redis_prefix, credentials)
        try:
            api, auth = create_demo_app(
                issuer,
                resource=base,
                store=demo_store(store, redis=redis, redis_prefix=redis_prefix),
                credentials=credentials,
            )
        except ConfigurationError as exc:
            fail(f"error: {exc.message}", UNAVAILABLE)
        tokens = demo_tokens(issuer)
        typer.echo(f"Embedded test issuer: {issuer.issuer} (discovery and JWKS)")
        typer.echo(f"Demo API:             {base}   Swagger UI: {base}/docs")
        typer.echo(f"Every flow, and who is logged in: {base}/demo")
        typer.echo(f"Its own issuer:       {base}   store: {redacted(store)}")
        if redis is not None:
            typer.echo(
                f"Short-lived state:    {redacted(redis)}, keys {redis_prefix}* (login "
                "transactions, codes, rate limits, replay caches)"
            )
        typer.echo("")
        for name, token in tokens.items():
            typer.echo(f"# {name}: scopes {' '.join(DEMO_USERS[name])} (valid 1 hour)")
            typer.echo(f"{name.upper()}_TOKEN={token}\n")
        if key_file is not None:
            typer.echo("More tokens (another subject, scopes, an expired one...):")
            typer.echo(
                f"  authbridge mint --key-file {key_file} --issuer {issuer.issuer} "
                f"--audience {DEMO_AUDIENCE} --subject bob --scope items:write"
            )
        else:
            typer.echo("For more tokens, restart with --key-file dev-key.pem and use mint.")
        runtime = auth.issuer
        assert runtime is not None  # noqa: S101 - created with a store
        carol = issuer.token(subject="carol", scopes=(), client_id=LOGIN_CLIENT, expires_in=3600)
        sections = demo_guide(
            base,
            credentials,
            token_path=urlsplit(runtime.config.endpoint("token")).path,
            provider_issuer=issuer.issuer,
            provider_token=carol,
        )
        for line in guide_text(sections):
            typer.echo(line)
        typer.echo(f"\nServing the demo API on {base} (Ctrl-C to stop)")
        config = uvicorn.Config(api, host=host, port=port, log_level="info")
        uvicorn.Server(config).run(sockets=[listener])


def _prepare_demo_store(
    url: str, redis: str | None, redis_prefix: str, credentials: DemoCredentials
) -> None:
    """Create or reset the demo's accounts; a clear message and exit 2 if a server is down.

    With Redis, it is reached too, so that a wrong URL is said before anything
    is printed.
    """
    from .._demo import demo_store, prepare_demo_store  # noqa: PLC0415
    from ..errors import StoreUnavailable  # noqa: PLC0415
    from ._stores import redacted  # noqa: PLC0415

    where = redacted(url) if redis is None else f"{redacted(url)} (with {redacted(redis)})"

    async def run() -> None:
        store = demo_store(url, redis=redis, redis_prefix=redis_prefix)
        try:  # closed even when only one of the two servers answered
            await store.start()
            await prepare_demo_store(store, credentials)
        finally:
            await store.aclose()

    try:
        asyncio.run(run())
    except StoreUnavailable as exc:
        fail(f"error: the store at {where} is unavailable ({exc.reason})", UNAVAILABLE)
    except ConfigurationError as exc:
        fail(f"error: {exc}", UNAVAILABLE)


@command("version", "Print the installed authbridge version.")
def version() -> None:
    """Print the installed authbridge version."""
    typer.echo(__version__)
