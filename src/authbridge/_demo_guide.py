"""The demo's guide: every flow with its curl lines and its Swagger UI way, in one place.

`demo_guide` builds the sections once; the same sections are printed at start
(`guide_text`: the terminal, secrets shown) and rendered on the demo page
(`guide_html`: escaped, each secret replaced by a ``$NAME`` shell variable
whose value only the terminal shows, since anyone who reaches the page's port
can read it).

The sections: a protected API (the embedded provider's tokens), local login
(password and refresh grants), logging in with a provider (the browser,
Swagger UI's AppLogin, token exchange), a machine client (client
credentials), and a delegated robot token (alice lets ``garage-robot`` open
her garage for one hour; the robot refreshes it with its own secret).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._demo_accounts import (
    CLI_CLIENT,
    DELEGATION_TTL,
    DEMO_PAGE,
    GARAGE_CLIENT,
    GARAGE_OWNER,
    GARAGE_SCOPES,
    LOCAL_USERS,
    LOGIN_CLIENT,
    MACHINE_CLIENT,
    MACHINE_SCOPES,
    PROVIDER_LABEL,
    PROVIDER_USERS,
    DemoCredentials,
)
from .issuer import TOKEN_EXCHANGE

SUBJECT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

GARAGE_OPEN = "/garage/open"
"""The robot's route: needs ``garage:open``; says who acted for whom."""

GARAGE_CODE = "/garage/code"
"""A route only the user in person may call: a delegated token is refused (403)."""

DELEGATIONS = "/me/delegations"


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a section: a sentence, a command line, or both.

    Attributes:
        text: What to do, said before the command ("" for none).
        command: A shell line (``curl ...`` or ``NAME=value``), "" for none.
        expect: What the command answers, printed after it as a ``#`` comment.
    """

    text: str = ""
    command: str = ""
    expect: str = ""

    @property
    def line(self) -> str:
        """The command with its expected answer as a shell comment."""
        return f"{self.command}   # {self.expect}" if self.expect else self.command


@dataclass(frozen=True, slots=True)
class Section:
    """One flow of the demo.

    Attributes:
        anchor: Its id on the demo page.
        title: Its heading.
        intro: What it shows.
        facts: The accounts or clients it uses, one a line.
        steps: The steps, in order.
        swagger: The same flow in Swagger UI.
    """

    anchor: str
    title: str
    intro: str
    facts: tuple[str, ...]
    steps: tuple[Step, ...]
    swagger: str


@dataclass(frozen=True, slots=True)
class Reveal:
    """How secrets read: ``reveal(name, value)`` is the value, or the shell variable ``$NAME``.

    Attributes:
        shows: Whether values are shown (the terminal) or replaced (the page).
    """

    shows: bool

    def __call__(self, name: str, value: str) -> str:
        return value if self.shows else f"${name}"


SHOWN = Reveal(shows=True)
"""The terminal's: secrets as they are."""

HIDDEN = Reveal(shows=False)
"""The page's: each secret replaced by a shell variable named after it."""


def demo_guide(
    base: str,
    credentials: DemoCredentials,
    *,
    token_path: str,
    provider_issuer: str,
    provider_token: str,
    reveal: Reveal = SHOWN,
) -> tuple[Section, ...]:
    """The demo's sections, for the API at ``base``.

    Args:
        base: The demo API's URL.
        credentials: This start's passwords and secrets.
        token_path: The token endpoint's path.
        provider_issuer: The embedded test issuer's URL.
        provider_token: A token of carol's at the embedded provider (issued to
            the demo API), for the token exchange line.
        reveal: How secrets read: `SHOWN` (the terminal) or `HIDDEN` (the page).
    """
    token_url = f"{base}{token_path}"
    return (
        _api(base),
        _local(base, token_url, credentials, reveal),
        _provider(
            base,
            token_url,
            provider_issuer=provider_issuer,
            provider_token=provider_token,
            credentials=credentials,
            reveal=reveal,
        ),
        _machine(base, token_url, credentials, reveal),
        _delegation(base, token_url, credentials, reveal),
    )


def _bearer(variable: str) -> str:
    return f'-H "Authorization: Bearer ${variable}"'


