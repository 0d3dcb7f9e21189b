"""The command line: help, decode and verify (check: test_cli_check.py; demo, mint:
test_demo_cli.py).

Commands run in-process through typer's CliRunner against issuers served on real loopback
ports, and in a subprocess for at least one case per command. Every failure path is checked
for its exact exit code, the absence of a traceback, and the absence of the token.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authbridge.cli._tokens import describe_time, duration
from authbridge.testing import FakeIssuer, ServedFakeIssuer, sign_jwt
from cli_support import AUD, b64, free_port, metadata, run, site, subprocess_run

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def served(authbridge_signing_key: rsa.RSAPrivateKey) -> Iterator[ServedFakeIssuer]:
    with FakeIssuer.serve(audience=AUD, key=authbridge_signing_key) as issuer:
        yield issuer


# -- help ----------------------------------------------------------------------------------

COMMANDS = ["check", "decode", "verify", "mint", "demo", "version"]
GROUPS = ["users", "clients", "keys", "db"]
GROUP_COMMANDS = [
    "users add",
    "users list",
    "users passwd",
    "clients add",
    "clients list",
    "clients secret",
    "keys list",
    "keys rotate",
    "keys kek",
    "db upgrade",
    "db current",
]
PLACEHOLDER = re.compile(r"<[a-z][a-z\[\], ]*>|\{[A-Za-z_]+\}")
BOX_OR_ESCAPE = re.compile(r"[\u2500-\u257f\x1b]")


@pytest.mark.parametrize("command", [None, *COMMANDS, *GROUPS, *GROUP_COMMANDS])
def test_help_is_plain_and_names_every_value(command: str | None) -> None:
    result = run(*(command.split() if command else []), "--help")
    assert result.code == 0
    assert not PLACEHOLDER.search(result.out), result.out
    assert not BOX_OR_ESCAPE.search(result.out), result.out
    # Every option that takes a value shows an upper-case metavar (or its choices).
    options = result.out.split("\nOptions:\n", 1)[1]
    for line in options.splitlines():
        match = re.match(r"  (--[a-z-]+)(?: (\S+))?", line)
        if match and match.group(2):
            assert match.group(2).isupper() or "|" in match.group(2), line


def test_root_help_lists_the_commands_in_reading_order() -> None:
    out = run("--help").out
    positions = [out.index(f"  {name} ") for name in [*COMMANDS, *GROUPS]]
    assert positions == sorted(positions)


def test_help_in_a_real_non_tty_process() -> None:
    process = subprocess_run("verify", "--help")
    assert process.returncode == 0
    assert process.stdout.startswith("Usage: python -m authbridge verify [OPTIONS] TOKEN\n")
    assert "--token-type strict|lenient|id_token" in process.stdout
    assert "--issuer ISSUER" in process.stdout
    assert not PLACEHOLDER.search(process.stdout)
    assert not BOX_OR_ESCAPE.search(process.stdout)


def test_usage_errors_exit_2_with_a_plain_message() -> None:
    result = run("verify", "some-token")
    assert result.code == 2
    assert "Missing option '--issuer'" in result.err
    assert "some-token" not in result.text
    assert not BOX_OR_ESCAPE.search(result.err)


# -- decode --------------------------------------------------------------------------------


def test_decode_prints_header_claims_and_times_marked_unverified(
    fake_issuer: FakeIssuer,
) -> None:
    token = fake_issuer.token(subject="bob", scopes=["items:read"], expires_in=600)
    result = run("decode", token)
    assert result.code == 0
    assert result.err.startswith("UNVERIFIED")
    out = result.json()
    assert out["verified"] is False
    assert out["warning"].startswith("UNVERIFIED")
    assert out["header"] == {"alg": "RS256", "typ": "at+jwt", "kid": fake_issuer.kid}
    assert out["claims"]["sub"] == "bob"
    assert out["claims"]["scope"] == "items:read"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(expires in \d+m \d+s\)", out["times"]["exp"]
    )
    assert "issued" in out["times"]["iat"]
    assert out["signature_bytes"] == 256


def test_decode_an_expired_token_says_how_long_ago(fake_issuer: FakeIssuer) -> None:
    result = run("decode", fake_issuer.bad.expired())
    assert result.code == 0
    assert re.search(r"\(expired 1[0-9]m \d+s ago\)", result.json()["times"]["exp"])


def test_decode_reads_stdin_and_a_pasted_authorization_value(fake_issuer: FakeIssuer) -> None:
    token = fake_issuer.token()
    result = run("decode", "-", stdin=f"Bearer {token}\n")
    assert result.code == 0
    assert result.json()["claims"]["iss"] == fake_issuer.issuer


def test_decode_in_a_subprocess(fake_issuer: FakeIssuer) -> None:
    token = fake_issuer.token(subject="erin")
    process = subprocess_run("decode", "-", stdin=token + "\n")
    assert process.returncode == 0
    assert process.stderr.startswith("UNVERIFIED: decoded only.")
    assert json.loads(process.stdout)["claims"]["sub"] == "erin"
    refused = subprocess_run("decode", "-", stdin="MARKER.not-base64!.x")
    assert refused.returncode == 1
    assert "error: malformed token" in refused.stderr
    assert "MARKER" not in refused.stdout + refused.stderr


def _segment(value: Any) -> str:
    return b64(json.dumps(value).encode())


MALFORMED = {
    "opaque": ("opaque-MARKER-0123456789", "not a JWT (no '.' in it)"),
    "two_segments": ("MARKERaaaa.MARKERbbbb", "2 segments"),
    "jwe": (f"{_segment({'alg': 'RSA-OAEP', 'enc': 'A256GCM'})}.MARKER.iv.ct.tag", "encrypted"),
    "bad_signature_encoding": (
        f"{_segment({'alg': 'RS256'})}.{_segment({'sub': 'x'})}.MARKER+/=",
        "malformed token",
    ),
    "header_not_json": (f"{b64(b'MARKER not json')}.{_segment({'sub': 'x'})}.c2ln", "malformed"),
    "payload_not_an_object": (f"{_segment({'alg': 'RS256'})}.{_segment([1, 2])}.c2ln", "malformed"),
    "whitespace_inside": ("MARKER aaa.bbb.ccc", "several words"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_decode_malformed_tokens_exit_1_without_echoing_the_token(name: str) -> None:
    token, message = MALFORMED[name]
    result = run("decode", token)
    assert result.code == (2 if name == "whitespace_inside" else 1), result.text
    assert message in result.err
    assert token not in result.text
    assert "MARKER" not in result.err  # no piece of the token in any error message


def test_decode_shows_what_decodes_of_a_token_refused_for_its_form() -> None:
    token = f"{_segment({'alg': 'RS256', 'typ': 'JWT'})}.{_segment({'sub': 'eve'})}.MARKER+/="
    result = run("decode", token)
    assert result.code == 1
    assert result.json()["claims"] == {"sub": "eve"}
    assert "MARKER" not in result.text


def test_decode_never_touches_the_network(
    fake_issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("decode must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert run("decode", fake_issuer.token()).code == 0
    assert run("decode", "garbage").code == 1


CLAIM_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"])
    | st.sampled_from(
        ["\x1b", "\u202e", "\u2066", "\u0085", "\u009b", "\u00a0", "\u3000", "\ufeff", "\n", "\x7f"]
    ),
    max_size=20,
)


@PROPERTY
@given(claims=st.dictionaries(CLAIM_TEXT, CLAIM_TEXT | st.integers(), max_size=5))
def test_decode_output_round_trips_and_never_sends_control_characters(
    claims: dict[str, Any],
) -> None:
    token = sign_jwt({"alg": "HS256"}, claims, b"k" * 32)
    result = run("decode", token)
    assert result.code == 0
    assert result.json()["claims"] == claims
    assert all(c.isprintable() or c == "\n" for c in result.out), result.out


@PROPERTY
@given(text=st.text(max_size=300))
def test_decode_of_any_input_ends_with_a_message_not_a_crash(text: str) -> None:
    result = run("decode", text)
    assert result.code in (0, 1, 2)
    if result.code:
        # Ours say "error: ..."; click's own usage errors (an input that looks like an
        # option, such as "-0") say "Error: ...": a message either way, never a traceback.
        assert "error:" in result.err.lower()
        assert "Traceback" not in result.err


def test_durations_and_times() -> None:
    assert [duration(s) for s in (0, 12, 61, 3600, 90061, -600)] == [
        "0s", "12s", "1m 1s", "1h 0m", "1d 1h", "10m 0s",
    ]  # fmt: skip
    now = 1_800_000_000
    assert describe_time("exp", now + 600, now) == "2027-01-15T08:10:00Z (expires in 10m 0s)"
    assert describe_time("exp", now - 90, now).endswith("(expired 1m 30s ago)")
    assert describe_time("nbf", now + 60, now).endswith("(not valid for another 1m 0s)")
    assert describe_time("iat", now + 60, now).endswith("(issued in the future, 1m 0s from now)")
    for bad in ("soon", True, None, 1e12):
        assert "not a valid NumericDate" in describe_time("exp", bad, now)
    assert "out of the range" in describe_time("exp", -1e11, now)
    assert len(describe_time("exp", "x" * 10_000, now)) < 120


# -- verify --------------------------------------------------------------------------------


def test_verify_prints_the_principal(served: ServedFakeIssuer) -> None:
    token = served.token(subject="bob", scopes=["items:write", "items:read"])
    result = run("verify", token, "--issuer", served.issuer, "--audience", AUD)
    assert result.code == 0, result.text
    principal = result.json()
    assert principal["subject"] == "bob"
    assert principal["issuer"] == served.issuer
    assert principal["scopes"] == ["items:read", "items:write"]
    assert principal["claims"]["aud"] == AUD
    assert result.err.startswith("valid:")


def test_verify_with_client_ids_and_strict_type(served: ServedFakeIssuer) -> None:
    token = served.token()
    ok = run("verify", token, "--issuer", served.issuer, "--client-id", "test-client",
             "--token-type", "strict")  # fmt: skip
    assert ok.code == 0, ok.text
    other = run("verify", token, "--issuer", served.issuer, "--client-id", "another")
    assert other.code == 1
    assert other.json()["reason"] == "client_mismatch"


REFUSALS = {
    "expired": (lambda fake: fake.bad.expired(), [], "expired", "exp"),
    "wrong_audience": (lambda fake: fake.bad.wrong_audience(), [], "audience_mismatch", "aud"),
    "wrong_issuer": (lambda fake: fake.bad.wrong_issuer(), [], "unknown_issuer", None),
    "alg_none": (lambda fake: fake.bad.alg_none(), [], "malformed_token", None),  # no signature
    "hmac_confusion": (lambda fake: fake.bad.hmac_confusion(), [], "algorithm_not_allowed", None),
    "unknown_kid": (lambda fake: fake.bad.unknown_kid(), [], "unknown_key", None),
    "bad_signature": (lambda fake: fake.bad.bad_signature(), [], "bad_signature", None),
    "not_yet_valid": (lambda fake: fake.bad.not_yet_valid(), [], "not_yet_valid", "nbf"),
    "jwt_typ_in_strict_mode": (
        lambda fake: fake.token(header={"typ": "JWT"}),
        ["--token-type", "strict"],
        "wrong_token_type",
        None,
    ),
    "opaque": (lambda fake: "an-opaque-token-MARKER", [], "unknown_token_format", None),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_verify_refusals_exit_1_with_the_exact_reason(served: ServedFakeIssuer, name: str) -> None:
    make, options, reason, claim = REFUSALS[name]
    token = make(served)
    result = run("verify", "-", "--issuer", served.issuer, "--audience", AUD, *options,
                 stdin=token)  # fmt: skip
    assert result.code == 1, result.text
    refusal = result.json()
    assert refusal["verified"] is False
    assert (refusal["code"], refusal["reason"], refusal["claim"]) == (
        "invalid_token",
        reason,
        claim,
    )
    assert isinstance(refusal["detail"], dict)
    assert f"refused: invalid_token: {reason}" in result.err
    assert token not in result.text
    _, payload, signature = [*token.split("."), "", ""][:3]
    for piece in (payload, signature):
        if len(piece) > 8:
            assert piece not in result.text


def test_verify_hints_at_the_token_values(served: ServedFakeIssuer) -> None:
    result = run("verify", served.bad.wrong_issuer(), "--issuer", served.issuer, "--audience", AUD)
    assert 'the token says iss="https://evil.example.test"' in result.err
    slash = run("verify", served.token(), "--issuer", served.issuer + "/", "--audience", AUD)
    assert slash.code == 1
    assert "trailing slash" in slash.err
    assert f'iss="{served.issuer}"' in slash.err


def test_verify_against_an_unreachable_issuer_exits_2(fake_issuer: FakeIssuer) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    token = FakeIssuer(issuer, key=fake_issuer.key).token()
    result = run("verify", token, "--issuer", issuer, "--audience", AUD, "--timeout", "5")
    assert result.code == 2, result.text
    refusal = result.json()
    assert refusal["code"] == "provider_unavailable"
    assert refusal["reason"].startswith("transport_error")
    assert "unavailable: provider_unavailable" in result.err
    assert token not in result.text


def test_verify_reports_an_issuer_mismatch_in_discovery() -> None:
    with site() as (base, routes):
        routes["/.well-known/openid-configuration"] = (200, metadata(base + "/"))
        token = FakeIssuer(base).token()
        result = run("verify", token, "--issuer", base, "--audience", AUD)
    assert result.code == 2
    assert result.json()["reason"] == "discovery_issuer_mismatch"
    assert "authbridge check" in result.err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([], "audience"),
        (["--audience", AUD, "--token-type", "loose"], "token_type must be"),
        (["--audience", ""], "audience"),
    ],
)
def test_verify_configuration_errors_exit_2(
    fake_issuer: FakeIssuer, options: list[str], message: str
) -> None:
    token = fake_issuer.token()
    result = run("verify", token, "--issuer", "https://issuer.example.test", *options)
    assert result.code == 2
    assert result.err.startswith("error: configuration_error")
    assert message in result.err
    assert token not in result.text


def test_verify_without_a_token_exits_2() -> None:
    result = run("verify", "-", "--issuer", "https://issuer.example.test", "--audience", AUD,
                 stdin="   \n")  # fmt: skip
    assert result.code == 2
    assert "no token given" in result.err


def test_verify_in_a_subprocess(served: ServedFakeIssuer) -> None:
    options = ["--issuer", served.issuer, "--audience", AUD]
    good = subprocess_run("verify", "-", *options, stdin=served.token(subject="carol"))
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["subject"] == "carol"
    expired = served.bad.expired()
    refused = subprocess_run("verify", "-", *options, stdin=expired)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["reason"] == "expired"
    assert expired not in refused.stdout + refused.stderr
    malformed = subprocess_run("verify", "-", *options, stdin="eyJhbGciOiJub25lIn0.MARKER")
    assert malformed.returncode == 1
    assert "MARKER" not in malformed.stdout + malformed.stderr
