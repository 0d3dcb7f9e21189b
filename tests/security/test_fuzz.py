"""Property-based fuzzing: whatever arrives, the only outcomes are the documented ones."""

from __future__ import annotations

import asyncio
import json
import string

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authbridge import InvalidToken, Principal
from authbridge.errors import AuthBridgeError

from ._support import T0, b64, make_app, sign_bytes, token_at

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

B64URL = string.ascii_letters + string.digits + "-_"
JWS_ALGS = ["RS256", "RS384", "PS256", "ES256", "EdDSA", "HS256", "none", "None", ""]
HEADER_NAMES = ["alg", "typ", "kid", "cty", "crit", "b64", "jwk", "jku", "x5u", "x5c", "enc", "zip"]
CLAIM_NAMES = [
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "azp", "scope", "scp", "typ",
    "nonce", "realm_access",
]  # fmt: skip

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


class Core:
    """One AuthBridge (keys loaded) inside one event loop, reused across examples."""

    def __init__(self, auth) -> None:
        self.auth = auth
        self.runner = asyncio.Runner()

    def __enter__(self) -> Core:
        self.runner.__enter__()
        self.runner.run(self.auth.__aenter__())
        return self

    def __exit__(self, *exc) -> None:
        self.runner.run(self.auth.__aexit__(None, None, None))
        self.runner.__exit__(*exc)

    def verify(self, token: str) -> Principal | AuthBridgeError:
        async def go():
            try:
                return await self.auth.verify(token)
            except AuthBridgeError as exc:
                return exc

        return self.runner.run(go())


@pytest.fixture
def core(make_auth):
    with Core(make_auth()) as c:
        yield c


def _refused(result) -> None:
    # Only InvalidToken: these strings never name the configured issuer with a valid
    # signature, so no provider is ever consulted (no ProviderUnavailable either).
    assert isinstance(result, InvalidToken), result
    assert result.reason
    assert result.__cause__ is None


# -- core ------------------------------------------------------------------------------------


def test_arbitrary_text(core) -> None:
    @FUZZ
    @given(st.text(max_size=400))
    def check(token: str) -> None:
        _refused(core.verify(token))

    check()


def test_arbitrary_bytes_as_latin1(core) -> None:
    @FUZZ
    @given(st.binary(max_size=400))
    def check(raw: bytes) -> None:
        _refused(core.verify(raw.decode("latin-1")))

    check()


def test_jws_shaped_strings(core) -> None:
    segment = st.text(alphabet=B64URL + "=+/ .", max_size=80)

    @FUZZ
    @given(st.lists(segment, min_size=1, max_size=6))
    def check(parts: list[str]) -> None:
        _refused(core.verify(".".join(parts)))

    check()


def test_mutations_of_a_valid_token(core, fake_issuer, clock) -> None:
    token = token_at(fake_issuer, clock)
    assert isinstance(core.verify(token), Principal)

    @FUZZ
    @given(
        st.integers(min_value=0, max_value=len(token) - 1),
        st.sampled_from(["flip", "delete", "insert", "swap_case"]),
        st.sampled_from(list(B64URL + ".=+/ \x00é")),
    )
    def check(index: int, how: str, char: str) -> None:
        if how == "flip":
            mutated = token[:index] + char + token[index + 1 :]
        elif how == "delete":
            mutated = token[:index] + token[index + 1 :]
        elif how == "insert":
            mutated = token[:index] + char + token[index:]
        else:
            mutated = token[:index] + token[index].swapcase() + token[index + 1 :]
        if mutated == token:
            return
        _refused(core.verify(mutated))

    check()


