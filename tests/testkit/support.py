"""Helpers of the test kit's login-flow tests."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from typing import Any

import httpx

FORM_FIELD = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


def pkce() -> tuple[str, str]:
    """``(verifier, S256 challenge)``."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def callback(response: httpx.Response) -> dict[str, str]:
    """The query of a 302 callback."""
    assert response.status_code == 302, response.text
    return dict(httpx.URL(response.headers["location"]).params)


def hidden_fields(page: str) -> dict[str, str]:
    return {html.unescape(k): html.unescape(v) for k, v in FORM_FIELD.findall(page)}


def claims_of(jwt: str) -> dict[str, Any]:
    import json  # noqa: PLC0415

    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def header_of(jwt: str) -> dict[str, Any]:
    import json  # noqa: PLC0415

    part = jwt.split(".", maxsplit=1)[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def no_cors(response: httpx.Response) -> bool:
    return not any(name.lower().startswith("access-control-") for name in response.headers)