def _api(base: str) -> Section:
    def post(variable: str) -> str:
        return f'curl -i -X POST "{base}/items?name=drill" {_bearer(variable)}'

    return Section(
        anchor="api",
        title="1. A protected API",
        intro="Routes that need scopes, and tokens of the embedded test provider (printed "
        "above as READER_TOKEN, WRITER_TOKEN and ADMIN_TOKEN, valid 1 hour).",
        facts=(),
        steps=(
            Step(command=f"curl -i {base}/items", expect="401: no token"),
            Step(command=f"curl -i {_bearer('READER_TOKEN')} {base}/items", expect="200"),
            Step(command=post("READER_TOKEN"), expect="403: needs items:write"),
            Step(command=post("WRITER_TOKEN"), expect="201"),
            Step(command=f"curl -i {_bearer('ADMIN_TOKEN')} {base}/me", expect="200: who you are"),
        ),
        swagger=f"open {base}/docs -> Authorize -> BearerToken: paste the value of "
        "WRITER_TOKEN -> POST /items -> Try it out (201); the lock of each route names its "
        "scopes.",
    )


def _local(base: str, token_url: str, credentials: DemoCredentials, reveal: Reveal) -> Section:
    alice = reveal("ALICE_PASSWORD", credentials.passwords["alice"])
    width = max(len(name) for name in LOCAL_USERS)
    facts = tuple(
        f"user {name:<{width}}  password "
        f"{reveal(f'{name.upper()}_PASSWORD', credentials.passwords[name])}   "
        f"scopes {' '.join(scopes)}"
        for name, scopes in LOCAL_USERS.items()
    )
    return Section(
        anchor="local",
        title="2. Local login",
        intro=f"The demo API issues its own tokens too (issuer {base}, token endpoint "
        f"{token_url}), to local users whose new passwords are printed at every start:",
        facts=(
            *facts,
            f"client {CLI_CLIENT}  public (no secret)   password, refresh_token and token "
            "exchange grants",
        ),
        steps=(
            Step(
                text="Log in as alice (password grant):",
                command=f"curl -s -d grant_type=password -d client_id={CLI_CLIENT} "
                f"-d username=alice -d password={alice} {token_url}",
                expect="access_token and refresh_token",
            ),
            Step(
                text="Put the answer's access_token and refresh_token into ACCESS_TOKEN and "
                "REFRESH_TOKEN, then:"
            ),
            Step(command=f"curl -i {_bearer('ACCESS_TOKEN')} {base}/items", expect="200"),
            Step(
                command=f"curl -s -d grant_type=refresh_token -d client_id={CLI_CLIENT} "
                f"-d refresh_token=$REFRESH_TOKEN {token_url}",
                expect="new tokens (the refresh token rotates: the old one is refused)",
            ),
        ),
        swagger=f"open {base}/docs -> Authorize -> AppPassword (username alice, password "
        f"{alice}) -> GET /items -> Try it out.",
    )


def _provider(
    base: str,
    token_url: str,
    *,
    provider_issuer: str,
    provider_token: str,
    credentials: DemoCredentials,
    reveal: Reveal,
) -> Section:
    facts = []
    for name, (email, verified) in PROVIDER_USERS.items():
        password = reveal(f"{name.upper()}_PASSWORD", credentials.provider_passwords[name])
        state = "verified: may also write" if verified else "not verified: read only"
        facts.append(f"user {name:<5}  password {password}   email {email} ({state})")

    def exchange(variable: str) -> str:
        return (
            f"curl -s -d grant_type={TOKEN_EXCHANGE} -d client_id={CLI_CLIENT} "
            f"-d subject_token=${variable} -d subject_token_type={SUBJECT_TOKEN_TYPE} "
            f"{token_url}"
        )

    return Section(
        anchor="provider",
        title="3. Login with a provider",
        intro=f"The provider is embedded ({provider_issuer}, nothing leaves this machine): "
        f"{PROVIDER_LABEL}, where the demo API is the confidential client {LOGIN_CLIENT}. "
        "Its users, or the local password of alice or bob:",
        facts=tuple(facts),
        steps=(
            Step(
                text=f"In a browser: open {base}{DEMO_PAGE} -> Log in -> choose, then add an "
                "item and log out (a session cookie, no token in the page)."
            ),
            Step(
                text="Exchange a token of the embedded provider for the API's own tokens "
                "(RFC 8693), as a single-page app holding a provider's token does: set "
                f"PROVIDER_TOKEN to carol's access token, issued to {LOGIN_CLIENT} (valid 1 "
                "hour), then:",
                command=f"PROVIDER_TOKEN={provider_token}" if reveal.shows else "",
            ),
            Step(
                command=exchange("PROVIDER_TOKEN"),
                expect="carol's account: the same one as her browser login",
            ),
            Step(
                text="A provider token issued to another client is refused:",
                command=exchange("READER_TOKEN"),
                expect="400 invalid_request",
            ),
            Step(
                text="Who is logged in (the session's account, identities and CSRF token, "
                "as JSON):",
                command=f"curl -i {base}/auth/session",
                expect="401 without a session cookie",
            ),
        ),
        swagger=f"open {base}/docs -> Authorize -> AppLogin (client_id swagger-ui, tick the "
        f"scopes) -> the login page: {PROVIDER_LABEL} as carol, or a local password -> back "
        "in Swagger UI with the API's own token; then Try it out.",
    )


