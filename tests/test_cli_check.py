"""``authbridge check``: against issuers served on loopback ports, good and broken."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authbridge.cli._check import _provider_family
from authbridge.testing import FakeIssuer, ServedFakeIssuer
from cli_support import (
    AUD,
    SLOW,
    b64,
    ec_jwk,
    free_port,
    metadata,
    rsa_jwk,
    run,
    site,
    subprocess_run,
)


@pytest.fixture
def served(authbridge_signing_key: rsa.RSAPrivateKey) -> Iterator[ServedFakeIssuer]:
    with FakeIssuer.serve(audience=AUD, key=authbridge_signing_key) as issuer:
        yield issuer


def test_check_a_usable_issuer_reports_keys_algorithms_and_timing(
    served: ServedFakeIssuer,
) -> None:
    served.add_jwk(rsa_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024), "weak"))
    served.add_jwk({"kty": "oct", "kid": "secret", "k": b64(b"x" * 32)})
    served.add_jwk({**ec_jwk("enc-key"), "use": "enc"})
    served.add_jwk(ec_jwk("ec-key"))
    result = run("check", served.issuer, "--audience", AUD)
    assert result.code == 0, result.text
    out = result.out
    assert "[ok] found by OpenID Connect discovery" in out
    assert f'[ok] the metadata names exactly this issuer: "{served.issuer}"' in out
    assert re.search(r"GET \S+/\.well-known/openid-configuration -> 200 in \d+ ms", out)
    assert re.search(r"GET \S+/jwks -> 200 in \d+ ms", out)
    assert 'kid "test-key-1": RSA 2048 bits, alg "RS256", use "sig": verifies RS256' in out
    assert 'kid "weak": RSA 1024 bits: skipped, rsa_key_too_small' in out
    assert 'kid "secret": oct (a shared secret): skipped, symmetric_key_in_jwks' in out
    assert 'kid "enc-key": EC P-256, use "enc": skipped, not_a_signing_key' in out
    assert 'kid "ec-key": EC P-256: verifies ES256' in out
    assert "5 keys published, 2 usable" in out
    assert "the published keys can verify: RS256, ES256" in out
    assert "token_type='strict' accepts only typ at+jwt" in out
    assert "introspection: none advertised" in out
    assert "Result: usable" in out
    assert f"OIDCProvider(\"idp\", issuer='{served.issuer}', audience='{AUD}'" in out
    # The OpenID configuration has no introspection_endpoint: the RFC 8414 document is asked.
    assert re.search(r"GET \S+/\.well-known/oauth-authorization-server -> 404", out)
    assert "3 requests" in out
    assert result.err == ""


def test_check_in_a_subprocess_reports_the_trailing_slash(served: ServedFakeIssuer) -> None:
    process = subprocess_run("check", served.issuer + "/")
    assert process.returncode == 1, process.stdout
    assert f'configured: "{served.issuer}/"' in process.stdout
    assert f'discovered: "{served.issuer}"' in process.stdout
    assert f"only the trailing slash differs: use issuer='{served.issuer}'" in process.stdout
    assert process.stderr.startswith("check failed: issuer mismatch")


def test_check_in_a_subprocess_reports_weak_keys_only_once(served: ServedFakeIssuer) -> None:
    served.add_jwk(rsa_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024), "weak"))
    process = subprocess_run("check", served.issuer)
    assert process.returncode == 0, process.stdout
    assert 'kid "weak": RSA 1024 bits: skipped, rsa_key_too_small' in process.stdout
    assert process.stderr == ""  # no library warning or log line repeats it


def test_check_names_the_proxy_from_the_environment_without_its_password(
    served: ServedFakeIssuer,
) -> None:
    url = "http://alice:s3cret-pw@proxy.invalid:3128"
    proxy = {"HTTPS_PROXY": url, "https_proxy": url, "NO_PROXY": "", "no_proxy": ""}
    process = subprocess_run("check", served.issuer, env=proxy)
    assert process.returncode == 0, process.stdout  # loopback issuers are reached directly
    assert "Outbound HTTP: https URLs through http://***@proxy.invalid:3128" in process.stdout
    assert "s3cret-pw" not in process.stdout + process.stderr


def test_check_an_issuer_named_differently() -> None:
    with site() as (base, routes):
        routes["/.well-known/openid-configuration"] = (200, metadata("https://other.example"))
        result = run("check", base)
    assert result.code == 1
    assert 'discovered: "https://other.example"' in result.out
    assert "belongs to another issuer" in result.out


def test_check_an_unreachable_issuer_exits_2() -> None:
    result = run("check", f"http://127.0.0.1:{free_port()}")
    assert result.code == 2
    assert "is unreachable (ConnectError)" in result.err
    assert "-> no answer" in result.out


def test_check_a_slow_issuer_is_bounded_by_the_timeout() -> None:
    with site() as (base, routes):
        routes["/.well-known/openid-configuration"] = (SLOW, 5)
        started = time.monotonic()
        result = run("check", base, "--timeout", "0.5")
        elapsed = time.monotonic() - started
    assert result.code == 2, result.text
    assert "did not answer in time" in result.err
    assert elapsed < 4.5  # bounded by the timeout, not by the server (generous under load)


def test_check_describes_odd_key_sets() -> None:
    okp = {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(bytes(32))}
    with site() as (base, routes):
        routes["/.well-known/openid-configuration"] = (200, metadata(base))
        good = FakeIssuer(base).jwks()["keys"][0]
        keys = [good, {**good}, okp, {"kty": "XYZ", "kid": "odd"}, "not a key", ec_jwk("p256")]
        routes["/jwks"] = (200, {"keys": keys})
        result = run("check", base)
    assert result.code == 0, result.text
    out = result.out
    assert '[warn] 2 keys share kid "test-key-1": each is tried' in out
    assert 'kid "odd": kty "XYZ": skipped, unsupported_key_type' in out
    assert "#4: not a JSON object: skipped" in out
    assert 'kid "ed": OKP Ed25519' in out
    assert "6 keys published" in out


def test_check_falls_back_to_rfc8414_and_lists_endpoints() -> None:
    with site("/tenant") as (base, routes):
        document = metadata(
            base,
            introspection_endpoint=f"{base}/introspect",
            userinfo_endpoint=f"{base}/userinfo",
            id_token_signing_alg_values_supported=["RS256", "HS256", "none"],
        )
        routes["/.well-known/oauth-authorization-server/tenant"] = (200, document)
        routes["/tenant/jwks"] = (200, FakeIssuer(base).jwks())
        result = run("check", base)
    assert result.code == 0, result.text
    assert re.search(r"/tenant/\.well-known/openid-configuration -> 404", result.out)
    assert "[ok] found by RFC 8414 metadata" in result.out
    assert f"introspection: {base}/introspect" in result.out
    assert f"userinfo: {base}/userinfo" in result.out
    assert "[warn] HS256 is advertised" in result.out
    assert "none is advertised: unsigned tokens are never accepted" in result.out


def test_check_reads_introspection_from_the_rfc8414_document() -> None:
    with site() as (base, routes):
        routes["/.well-known/openid-configuration"] = (200, metadata(base))
        routes["/.well-known/oauth-authorization-server"] = (
            200,
            metadata(base, introspection_endpoint=f"{base}/oauth2/introspect"),
        )
        routes["/jwks"] = (200, FakeIssuer(base).jwks())
        result = run("check", base)
    assert result.code == 0, result.text
    assert "[ok] found by OpenID Connect discovery" in result.out
    assert f"introspection: {base}/oauth2/introspect (from the RFC 8414 document)" in result.out
    assert "userinfo: none advertised" in result.out


@pytest.mark.parametrize(
    ("routes_of", "code", "message"),
    [
        (lambda base: {"/.well-known/openid-configuration": (500, {})}, 2, "answered HTTP 500"),
        (lambda base: {}, 1, "answered HTTP 404"),
        (
            lambda base: {"/.well-known/openid-configuration": (200, {"issuer": base})},
            1,
            "no jwks_uri",
        ),
        (
            lambda base: {
                "/.well-known/openid-configuration": (200, metadata(base)),
                "/jwks": (200, {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
            },
            1,
            "the JWKS has no usable key",
        ),
        (
            lambda base: {
                "/.well-known/openid-configuration": (200, metadata(base)),
                "/jwks": (200, {"no": "keys"}),
            },
            1,
            "no keys array",
        ),
        (
            lambda base: {
                "/.well-known/openid-configuration": (200, metadata(base)),
                "/jwks": (503, {}),
            },
            2,
            "JWKS: HTTP status 503",
        ),
        (
            lambda base: {
                "/.well-known/openid-configuration": (
                    200,
                    {**metadata(base), "jwks_uri": "ftp://keys.example/jwks"},
                ),
            },
            1,
            "jwks_uri is not an https URL",
        ),
    ],
)
def test_check_failures(routes_of: Any, code: int, message: str) -> None:
    with site() as (base, routes):
        routes.update(routes_of(base))
        result = run("check", base)
    assert result.code == code, result.text
    assert message in result.err
    assert "Result: usable" not in result.out


@pytest.mark.parametrize(
    "issuer",
    [
        "https://auth.example.org/.well-known/openid-configuration",
        "auth.example.org",
        "https://auth.example.org/?tenant=1",
    ],
)
def test_check_refuses_an_issuer_url_of_the_wrong_shape(issuer: str) -> None:
    result = run("check", issuer)
    assert result.code == 2
    assert result.err.startswith("error: configuration_error: issuer_")


def test_check_advice_for_known_providers() -> None:
    assert _provider_family("https://tenant.eu.auth0.com/") == "auth0"
    assert _provider_family("https://login.microsoftonline.com/t/v2.0") == "entra"
    assert _provider_family("https://sts.windows.net/t/") == "entra"
    assert _provider_family("https://cognito-idp.eu-west-1.amazonaws.com/pool") == "cognito"
    assert _provider_family("https://dev-1.okta.com/oauth2/default") == "okta"
    assert _provider_family("https://accounts.google.com") == "google"
    assert _provider_family("https://sso.example.org/realms/shop") == "keycloak"
    assert _provider_family("https://auth0.com.evil.example") is None
    with site("/realms/shop") as (base, routes):
        routes["/realms/shop/.well-known/openid-configuration"] = (200, metadata(base))
        routes["/realms/shop/jwks"] = (200, FakeIssuer(base).jwks())
        result = run("check", base)
    assert result.code == 0
    assert "Keycloak sends typ JWT by default" in result.out
