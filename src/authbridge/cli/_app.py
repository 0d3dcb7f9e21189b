"""The Typer application, plain help output, and what every command shares.

Exit codes, for every command:

- 0: done (the issuer is usable, the token is valid, ...);
- 1: the answer is no (the token is refused, the issuer is not usable as given,
  the token cannot be decoded);
- 2: no answer could be given (usage error, provider unreachable, port taken).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer
from typer.core import TyperCommand

OK = 0
REFUSED = 1
UNAVAILABLE = 2

MAX_INPUT_CHARS = 1024 * 1024
"""Longest token read from the command line or standard input."""


class Command(TyperCommand):
    """A command whose help names every value by its metavar, without type placeholders.

    Typer shows ``<str>``, ``<int>`` or ``{TOKEN}`` next to parameters; the help
    reads better with the usual ``--port PORT`` and ``TOKEN`` spellings.
    """

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "").upper()
                arguments.append((name, getattr(param, "help", None) or ""))
            else:
                record = param.get_help_record(ctx)
                if record is not None:
                    options.append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)


app = typer.Typer(
    name="authbridge",
    help=(
        "authbridge: trust, log in with and exchange tokens from OAuth 2.0 / OIDC providers.\n\n"
        "Exit codes: 0 done, 1 refused or not usable, 2 could not decide (usage error, "
        "provider unreachable, port taken)."
    ),
    no_args_is_help=True,
    add_completion=False,
    # Plain click output: no boxes or colour codes in logs, pipes and CI.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


F = TypeVar("F", bound=Callable[..., Any])


def command(name: str, summary: str) -> Callable[[F], F]:
    """Register a command with the plain help format; ``summary`` is its line in the list."""
    return app.command(name, cls=Command, short_help=summary)


def group(name: str, help: str) -> typer.Typer:
    """A command group (``authbridge users ...``) with the same plain output as `app`."""
    return typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )


def group_command(
    owner: typer.Typer, name: str, summary: str, *, dash_arguments: bool = False
) -> Callable[[F], F]:
    """Register a command of a group with the plain help format (see `command`).

    With ``dash_arguments``, an argument that starts with ``-`` and names no
    option is taken as an argument (a key id is base64url: it may start with
    ``-``), so ``authbridge keys revoke -ZCw...`` works without ``--``.
    """
    settings = {"ignore_unknown_options": True} if dash_arguments else None
    return owner.command(name, cls=Command, short_help=summary, context_settings=settings)


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` on standard error and exit with ``code``."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def read_token(value: str) -> str:
    """The token given as an argument, or read from standard input for ``-``.

    Surrounding whitespace and a leading ``Bearer`` are dropped, so a pasted
    ``Authorization`` header value works. The token never appears in errors.
    """
    text = sys.stdin.read(MAX_INPUT_CHARS + 1) if value == "-" else value
    if len(text) > MAX_INPUT_CHARS:
        fail(f"error: the token is longer than {MAX_INPUT_CHARS} characters", UNAVAILABLE)
    parts = text.split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        parts = parts[1:]
    if not parts:
        fail("error: no token given (pass it as an argument, or - to read stdin)", UNAVAILABLE)
    if len(parts) != 1:
        fail("error: expected one token, got several words", UNAVAILABLE)
    return parts[0]


def _escape(char: str) -> str:
    code = ord(char)
    if code > 0xFFFF:  # a JSON escape is UTF-16: a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):  # e.g. a read-only parsed header
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def to_json(value: Any) -> str:
    """Indented JSON where every invisible or unprintable character is escaped.

    Values may come from a token: control characters, bidirectional overrides,
    odd spaces or lone surrogates are shown as ``\\uXXXX`` (still valid JSON),
    never sent raw to the terminal.
    """
    text = json.dumps(value, indent=2, ensure_ascii=False, default=_plain)
    return "".join(c if c.isprintable() or c == "\n" else _escape(c) for c in text)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def library_logs() -> Iterator[list[logging.LogRecord]]:
    """Collect authbridge's log records instead of printing them.

    The commands report what the library found themselves; without this,
    Python's last-resort handler would print the same warnings again on stderr.
    """
    logger = logging.getLogger("authbridge")
    handler = _Collect()
    propagate, level = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)  # e.g. the outbound proxy in use, which check reports
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        logger.setLevel(level)
