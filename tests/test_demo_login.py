"""Logging in to the running demo: its page, Swagger UI's AppLogin box, token exchange.

The demo command runs in a subprocess (as a user starts it); an httpx client
plays the browser: it follows each page's links and submits its forms, field
by field as the page gives them, at the demo API and at the embedded test
issuer (two loopback ports), never knowing more than the printed text. The
printed curl lines are replayed (see ``test_demo_issuer.curl``).
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from authbridge._demo import CLI_CLIENT, DEMO_PAGE, LOGIN_CLIENT, PROVIDER, PROVIDER_LABEL
from test_demo_issuer import Demo, curl, running_demo

SWAGGER_CLIENT = "swagger-ui"


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class Page(html.parser.HTMLParser):
    """The forms (with their fields) and links of an HTML page."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__()
        self.url = str(response.url)
        self.forms: list[Form] = []
        self.links: dict[str, str] = {}
        self.text = response.text
        self._link: str | None = None
        self.feed(response.text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            action = urljoin(self.url, found.get("action") or self.url)
            self.forms.append(Form(action, found.get("method", "get").upper()))
        elif tag == "input" and self.forms and "name" in found:
            self.forms[-1].fields[found["name"]] = found.get("value", "")
        elif tag == "button" and self.forms and "name" in found:
            self.forms[-1].buttons.append((found["name"], found.get("value", "")))
        elif tag == "a":
            self._link = urljoin(self.url, found.get("href", ""))

    def handle_data(self, data: str) -> None:
        if self._link is not None and data.strip():
            self.links[data.strip()] = self._link

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._link = None

    def link(self, label: str) -> str:
        """The one link whose text holds ``label``."""
        found = [href for text, href in self.links.items() if label in text]
        assert len(found) == 1, (label, self.links)
        return found[0]

    def form(self, action: str) -> Form:
        """The one form posting to a URL ending with ``action``."""
        found = [f for f in self.forms if urlsplit(f.action).path.endswith(action)]
        assert len(found) == 1, (action, self.forms)
        return found[0]


class Browser:
    """An HTTP client that follows redirects one by one and submits forms."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.visited: list[str] = []

    def go(self, response: httpx.Response, *, stop_at: str | None = None) -> httpx.Response:
        """Follow redirects (303 and 302 become GET) until a page, or a URL starting ``stop_at``."""
        while response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            self.visited.append(target)
            if stop_at is not None and target.startswith(stop_at):
                return response
            response = self.client.get(target)
        return response

    def get(self, url: str) -> httpx.Response:
        return self.go(self.client.get(url))

    def submit(self, form: Form, *, stop_at: str | None = None, **values: str) -> httpx.Response:
        """Submit ``form`` as a browser does with Enter: its first button's name and value."""
        assert form.method == "POST", form
        pressed = dict(form.buttons[:1])
        sent = self.client.post(form.action, data={**form.fields, **pressed, **values})
        return self.go(sent, stop_at=stop_at)


def password_of(demo: Demo, user: str) -> str:
    return demo.value(rf"^ +user {user} +password (\S+)")


def login_at_provider(browser: Browser, chooser: Page, user: str, password: str) -> Page:
    """Pick the embedded provider on a chooser, then log in on its form."""
    provider = Page(browser.get(chooser.link(PROVIDER_LABEL)))
    assert provider.url.startswith("http://127.0.0.1:"), provider.url
    form = provider.form("/authorize")
    assert form.fields["client_id"] == LOGIN_CLIENT
    assert "client_secret" not in form.fields  # the secret never reaches the browser
    return Page(browser.submit(form, username=user, password=password))


def whoami(page: Page) -> tuple[str, str, str] | None:
    found = re.search(
        r'id="username">([^<]+)</strong> through <span id="via">([^<]+)</span>.*?'
        r'id="scopes">([^<]+)<',
        page.text,
        re.S,
    )
    return None if found is None else (found.group(1), found.group(2), found.group(3))


def test_the_demo_page_logs_in_at_the_provider_and_with_a_password(tmp_path: Path) -> None:
    with running_demo(tmp_path) as demo, httpx.Client(trust_env=False) as client:
        base, browser = demo.base, Browser(client)
        assert f"open {base}{DEMO_PAGE} -> Log in" in demo.text
        anonymous = client.get(f"{base}{DEMO_PAGE}")
        assert anonymous.status_code == 200
        assert "Nobody is logged in" in anonymous.text
        csp = anonymous.headers["content-security-policy"]
        assert "script-src" not in csp
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert anonymous.headers["cache-control"] == "no-store"

        # carol, at the embedded provider: a verified address of the demo's domain.
        chooser = Page(browser.get(Page(anonymous).link("Log in")))
        assert urlsplit(chooser.url).path == "/auth/login"
        wrong = login_at_provider(browser, chooser, "carol", "not-her-password")
        assert urlsplit(wrong.url).port != urlsplit(base).port  # still at the provider
        assert whoami(wrong) is None
        chooser = Page(browser.get(f"{base}/auth/login?next={DEMO_PAGE}"))
        page = login_at_provider(browser, chooser, "carol", password_of(demo, "carol"))
        assert page.url == f"{base}{DEMO_PAGE}", browser.visited
        assert whoami(page) == ("carol", PROVIDER, "items:read items:write")
        assert any(url.startswith(f"{base}/oauth/callback?") for url in browser.visited)
        session = client.get(f"{base}/auth/session").json()
        carol = session["user"]["id"]
        provider_issuer = demo.value(r"^Embedded test issuer: (\S+) ")
        assert session["identities"] == [
            {
                "issuer": provider_issuer,
                "subject": "carol",
                "email": "carol@demo.example",
                "email_verified": True,
            }
        ]

        # The page's form: the session's CSRF token is needed, the item is added.
        add = page.form(f"{DEMO_PAGE}/items")
        forged = client.post(add.action, data={"name": "forged"})
        assert forged.status_code == 403
        cross = client.post(add.action, data=add.fields, headers={"Origin": "http://evil.test"})
        assert cross.status_code == 403
        page = Page(browser.submit(add, name="level"))
        assert "<li>level</li>" in page.text
        assert "forged" not in page.text

        # The same person's provider token, exchanged as printed: the same account.
        provider_token = demo.value(r"^  PROVIDER_TOKEN=(\S+)$")
        exchanged = curl(
            client, demo.line(r"subject_token=\$PROVIDER_TOKEN"), PROVIDER_TOKEN=provider_token
        )
        assert exchanged.status_code == 200, exchanged.text
        answer = exchanged.json()
        assert answer["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
        assert answer["refresh_token"]
        bearer = {"Authorization": f"Bearer {answer['access_token']}"}
        me = httpx.get(f"{base}/me", headers=bearer, trust_env=False).json()
        assert (me["provider"], me["subject"], me["client_id"]) == ("app", carol, CLI_CLIENT)
        reader = demo.value(r"^READER_TOKEN=(\S+)$")
        refused = curl(client, demo.line(r"subject_token=\$READER_TOKEN"), READER_TOKEN=reader)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_request"  # not issued to the demo API

        # Logging out ends the session here and at the provider, back on the page.
        old_cookie = client.cookies.get("authbridge_session")
        assert old_cookie
        page = Page(browser.submit(page.form("/auth/logout")))
        assert page.url.startswith(f"{base}{DEMO_PAGE}"), browser.visited
        assert any(url.startswith(f"{provider_issuer}/logout?") for url in browser.visited)
        assert "Nobody is logged in" in page.text
        assert client.get(f"{base}/auth/session").status_code == 401
        replayed = httpx.get(
            f"{base}/auth/session", cookies={"authbridge_session": old_cookie}, trust_env=False
        )
        assert replayed.status_code == 401  # the old cookie opens nothing
        assert curl(client, demo.line(r"/auth/session")).status_code == 401

        # dave's address is not verified: the account hook gives him reading only.
        chooser = Page(browser.get(f"{base}/auth/login?next={DEMO_PAGE}"))
        page = login_at_provider(browser, chooser, "dave", password_of(demo, "dave"))
        assert whoami(page) == ("dave", PROVIDER, "items:read")
        denied = browser.client.post(
            page.form(f"{DEMO_PAGE}/items").action, data=page.form(f"{DEMO_PAGE}/items").fields
        )
        assert denied.status_code == 403
        Page(browser.submit(page.form("/auth/logout")))

        # alice, with the local password on the same chooser.
        chooser = Page(browser.get(f"{base}/auth/login?next={DEMO_PAGE}"))
        form = chooser.form("/auth/login")
        rejected = client.post(form.action, data={**form.fields, "username": "alice"})
        assert rejected.status_code == 400
        page = Page(browser.submit(form, username="alice", password=password_of(demo, "alice")))
        assert whoami(page) == ("alice", "local password", "garage:open items:read items:write")
        assert client.get(f"{base}/auth/session").json()["identities"] == []


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize(browser: Browser, base: str, challenge: str, state: str) -> Page:
    """Swagger UI's first step: the app's authorization endpoint, which shows the chooser."""
    redirect = f"{base}/docs/oauth2-redirect"
    query = httpx.QueryParams(
        response_type="code",
        client_id=SWAGGER_CLIENT,
        redirect_uri=redirect,
        scope="items:read items:write",
        state=state,
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    return Page(browser.get(f"{base}/oauth/authorize?{query}"))


def redeem(client: httpx.Client, base: str, landed: httpx.Response, verifier: str) -> dict:
    """Swagger UI's second step: the code from its redirect page, redeemed with the verifier."""
    location = landed.headers["location"]
    assert location.startswith(f"{base}/docs/oauth2-redirect?"), location
    query = parse_qs(urlsplit(location).query)
    assert query["iss"] == [base]
    tokens = client.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "client_id": SWAGGER_CLIENT,
            "code": query["code"][0],
            "redirect_uri": f"{base}/docs/oauth2-redirect",
            "code_verifier": verifier,
        },
    )
    assert tokens.status_code == 200, tokens.text
    body: dict = tokens.json()
    body["state"] = query["state"][0]
    body["code"] = query["code"][0]
    return body


def test_swagger_ui_applogin_ends_in_the_apps_tokens_both_ways(tmp_path: Path) -> None:
    with running_demo(tmp_path) as demo, httpx.Client(trust_env=False) as client:
        base, browser = demo.base, Browser(client)
        assert f"{base}/docs -> Authorize -> AppLogin" in demo.text
        schemes = client.get(f"{base}/openapi.json").json()["components"]["securitySchemes"]
        flow = schemes["AppLogin"]["flows"]["authorizationCode"]
        assert (flow["authorizationUrl"], flow["tokenUrl"]) == ("/oauth/authorize", "/oauth/token")
        docs = client.get(f"{base}/docs").text
        assert '"usePkceWithAuthorizationCodeGrant":true' in docs
        assert f'"clientId":"{SWAGGER_CLIENT}"' in docs.replace(" ", "")

        # The embedded provider, picked on the chooser.
        verifier, challenge = pkce()
        chooser = authorize(browser, base, challenge, "s-1")
        assert chooser.link(PROVIDER_LABEL)
        provider = Page(browser.get(chooser.link(PROVIDER_LABEL)))
        landed = browser.submit(
            provider.form("/authorize"),
            stop_at=f"{base}/docs/",
            username="carol",
            password=password_of(demo, "carol"),
        )
        tokens = redeem(client, base, landed, verifier)
        assert tokens["state"] == "s-1"
        assert tokens["scope"] == "items:read items:write"
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        me = client.get(f"{base}/me", headers=bearer).json()
        assert (me["provider"], me["client_id"]) == ("app", SWAGGER_CLIENT)
        created = client.post(f"{base}/items?name=plane", headers=bearer)
        assert created.status_code == 201, created.text
        # A code is used once.
        again = client.post(
            f"{base}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "client_id": SWAGGER_CLIENT,
                "code": tokens["code"],
                "redirect_uri": f"{base}/docs/oauth2-redirect",
                "code_verifier": verifier,
            },
        )
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"

        # bob's local password on the same chooser: his scopes only.
        verifier, challenge = pkce()
        chooser = authorize(browser, base, challenge, "s-2")
        form = chooser.form("/oauth/authorize")
        assert form.fields["client_id"] == SWAGGER_CLIENT
        assert form.fields["csrf_token"]
        landed = browser.submit(
            form, stop_at=f"{base}/docs/", username="bob", password=password_of(demo, "bob")
        )
        tokens = redeem(client, base, landed, verifier)
        assert tokens["scope"] == "items:read"
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert client.get(f"{base}/items", headers=bearer).status_code == 200
        assert client.post(f"{base}/items?name=x", headers=bearer).status_code == 403

        # The idp hint skips the chooser: straight to the provider.
        _, challenge = pkce()
        query = httpx.QueryParams(
            response_type="code",
            client_id=SWAGGER_CLIENT,
            redirect_uri=f"{base}/docs/oauth2-redirect",
            state="s-3",
            code_challenge=challenge,
            code_challenge_method="S256",
            idp=PROVIDER,
        )
        hinted = client.get(f"{base}/oauth/authorize?{query}")
        assert hinted.status_code == 303
        assert hinted.headers["location"].startswith(demo.value(r"^Embedded test issuer: (\S+) "))