@st.composite
def structured_tokens(draw, fake_issuer, clock):
    """Correctly encoded tokens: a valid token with random edits, or random JSON; signed or not."""
    if draw(st.booleans()):
        header = {"alg": "RS256", "typ": "at+jwt", "kid": fake_issuer.kid}
        claims = {
            "iss": fake_issuer.issuer, "aud": fake_issuer.audience, "sub": "alice",
            "exp": T0 + 300, "iat": T0, "scope": "items:read",
        }  # fmt: skip
    else:
        header = draw(st.dictionaries(st.sampled_from(HEADER_NAMES), json_values, max_size=4))
        claims = draw(st.dictionaries(st.sampled_from(CLAIM_NAMES), json_values, max_size=6))
    edits = st.tuples(
        st.sampled_from(["header", "claims"]),
        st.sampled_from(HEADER_NAMES + CLAIM_NAMES) | st.text(max_size=5),
        st.sampled_from(["set", "delete"]),
        st.sampled_from([*JWS_ALGS, fake_issuer.issuer, fake_issuer.audience, T0 + 60, T0 - 60])
        | json_values,
    )
    for where, name, action, value in draw(st.lists(edits, max_size=3)):
        target = header if where == "header" else claims
        if action == "delete":
            target.pop(name, None)
        else:
            target[name] = value
    h = b64(json.dumps(header).encode())
    p = b64(json.dumps(claims).encode())
    data = f"{h}.{p}".encode()
    signer = draw(st.sampled_from(["issuer_rs256", "issuer_rs256", "random", "none"]))
    if signer == "issuer_rs256":
        signature = sign_bytes("RS256", fake_issuer.key, data)
    elif signer == "random":
        signature = draw(st.binary(min_size=1, max_size=300))
    else:
        signature = b"\x00"
    return f"{h}.{p}.{b64(signature)}", header, claims, signer


def test_structured_tokens(make_auth, fake_issuer, clock) -> None:
    with Core(make_auth()) as core:
        accepted = 0

        @FUZZ
        @given(structured_tokens(fake_issuer, clock))
        def check(case) -> None:
            nonlocal accepted
            token, header, claims, signer = case
            result = core.verify(token)
            if isinstance(result, Principal):
                accepted += 1
                # Whatever got through satisfies every rule.
                assert signer == "issuer_rs256"
                assert header.get("alg") == "RS256"
                assert header.get("kid") in (fake_issuer.kid, None)
                assert not {"crit", "b64", "enc", "zip"} & set(header)
                assert claims["iss"] == fake_issuer.issuer
                exp = claims["exp"]
                assert isinstance(exp, int | float)
                assert not isinstance(exp, bool)
                assert exp + 30 > clock.now
                aud = claims.get("aud")
                assert aud == fake_issuer.audience or fake_issuer.audience in aud
                assert header.get("typ") in (None, "at+jwt", "JWT", "jwt") or str(
                    header.get("typ")
                ).lower() in ("at+jwt", "application/at+jwt", "jwt", "application/jwt")
                for name in ("sub", "jti", "client_id", "azp", "scope", "nonce"):
                    assert name not in claims or isinstance(claims[name], str)
                assert result.issuer == fake_issuer.issuer
            else:
                assert isinstance(result, InvalidToken), result

        check()
        assert accepted > 0  # the property above was exercised, not vacuous


# -- HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def client(make_auth):
    with TestClient(make_app(make_auth(bridge={"allow_query_token": True}))) as c:
        yield c


def _assert_refusal(response) -> None:
    assert response.status_code == 401, (response.status_code, response.text)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert response.json()["detail"] in ("Not authenticated", "Invalid or expired access token")


header_bytes = st.binary(max_size=300).filter(lambda b: b"\r" not in b and b"\n" not in b)


def test_arbitrary_authorization_header(client) -> None:
    @FUZZ
    @given(header_bytes)
    def check(value: bytes) -> None:
        for path in ("/items", "/maybe"):
            response = client.get(path, headers={"Authorization": value})
            if path == "/maybe" and response.status_code == 200:
                assert response.json() == {"sub": None}  # anonymous, never authenticated
            else:
                _assert_refusal(response)

    check()


def test_arbitrary_bearer_credentials(client) -> None:
    @FUZZ
    @given(
        st.sampled_from(["Bearer", "bearer", "BEARER"]),
        st.text(alphabet=" \t", min_size=0, max_size=3),
        st.text(alphabet=B64URL + ".~+/= ,;\"'\\", max_size=200),
    )
    def check(scheme: str, gap: str, token: str) -> None:
        response = client.get("/items", headers={"Authorization": f"{scheme}{gap}{token}"})
        _assert_refusal(response)

    check()


def test_arbitrary_query_token(client) -> None:
    @FUZZ
    @given(st.text(max_size=200), st.integers(min_value=1, max_value=3))
    def check(token: str, repeat: int) -> None:
        response = client.get("/items", params=[("access_token", token)] * repeat)
        _assert_refusal(response)

    check()


def test_structured_tokens_over_http(client, fake_issuer, clock) -> None:
    @FUZZ
    @given(structured_tokens(fake_issuer, clock))
    def check(case) -> None:
        token = case[0]
        response = client.get("/items", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code in (200, 401, 403), response.text
        if response.status_code == 401:
            assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')

    check()