def _machine(base: str, token_url: str, credentials: DemoCredentials, reveal: Reveal) -> Section:
    secret = reveal("ROBOT_SECRET", credentials.robot_secret)
    return Section(
        anchor="machine",
        title="4. A machine client",
        intro="A program with no user behind it gets its own token (client credentials).",
        facts=(
            f"client {MACHINE_CLIENT}  secret {secret}   client_credentials, scopes "
            f"{' '.join(MACHINE_SCOPES)}",
        ),
        steps=(
            Step(
                command=f"curl -s -u {MACHINE_CLIENT}:{secret} -d grant_type=client_credentials "
                f"{token_url}",
                expect="an access_token, no refresh token",
            ),
            Step(text="Put its access_token into MACHINE_TOKEN, then:"),
            Step(command=f"curl -i {_bearer('MACHINE_TOKEN')} {base}/items", expect="200"),
            Step(
                command=f'curl -i -X POST "{base}/items?name=bolt" {_bearer("MACHINE_TOKEN")}',
                expect="403: items:read only",
            ),
        ),
        swagger=f"open {base}/docs -> Authorize -> AppClientCredentials (client_id "
        f"{MACHINE_CLIENT}, client_secret {secret}) -> GET /items -> Try it out.",
    )


def delegation_body(*, label: str = "garage robot") -> str:
    """The JSON body alice posts to ``/me/delegations`` for the garage robot."""
    return json.dumps(
        {
            "actor": GARAGE_CLIENT,
            "scope": " ".join(GARAGE_SCOPES),
            "expires_in": DELEGATION_TTL,
            "label": label,
        }
    )


def _delegation(base: str, token_url: str, credentials: DemoCredentials, reveal: Reveal) -> Section:
    secret = reveal("GARAGE_ROBOT_SECRET", credentials.garage_secret)
    robot = _bearer("ROBOT_TOKEN")
    owner = _bearer("ACCESS_TOKEN")
    refresh = (
        f"curl -s -u {GARAGE_CLIENT}:{secret} -d grant_type=refresh_token "
        f"-d refresh_token=$ROBOT_REFRESH_TOKEN {token_url}"
    )
    scope = " ".join(GARAGE_SCOPES)
    return Section(
        anchor="delegation",
        title="5. A delegated robot token",
        intro=f"{GARAGE_OWNER} lets the garage robot open her garage, nothing else, for one "
        "hour: she mints a token for it, which names both (the user, and who acts for her). "
        "The robot renews it with its own secret; she can end it at any time.",
        facts=(
            f"client {GARAGE_CLIENT}  secret {secret}   refresh_token and token exchange "
            f"grants, scopes {scope} (no token of its own: only what users delegate)",
        ),
        steps=(
            Step(
                text=f"As {GARAGE_OWNER} (her ACCESS_TOKEN from step 2), for one hour:",
                command=f'curl -s -X POST {owner} -H "Content-Type: application/json" '
                f"-d '{delegation_body()}' {base}{DELEGATIONS}",
                expect="201: the delegation, and a token for the robot",
            ),
            Step(
                text="Give the robot the answer's token.access_token and token.refresh_token "
                "(ROBOT_TOKEN and ROBOT_REFRESH_TOKEN); note delegation.id (DELEGATION_ID). "
                "The robot:"
            ),
            Step(
                command=f"curl -i -X POST {robot} {base}{GARAGE_OPEN}",
                expect=f"200: {GARAGE_CLIENT} opened the garage, acting for {GARAGE_OWNER}",
            ),
            Step(
                command=f"curl -i -X POST {robot} {base}{GARAGE_CODE}",
                expect="403: a robot may not change the door code",
            ),
            Step(command=f"curl -i {robot} {base}/items", expect=f"403: the token is for {scope}"),
            Step(
                text="Renewing it, with the robot's own secret:",
                command=refresh,
                expect="new tokens (put them into ROBOT_TOKEN and ROBOT_REFRESH_TOKEN; never "
                "past the hour)",
            ),
            Step(
                text=f"Or, handed a token of {GARAGE_OWNER}'s by her app, the robot trades it "
                "for one of its own (RFC 8693 token exchange), which the same delegation covers:",
                command=f"curl -s -u {GARAGE_CLIENT}:{secret} -d grant_type={TOKEN_EXCHANGE} "
                f"-d subject_token=$ACCESS_TOKEN -d subject_token_type={SUBJECT_TOKEN_TYPE} "
                f"-d scope={scope} {token_url}",
                expect=f"a token with act {GARAGE_CLIENT}, no refresh token",
            ),
            Step(
                text=f"{GARAGE_OWNER}, in person, sees and ends her delegations:",
                command=f"curl -i -X POST {owner} {base}{GARAGE_CODE}",
                expect=f"200: {GARAGE_OWNER} herself may",
            ),
            Step(command=f"curl -s {owner} {base}{DELEGATIONS}", expect="the active delegations"),
            Step(
                command=f"curl -i -X DELETE {owner} {base}{DELEGATIONS}/$DELEGATION_ID",
                expect="204",
            ),
            Step(
                text="The robot's tokens are refused at once:",
                command=f"curl -i -X POST {robot} {base}{GARAGE_OPEN}",
                expect="401 now: the delegation is revoked",
            ),
            Step(command=refresh, expect="400 invalid_grant now"),
        ),
        swagger=f"open {base}/docs -> Authorize -> AppPassword as {GARAGE_OWNER} -> POST "
        f"{DELEGATIONS} -> Try it out with {delegation_body()} -> copy token.access_token; "
        f"Authorize -> Logout -> BearerToken: paste it -> POST {GARAGE_OPEN} (200) and POST "
        f"{GARAGE_CODE} (403); as {GARAGE_OWNER} again, DELETE {DELEGATIONS}/{{delegation_id}} "
        "ends it. The robot's refresh is curl only (Swagger UI has no refresh box).",
    )


