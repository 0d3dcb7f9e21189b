"""An OAuth 2.1 / MCP-style client that knows nothing about the API but its URL.

It starts from a bare 401 and finds everything else itself, against the real OpenID Provider
``oidc-provider`` (npm): the ``resource_metadata`` of the ``WWW-Authenticate`` challenge
(RFC 9728 §5.1) → the API's Protected Resource Metadata (RFC 9728 §3) → its first authorization
server → that server's metadata (RFC 8414, then OpenID Connect Discovery) → a client-credentials
token for the API's resource indicator (RFC 8707) → the retried request succeeds.

The API runs in a ``TestClient`` at ``https://api.example.test/jwt``, whose resource identifier
is the provider's JWT resource; everything between the client and the provider is real HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Security
from fastapi.testclient import TestClient

from authbridge import AuthBridge, OIDCProvider, Principal

from .op import CC_CLIENT_ID, CC_CLIENT_SECRET, JWT_RESOURCE, OPAQUE_RESOURCE, OidcProvider

pytestmark = pytest.mark.interop

API_RESOURCE = JWT_RESOURCE  # https://api.example.test/jwt: the API's identifier and audience
API_ITEMS = f"{API_RESOURCE}/items"
PRM_WELL_KNOWN = "/.well-known/oauth-protected-resource"
RFC8414_WELL_KNOWN = "/.well-known/oauth-authorization-server"
OIDC_WELL_KNOWN = "/.well-known/openid-configuration"
# Where an MCP client looks for the metadata of an issuer without a path, in order.
MCP_AS_WELL_KNOWN = (RFC8414_WELL_KNOWN, OIDC_WELL_KNOWN)


# -- the client ---------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_AUTH_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(?:,|$)')


def parse_bearer_challenge(header: str) -> dict[str, str]:
    """The auth-params of a single ``Bearer`` challenge (RFC 9110 §11.6.1), names lower-cased."""
    scheme, _, rest = header.strip().partition(" ")
    assert scheme.lower() == "bearer", header
    params: dict[str, str] = {}
    position, rest = 0, rest.strip()
    while position < len(rest):
        match = _AUTH_PARAM.match(rest, position)
        assert match is not None, f"malformed challenge: {header!r}"
        name, quoted, token = match.groups()
        params[name.lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else token
        position = match.end()
    return params


def resource_of_metadata_url(url: str) -> str:
    """The resource identifier a metadata URL was built from (RFC 9728 §3.1, inverted)."""
    parts = urlsplit(url)
    assert parts.path.startswith(PRM_WELL_KNOWN), url
    assert not parts.query, url
    assert not parts.fragment, url
    return f"{parts.scheme}://{parts.netloc}{parts.path.removeprefix(PRM_WELL_KNOWN)}"


def within(url: str, resource: str) -> bool:
    """Whether ``url`` is the resource or below it (same origin, path prefix on ``/``)."""
    return url == resource or url.startswith(resource.rstrip("/") + "/")


@dataclass(frozen=True)
class Discovery:
    """What the client learnt, step by step."""

    challenge: dict[str, str]
    resource_metadata: dict[str, Any]
    authorization_server: dict[str, Any]
    authorization_server_metadata_url: str


def discover(
    api: httpx.Client,
    http: httpx.Client,
    url: str,
    refused: httpx.Response,
    as_well_known: tuple[str, ...] = MCP_AS_WELL_KNOWN,
) -> Discovery:
    """From a refused request to the authorization server's metadata, validating each step."""
    assert refused.status_code in {401, 403}
    challenge = parse_bearer_challenge(refused.headers["www-authenticate"])
    metadata_url = challenge["resource_metadata"]

    response = api.get(metadata_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    metadata: dict[str, Any] = response.json()
    # RFC 9728 §3.3: the document must name the resource its URL was derived from, and that
    # resource must cover the URL the client called; otherwise the client must ignore it.
    assert metadata["resource"] == resource_of_metadata_url(metadata_url)
    assert within(url, metadata["resource"])
    assert "header" in metadata.get("bearer_methods_supported", ["header"])

    issuer = metadata["authorization_servers"][0]
    for well_known in as_well_known:
        as_metadata_url = issuer.rstrip("/") + well_known
        found = http.get(as_metadata_url)
        if found.status_code == 200:
            break
    else:
        pytest.fail(f"no authorization server metadata for {issuer}")
    as_metadata: dict[str, Any] = found.json()
    assert as_metadata["issuer"] == issuer  # RFC 8414 §3.3 / OIDC Discovery §4.3
    return Discovery(challenge, metadata, as_metadata, as_metadata_url)


def client_credentials(http: httpx.Client, found: Discovery, scope: str) -> dict[str, Any]:
    """A token for the API (resource indicator = its metadata's ``resource``) as a
    pre-registered confidential client of the discovered authorization server."""
    server = found.authorization_server
    assert "client_credentials" in server["grant_types_supported"]
    assert "client_secret_basic" in server["token_endpoint_auth_methods_supported"]
    response = http.post(
        server["token_endpoint"],
        data={
            "grant_type": "client_credentials",
            "resource": found.resource_metadata["resource"],
            "scope": scope,
        },
        auth=(CC_CLIENT_ID, CC_CLIENT_SECRET),
    )
    assert response.status_code == 200, response.text
    token: dict[str, Any] = response.json()
    assert token["token_type"].lower() == "bearer"
    return token


def bearer(token: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['access_token']}"}


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def api(oidc_provider: OidcProvider) -> Iterator[TestClient]:
    """The API at https://api.example.test/jwt: it names its resource and trusts the provider."""
    auth = AuthBridge(
        providers=[OIDCProvider("op", issuer=oidc_provider.issuer, audience=API_RESOURCE)],
        resource=API_RESOURCE,
    )
    app = FastAPI(lifespan=auth.lifespan)
    router = APIRouter(prefix=urlsplit(API_RESOURCE).path)

    @router.get("/items")
    async def read_items(
        user: Principal = Security(auth.principal, scopes=["items:read"]),
    ) -> dict[str, Any]:
        return {"subject": user.subject, "scopes": sorted(user.scopes)}

    @router.post("/items")
    async def write_items(
        user: Principal = Security(auth.principal, scopes=["items:write"]),
    ) -> dict[str, Any]:
        return {"written_by": user.subject}

    app.include_router(router)
    auth.install(app, docs_url=None)
    base = urlsplit(API_RESOURCE)
    with TestClient(app, base_url=f"{base.scheme}://{base.netloc}") as client:
        yield client


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """Real HTTP, for the client's requests to the authorization server."""
    with httpx.Client(timeout=10.0, follow_redirects=False) as client:
        yield client


# -- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "as_well_known",
    [(OIDC_WELL_KNOWN,), MCP_AS_WELL_KNOWN],
    ids=["openid-configuration", "rfc8414-then-openid-configuration"],
)
def test_from_a_bare_401_to_a_token_for_the_api(
    api: TestClient, http: httpx.Client, oidc_provider: OidcProvider, as_well_known: tuple[str, ...]
) -> None:
    refused = api.get(API_ITEMS)
    assert refused.status_code == 401
    found = discover(api, http, API_ITEMS, refused, as_well_known)

    assert found.challenge == {
        "resource_metadata": "https://api.example.test/.well-known/oauth-protected-resource/jwt"
    }
    assert found.resource_metadata == {
        "resource": API_RESOURCE,
        "authorization_servers": [oidc_provider.issuer],
        "scopes_supported": ["items:read", "items:write"],
        "bearer_methods_supported": ["header"],
    }
    # oidc-provider answers at both well-known locations.
    assert found.authorization_server_metadata_url == oidc_provider.issuer + as_well_known[0]
    assert found.authorization_server["token_endpoint"] == f"{oidc_provider.issuer}/token"

    # No scope in the challenge: ask for what the resource supports.
    scope = " ".join(found.resource_metadata["scopes_supported"])
    token = client_credentials(http, found, scope)
    assert token["scope"] == "items:read items:write"

    retried = api.get(API_ITEMS, headers=bearer(token))
    assert retried.status_code == 200
    assert retried.json() == {"subject": CC_CLIENT_ID, "scopes": ["items:read", "items:write"]}
    assert api.post(API_ITEMS, headers=bearer(token)).json() == {"written_by": CC_CLIENT_ID}


