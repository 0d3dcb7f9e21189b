"""The ``authbridge`` command line (``python -m authbridge``)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._version import __version__

app = typer.Typer(
    name="authbridge",
    help="authbridge: trust, log in with and exchange tokens from OAuth 2.0 / OIDC providers.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface the demo API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the demo API.")] = 8000,
    issuer_port: Annotated[
        int, typer.Option(help="Port of the embedded test issuer (0 = any free port).")
    ] = 0,
) -> None:
    """Run a demo API protected by authbridge, with an embedded test issuer.

    Prints ready-to-paste tokens and curl commands; Swagger UI is at /docs.
    """
    import uvicorn  # noqa: PLC0415 - only this command needs the server

    from ._demo import DEMO_AUDIENCE, DEMO_USERS, create_demo_app, demo_tokens  # noqa: PLC0415
    from .testing import FakeIssuer  # noqa: PLC0415

    with FakeIssuer.serve(audience=DEMO_AUDIENCE, port=issuer_port) as issuer:
        base = f"http://{host}:{port}"
        api, _ = create_demo_app(issuer, resource=base)
        tokens = demo_tokens(issuer)
        typer.echo(f"Embedded test issuer: {issuer.issuer} (discovery and JWKS)")
        typer.echo(f"Demo API:             {base}   Swagger UI: {base}/docs\n")
        for name, token in tokens.items():
            typer.echo(f"# {name}: scopes {' '.join(DEMO_USERS[name])} (valid 1 hour)")
            typer.echo(f"{name.upper()}_TOKEN={token}\n")
        typer.echo("Try:")
        typer.echo(f"  curl -i {base}/items                                        # 401")
        typer.echo(f'  curl -i -H "Authorization: Bearer $READER_TOKEN" {base}/items   # 200')
        post = f'curl -i -X POST "{base}/items?name=drill" -H "Authorization: Bearer'
        typer.echo(f'  {post} $READER_TOKEN"   # 403')
        typer.echo(f'  {post} $WRITER_TOKEN"   # 201')
        typer.echo(f'  curl -i -H "Authorization: Bearer $ADMIN_TOKEN" {base}/me')
        typer.echo("")
        uvicorn.run(api, host=host, port=port, log_level="info")


@app.command()
def version() -> None:
    """Print the installed authbridge version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``authbridge`` script."""
    app()
