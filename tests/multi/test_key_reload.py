"""A key made by one instance, signing at once, validates on an instance that has not reloaded.

Instances K, L and M, an app of their own (its own database: their rotations must not reach
A, B and C), run with the production reload interval (a JWKS max-age of an hour: their
timers reload the keys once a minute, never during these tests), so the only way L or M
learns of a key K added a moment ago is the reload on an unknown ``kid``.
K rotates at once through its runtime (``runtime.keys.rotate(immediately=True)``): K signs
with the new key from that moment, and a validator must accept its tokens.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator, Mapping

import httpx
import pytest

from authbridge.testing import ServedFakeIssuer

from .flows import ROBOT, bearer, jwt_header
from .harness import Cluster, Instance
from .support import ISSUER_OPTIONS, open_cluster

SLOW_RELOAD = {**ISSUER_OPTIONS, "jwks_max_age": 3600.0}


@pytest.fixture(scope="module")
def slow_reloaders(
    fake_issuer: ServedFakeIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with open_cluster(
        fake_issuer,
        tmp_path_factory.mktemp("multi-key-reload"),
        ["K", "L", "M"],
        issuer_options=SLOW_RELOAD,
        explain_refusals=True,
    ) as cluster:
        yield cluster


def _mint(cluster: Cluster, instance: Instance) -> str:
    auth = httpx.BasicAuth(ROBOT, cluster.robot_secret)
    answer = httpx.post(
        f"{instance.base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=auth,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def _rotate_now(instance: Instance) -> str:
    answer = httpx.post(f"{instance.base_url}/test/rotate-key?now=true", timeout=10)
    assert answer.status_code == 200, answer.text
    kid: str = answer.json()["kid"]
    return kid


def _whoami(instance: Instance, token: str) -> httpx.Response:
    return httpx.get(f"{instance.base_url}/whoami", headers=bearer(token), timeout=10)


def _unknown_kid_token(cluster: Cluster) -> str:
    """A token in the app's shape naming a key nobody has (its signature is noise)."""

    def part(value: Mapping[str, object]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = {"alg": "ES256", "typ": "at+jwt", "kid": f"unknown-{secrets.token_hex(8)}"}
    claims = {"iss": cluster.origin, "sub": "nobody", "aud": cluster.origin}
    signature = base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()
    return f"{part(header)}.{part(claims)}.{signature}"


def test_a_key_another_instance_signs_with_at_once_validates_by_reloading(
    slow_reloaders: Cluster,
) -> None:
    cluster = slow_reloaders
    signer, validator = cluster["K"], cluster["L"]
    assert _whoami(validator, _mint(cluster, signer)).status_code == 200
    kid = _rotate_now(signer)
    token = _mint(cluster, signer)
    assert jwt_header(token)["kid"] == kid  # K signs with it at once
    seen = _whoami(validator, token)  # L never saw the key: it reloads on the unknown kid
    assert seen.status_code == 200, seen.text


def test_a_key_signing_at_once_validates_even_after_an_unknown_kid(
    slow_reloaders: Cluster,
) -> None:
    cluster = slow_reloaders
    signer, validator = cluster["K"], cluster["M"]
    assert _whoami(validator, _mint(cluster, signer)).status_code == 200
    # Anyone can send a token naming a key nobody has: refused, and a reload is spent.
    unknown = _whoami(validator, _unknown_kid_token(cluster))
    assert (unknown.status_code, "unknown_key" in unknown.text) == (401, True)
    _rotate_now(signer)
    seen = _whoami(validator, _mint(cluster, signer))
    assert "unknown_key" not in seen.text  # M waited for its next reload, which found it
    assert seen.status_code == 200, seen.text
