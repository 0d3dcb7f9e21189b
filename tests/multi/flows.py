"""What the multi-instance tests do as a client: PKCE, forms, logins, tokens.

Each step names the instance it goes to, so a test reads as the path a login takes
through the cluster.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from .harness import Browser

SPA = "spa"
SPA_REDIRECT = "https://spa.example.test/callback"
CLI = "cli"
ROBOT = "robot"
SWAGGER = "swagger-ui"
UPSTREAM_USER = "carol"
UPSTREAM_PASSWORD = "carol-upstream-password-0123"  # a fixed test credential
LOCAL_USER = "alice"
LOCAL_PASSWORD = "alice-local-password-0123"  # a fixed test credential


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def jwt_part(token: str, index: int) -> dict[str, Any]:
    segment = token.split(".")[index]
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    value: dict[str, Any] = json.loads(raw)
    return value


def jwt_header(token: str) -> dict[str, Any]:
    return jwt_part(token, 0)


def jwt_claims(token: str) -> dict[str, Any]:
    return jwt_part(token, 1)


def query_of(url: str) -> dict[str, str]:
    """The query parameters of ``url`` (each once)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def location(response: httpx.Response, status: int = 303) -> str:
    assert response.status_code == status, (response.status_code, response.text[:500])
    return response.headers["location"]


class Forms(html.parser.HTMLParser):
    """The forms (action, fields) and links of a page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1][1][values["name"]] = values.get("value", "")
        elif tag == "a" and values.get("href"):
            self.links.append(values["href"])


@dataclass(frozen=True)
class Authorization:
    """One authorization request of a client of the app: its parameters and verifier."""

    client_id: str
    redirect_uri: str
    verifier: str
    state: str
    params: dict[str, str]

    @classmethod
    def new(
        cls, client_id: str = SPA, redirect_uri: str = SPA_REDIRECT, **extra: str
    ) -> Authorization:
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": "items:read",
            **extra,
        }
        return cls(client_id, redirect_uri, verifier, state, params)

    @property
    def path(self) -> str:
        return "/oauth/authorize?" + urlencode(self.params)

    def code_from(self, redirect: str) -> str:
        """The code of the app's redirect to the client (its state checked)."""
        assert redirect.startswith(self.redirect_uri + "?"), redirect
        answer = query_of(redirect)
        assert answer["state"] == self.state, answer
        return answer["code"]

    def redeem(self, browser: Browser, code: str, *, on: str) -> httpx.Response:
        return browser.token(
            {
                "grant_type": "authorization_code",
                "client_id": self.client_id,
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": self.verifier,
            },
            on=on,
        )


def approve_upstream(
    browser: Browser,
    authorize_url: str,
    *,
    username: str = UPSTREAM_USER,
    password: str = UPSTREAM_PASSWORD,
) -> str:
    """Log in at the upstream provider's form; its redirect back to the app's callback."""
    page = browser.get(authorize_url)
    assert page.status_code == 200, page.text[:500]
    action, fields = Forms(page.text).forms[0]
    fields.update(username=username, password=password, decision="approve")
    target = httpx.URL(authorize_url).join(action)
    back = browser.http.post(target, data=fields)
    return location(back, 302)


def provider_login(auth: Authorization, browser: Browser, *, start: str, callback: str) -> str:
    """The app's authorize request with ``idp=fake`` on ``start``, the upstream login, the
    callback on ``callback``: the app's redirect to the client (with the code)."""
    params = {**auth.params, "idp": "fake"}
    to_upstream = location(browser.get("/oauth/authorize?" + urlencode(params), on=start))
    back = approve_upstream(browser, to_upstream)
    return location(browser.get(back, on=callback))


def password_grant(
    browser: Browser,
    *,
    on: str | None,
    username: str = LOCAL_USER,
    password: str = LOCAL_PASSWORD,
    client_id: str = CLI,
) -> httpx.Response:
    return browser.token(
        {
            "grant_type": "password",
            "client_id": client_id,
            "username": username,
            "password": password,
        },
        on=on,
    )


def refresh_grant(
    browser: Browser, refresh_token: str, *, on: str, client_id: str = CLI
) -> httpx.Response:
    return browser.token(
        {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": refresh_token},
        on=on,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