def test_insufficient_scope_challenge_leads_to_a_token_with_that_scope(
    api: TestClient, http: httpx.Client
) -> None:
    found = discover(api, http, API_ITEMS, api.get(API_ITEMS))
    reader = client_credentials(http, found, "items:read")
    assert api.get(API_ITEMS, headers=bearer(reader)).status_code == 200

    forbidden = api.post(API_ITEMS, headers=bearer(reader))
    assert forbidden.status_code == 403
    step_up = discover(api, http, API_ITEMS, forbidden)
    assert step_up.challenge["error"] == "insufficient_scope"
    assert step_up.challenge["scope"] == "items:write"
    assert step_up.resource_metadata == found.resource_metadata

    writer = client_credentials(http, step_up, step_up.challenge["scope"])
    assert writer["scope"] == "items:write"
    written = api.post(API_ITEMS, headers=bearer(writer))
    assert written.status_code == 200
    assert written.json() == {"written_by": CC_CLIENT_ID}


def test_a_token_for_another_resource_is_refused_with_the_way_back(
    api: TestClient, oidc_provider: OidcProvider
) -> None:
    # A token the client got without discovery, for another of the provider's resources.
    other = oidc_provider.client_credentials_token(OPAQUE_RESOURCE, "items:read")
    refused = api.get(API_ITEMS, headers=bearer(other))
    assert refused.status_code == 401
    challenge = parse_bearer_challenge(refused.headers["www-authenticate"])
    assert challenge["error"] == "invalid_token"
    assert challenge["resource_metadata"] == f"https://api.example.test{PRM_WELL_KNOWN}/jwt"


def test_challenge_parser() -> None:
    assert parse_bearer_challenge(
        'Bearer realm="a \\"b\\"", error=invalid_token, resource_metadata="https://x/y"'
    ) == {"realm": 'a "b"', "error": "invalid_token", "resource_metadata": "https://x/y"}
    assert parse_bearer_challenge("Bearer") == {}
