"""The HTML pages of the login: the chooser and the error page.

Plain forms and links: they work without JavaScript, and there is none, inline
or not. Every value that reaches a page (the request's parameters, provider
names, a provider's error code, the client's name, ``root_path``) is escaped
for where it lands: ``html.escape`` in text and quoted attributes, and URLs
are built with ``urlencode`` (then escaped as attributes). The stylesheet is
a file served from the package, so the Content-Security-Policy allows no
inline style either.

Every page answer carries ``Content-Security-Policy`` (`page_csp`),
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (a
page's URL may hold an authorization request) and ``Cache-Control:
no-store``.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from ._docs import csp_origin

STYLESHEET = "login.css"
"""The pages' stylesheet, in this package's ``static`` folder."""

PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}

# What a user reads for a refusal reason; anything else gets the generic line.
_MESSAGES = {
    "state_unknown": "This login link has expired or was already used. Please start again.",
    "state_missing": "This login link is incomplete. Please start again.",
    "browser_mismatch": (
        "This login was started in another browser. Please start again in this one."
    ),
    "provider_error": "The provider did not complete the login.",
    "account_disabled": "This account is disabled.",
    "account_creation_disabled": "No account exists for this identity.",
    "account_refused": "This identity may not log in here.",
    "identity_linked_elsewhere": "This identity is already linked to another account.",
    "unsafe_return_path": "The address to return to after login is not allowed.",
    "unknown_provider": "This login provider is not available.",
    "csrf_mismatch": "This form has expired. Please reload the page and try again.",
    "unavailable": "The login service is temporarily unavailable. Please try again shortly.",
}
_GENERIC = "The login could not be completed. Please start again."


def page_csp(form_targets: Iterable[str] = ()) -> str:
    """The Content-Security-Policy of a login page.

    Args:
        form_targets: Where the page's forms may lead besides this origin: a
            form posted here answers with a redirect to the client (its
            ``redirect_uri``) or to a provider, and browsers check those
            redirects against ``form-action``. http(s) URLs are reduced to
            their origin; another scheme (a native app's ``com.example:``)
            becomes a scheme source; anything else is left out.
    """
    sources = ["'self'"]
    for target in form_targets:
        source = form_source(target)
        if source is not None and source not in sources:
            sources.append(source)
    return (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action {' '.join(sources)}; frame-ancestors 'none'; base-uri 'none'"
    )


def form_source(url: str) -> str | None:
    """A CSP source for ``url``: its origin, or ``scheme:`` for a private-use scheme."""
    origin = csp_origin(url)
    if origin is not None:
        return origin
    scheme, sep, _ = url.partition(":")
    if sep and scheme and scheme[0].isalpha() and all(c.isalnum() or c in "+-." for c in scheme):
        lowered = scheme.lower()
        if lowered not in ("javascript", "data", "blob", "filesystem", "http", "https"):
            return f"{lowered}:"
    return None


def html_page(body: str, *, status: int = 200, form_targets: Iterable[str] = ()) -> HTMLResponse:
    """An HTML answer with the login pages' headers."""
    headers = {**PAGE_HEADERS, "Content-Security-Policy": page_csp(form_targets)}
    return HTMLResponse(body, status_code=status, headers=headers)


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    """One provider on the chooser: its label and where its link goes (a path here)."""

    label: str
    href: str


@dataclass(frozen=True, slots=True)
class PasswordForm:
    """The local password form: where it posts and the hidden fields it carries."""

    action: str
    hidden: Sequence[tuple[str, str]]
    username: str = ""


def _e(value: str) -> str:
    return html.escape(value, quote=True)


def with_query(path: str, params: Sequence[tuple[str, str]]) -> str:
    """``path`` with ``params`` as its query (each name and value encoded)."""
    return f"{path}?{urlencode(list(params))}" if params else path


def _document(title: str, static: str, content: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_e(title)}</title>\n"
        f'<link rel="stylesheet" href="{_e(static + "/" + STYLESHEET)}">\n'
        "</head>\n<body>\n<main>\n"
        f"{content}"
        "</main>\n</body>\n</html>\n"
    )


def render_chooser(
    *,
    title: str,
    static: str,
    password: PasswordForm | None,
    providers: Sequence[ProviderChoice],
    client_name: str | None = None,
    error: str | None = None,
) -> str:
    """The login chooser: the password form (if offered) and one link per provider.

    Args:
        title: The page's heading.
        static: Path of the static files (``<root_path>/auth/static``).
        password: The password form, or ``None`` when local passwords are off.
        providers: The providers, in order.
        client_name: The client being logged in to, shown under the title.
        error: A message shown above the form (a failed password attempt).
    """
    parts = [f"<h1>{_e(title)}</h1>\n"]
    if client_name:
        parts.append(f'<p class="client">to continue to {_e(client_name)}</p>\n')
    if error:
        parts.append(f'<p class="error" role="alert">{_e(error)}</p>\n')
    if password is not None:
        parts.append(f'<form class="password" method="post" action="{_e(password.action)}">\n')
        parts.extend(
            f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">\n'
            for name, value in password.hidden
        )
        parts.append(
            '<label for="username">Username</label>\n'
            '<input type="text" id="username" name="username" autocomplete="username" '
            f'required value="{_e(password.username)}">\n'
            '<label for="password">Password</label>\n'
            '<input type="password" id="password" name="password" '
            'autocomplete="current-password" required>\n'
            '<button type="submit">Log in</button>\n'
            "</form>\n"
        )
        if providers:
            parts.append('<p class="separator">or</p>\n')
    if providers:
        parts.append('<ul class="providers">\n')
        parts.extend(
            f'<li><a class="provider" href="{_e(p.href)}">Continue with {_e(p.label)}</a></li>\n'
            for p in providers
        )
        parts.append("</ul>\n")
    if password is None and not providers:
        parts.append('<p class="error">No way to log in is configured.</p>\n')
    return _document(title, static, "".join(parts))


def message_for(reason: str) -> str:
    """What the user reads for a refusal reason (``reason:extra`` looked up by ``reason``)."""
    return _MESSAGES.get(reason.partition(":")[0], _GENERIC)


def render_error(
    *, static: str, reason: str, provider_error: str | None = None, again: str | None = None
) -> str:
    """The error page of a refused login: a message, the reason code, a way back.

    Args:
        static: Path of the static files.
        reason: The refusal's stable reason code (shown, escaped, for support).
        provider_error: The provider's own ``error`` code, bounded, if any.
        again: A path of this app to start again from, if there is one.
    """
    parts = [
        "<h1>Login failed</h1>\n",
        f'<p class="error" role="alert">{_e(message_for(reason))}</p>\n',
    ]
    if provider_error:
        parts.append(f'<p class="reason">Provider error: <code>{_e(provider_error)}</code></p>\n')
    parts.append(f'<p class="reason">Reason: <code>{_e(reason)}</code></p>\n')
    if again:
        parts.append(f'<p><a href="{_e(again)}">Start again</a></p>\n')
    return _document("Login failed", static, "".join(parts))


@functools.cache
def _stylesheet() -> bytes:
    return (files("authbridge.fastapi") / "static" / STYLESHEET).read_bytes()


def static_router(static: str) -> APIRouter:
    """The route serving the pages' stylesheet at ``{static}/login.css``."""
    router = APIRouter(include_in_schema=False)

    @router.get(f"{static}/{STYLESHEET}")
    async def stylesheet() -> Response:
        return Response(
            _stylesheet(),
            media_type="text/css; charset=utf-8",
            headers={
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
                "Cache-Control": "public, max-age=86400",
            },
        )

    return router