def guide_text(sections: Iterable[Section]) -> list[str]:
    """The sections as terminal lines: commands indented by two spaces."""
    lines: list[str] = []
    for section in sections:
        lines += ["", f"== {section.title} ==", section.intro]
        lines += [f"  {fact}" for fact in section.facts]
        for step in section.steps:
            if step.text:
                lines.append(step.text)
            if step.command:
                lines.append(f"  {step.line}")
        lines.append(f"In Swagger UI: {section.swagger}")
    return lines


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def guide_html(sections: Sequence[Section]) -> str:
    """The sections as HTML (every value escaped), with a table of contents."""
    parts = [
        '<nav id="guide"><h2>Try every flow</h2><p>Passwords, secrets and tokens read '
        "<code>$NAME</code> here: the terminal running the demo prints their values (set "
        "them in your shell).</p><ol>",
        *(
            f'<li><a href="#{_e(s.anchor)}">{_e(s.title.split(". ", 1)[-1])}</a></li>'
            for s in sections
        ),
        "</ol></nav>\n",
    ]
    for section in sections:
        parts.append(
            f'<section id="{_e(section.anchor)}"><h2>{_e(section.title)}</h2>'
            f"<p>{_e(section.intro)}</p>"
        )
        if section.facts:
            parts.append(
                '<ul class="facts">'
                + "".join(f"<li><code>{_e(fact)}</code></li>" for fact in section.facts)
                + "</ul>"
            )
        block: list[str] = []
        for step in section.steps:
            if step.text:
                parts.append(_pre(block))
                block = []
                parts.append(f"<p>{_e(step.text)}</p>")
            if step.command:
                block.append(step.line)
        parts.append(_pre(block))
        parts.append(
            f'<p class="swagger"><strong>In Swagger UI:</strong> {_e(section.swagger)}</p>'
            "</section>\n"
        )
    return "".join(parts)


def _pre(lines: list[str]) -> str:
    if not lines:
        return ""
    return '<pre class="commands"><code>' + _e("\n".join(lines)) + "</code></pre>"


GUIDE_CSS = """\
main { max-width: 60rem; }
pre.commands { overflow-x: auto; padding: 0.75rem; border: 1px solid GrayText;
  border-radius: 0.375rem; white-space: pre-wrap; word-break: break-all; }
section { margin: 2rem 0; }
ul.facts { padding-left: 1.25rem; }
p.swagger { opacity: 0.85; }
"""
"""The demo page's own stylesheet (served at ``/demo/guide.css``; no inline style)."""
