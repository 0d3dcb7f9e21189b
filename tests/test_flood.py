"""Floods of distinct made-up opaque tokens stay bounded (SECURITY-CASES §10).

Every opaque token that passes the local checks costs one call to its provider.
The checks come first and cost nothing but CPU: RFC 6750 syntax, then the
provider's documented format (GitHub's CRC32 checksum, Google's and Facebook's
character sets), each able to be switched off and none refusing a token of a
documented format. Then each source has at most ``max_concurrent_checks`` calls
in flight and starts at most ``max_checks_per_second``, all sources together at
most 64 in flight; a check beyond a bound is refused at once (503 with
``Retry-After``), never queued. Requests sharing one call count once.

The flood tests use real loopback servers that take real time to answer (the
test kit's ``serve()``) and thousands of requests in flight through the real
app; they assert the bound and that genuine requests succeed, not latencies.
The bound tests hold the provider's answers until released, so what they check
does not depend on timing at all.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import string
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Security
from hypothesis import given, settings
from hypothesis import strategies as st

from authbridge import (
    AuthBridge,
    ConfigurationError,
    FacebookProvider,
    GitHubProvider,
    GoogleProvider,
    Introspection,
    InvalidToken,
    OIDCProvider,
    Principal,
    ProviderUnavailable,
    ResourceServer,
    UserinfoProvider,
)
from authbridge.resource._formats import (
    github_checksum,
    github_token_plausible,
    google_access_token_plausible,
)
from authbridge.resource._limits import CheckLimit, OutboundBudget
from authbridge.testing import FakeFacebook, FakeGitHub, FakeGoogle, FakeIssuer, FakeUserinfo

ALNUM = string.ascii_letters + string.digits
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LATENCY = 0.3
"""Seconds every served fake takes to answer."""
FLOOD = 2000


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def alnum(length: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(length))


async def outcome(coroutine: Any) -> Any:
    try:
        return await coroutine
    except (InvalidToken, ProviderUnavailable) as exc:
        return exc


# -- a flood through the real app, against real loopback servers -----------------------------


class Served:
    """A JWT issuer, GitHub and a userinfo endpoint, each on its own loopback port."""

    def __init__(self, stack: ExitStack, key: rsa.RSAPrivateKey) -> None:
        self.issuer = stack.enter_context(FakeIssuer.serve(key=key))
        self.github = stack.enter_context(FakeGitHub().serve())
        self.userinfo = stack.enter_context(FakeUserinfo("http://127.0.0.1/op").serve())

    def bridge(self, **github: Any) -> AuthBridge:
        # A generous timeout: under load an answer is late, never a 503 (the counts stay exact).
        return AuthBridge(
            [
                self.issuer.provider("jwt", jwks_uri=self.issuer.jwks_uri),
                GitHubProvider(api_base=self.github.api_base, **github),
                UserinfoProvider(
                    "op", self.userinfo.issuer, userinfo_endpoint=self.userinfo.userinfo_endpoint
                ),
            ],
            http_timeout=60.0,
        )


@pytest.fixture
def served(authbridge_signing_key: rsa.RSAPrivateKey) -> Iterator[Served]:
    with ExitStack() as stack:
        yield Served(stack, authbridge_signing_key)


@asynccontextmanager
async def app_client(auth: AuthBridge) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/me")
    async def me(user: Principal = Security(auth.principal)) -> dict[str, Any]:
        return {"sub": user.subject, "provider": user.provider}

    async with auth.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


async def flood_while_probing(
    client: httpx.AsyncClient, flood: list[str], genuine: dict[str, str]
) -> tuple[list[httpx.Response], dict[str, list[int]]]:
    """Send ``flood`` all at once; meanwhile keep sending each genuine token, one at a time."""
    done = asyncio.Event()
    seen: dict[str, list[int]] = {kind: [] for kind in genuine}

    async def probe(kind: str, token: str) -> None:
        while not done.is_set():
            seen[kind].append((await client.get("/me", headers=bearer(token))).status_code)
            # In process, a cached token's request never waits for I/O: without a pause
            # the probes would keep the event loop to themselves.
            await asyncio.sleep(0.01)

    probes = [asyncio.create_task(probe(kind, token)) for kind, token in genuine.items()]
    try:
        answers = await asyncio.gather(*(client.get("/me", headers=bearer(t)) for t in flood))
    finally:
        done.set()
        await asyncio.gather(*probes)
    return answers, seen


def made_up(count: int) -> list[str]:
    """Distinct tokens that pass every local check: half GitHub (valid checksum), half userinfo."""
    half = count // 2
    return [FakeGitHub.well_formed_token() for _ in range(half)] + [
        secrets.token_urlsafe(32) for _ in range(count - half)
    ]


@pytest.mark.parametrize("limit", [None, 4], ids=["default-16", "configured-4"])
async def test_a_flood_of_made_up_tokens_is_bounded_and_genuine_requests_keep_succeeding(
    served: Served, limit: int | None
) -> None:
    served.github.slow_next(LATENCY, count=None)
    served.userinfo.slow_next(LATENCY, count=None)
    github_limit = 16 if limit is None else limit
    auth = served.bridge(**({} if limit is None else {"max_concurrent_checks": limit}))
    genuine = {
        "jwt": served.issuer.token("alice"),
        "github": served.github.issue_token("mona", 583231),
        "userinfo": served.userinfo.issue_token("bob"),
    }
    async with app_client(auth) as client:
        for token in genuine.values():  # verified once: the opaque ones are cached from now on
            assert (await client.get("/me", headers=bearer(token))).status_code == 200
        github_before = len(served.github.requests)
        flood = made_up(FLOOD)
        answers, seen = await flood_while_probing(client, flood, genuine)

    # Genuine requests went on during the flood, and every one succeeded.
    for kind, statuses in seen.items():
        assert statuses, f"no {kind} request was answered during the flood"
        assert set(statuses) == {200}, kind
    # Each made-up token was refused: by its provider (401), or at once (503) when the
    # bound was reached; never left waiting in a queue.
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {401, 503}
    assert statuses.count(503) > 0, "the flood never reached the bound"
    for answer in answers:
        if answer.status_code == 503:
            assert int(answer.headers["retry-after"]) >= 1
    # The bound, counted at the providers: never more calls at once than the limit...
    assert 1 < served.github.peak_in_flight <= github_limit
    assert 1 < served.userinfo.peak_in_flight <= 16
    # ...and exactly one call per GitHub token refused by GitHub, none for a 503.
    github_tokens = set(flood[: FLOOD // 2])
    refused_by_github = sum(
        1
        for t, a in zip(flood, answers, strict=True)
        if t in github_tokens and a.status_code == 401
    )
    assert len(served.github.requests) - github_before == refused_by_github
    assert served.issuer.requests.count("/jwks") <= 1  # keys fetched once, before the flood


async def test_concurrent_requests_with_one_made_up_token_count_once(served: Served) -> None:
    served.github.slow_next(LATENCY, count=None)
    token = FakeGitHub.well_formed_token()
    async with app_client(served.bridge(max_concurrent_checks=1)) as client:
        answers = await asyncio.gather(
            *(client.get("/me", headers=bearer(token)) for _ in range(200))
        )
    assert {a.status_code for a in answers} == {401}  # one shared call, no slot for anyone else
    assert len(served.github.requests) == 1


# -- the bounds, deterministically -------------------------------------------------------------


class HeldAPI:
    """A provider API whose answers (401) wait until ``release()``: calls stay in flight."""

    def __init__(self) -> None:
        self.calls = 0
        self.in_flight = 0
        self.peak = 0
        self._released = asyncio.Event()
        self._arrived = asyncio.Condition()
        self.transport = httpx.MockTransport(self._handle)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        async with self._arrived:
            self._arrived.notify_all()
        try:
            await self._released.wait()
        finally:
            self.in_flight -= 1
        return httpx.Response(401, json={"message": "Bad credentials"})

    def release(self) -> None:
        self._released.set()

    async def settle(self, calls: int) -> None:
        """Wait until ``calls`` calls are in flight (the event loop got to all of them)."""
        async with asyncio.timeout(30), self._arrived:
            await self._arrived.wait_for(lambda: self.in_flight >= calls)


@asynccontextmanager
async def held_server(*providers: Any) -> AsyncIterator[tuple[ResourceServer, HeldAPI]]:
    held = HeldAPI()
    server = ResourceServer(providers, transport=held.transport)
    await server.start(warm_up=False)
    try:
        yield server, held
    finally:
        held.release()
        await server.aclose()


async def test_a_check_beyond_the_limit_is_refused_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with held_server(GitHubProvider(max_concurrent_checks=3)) as (server, held):
        first = [asyncio.create_task(outcome(server.verify(FakeGitHub.well_formed_token())))]
        first += [
            asyncio.create_task(outcome(server.verify(FakeGitHub.well_formed_token())))
            for _ in range(2)
        ]
        await held.settle(3)
        token = FakeGitHub.well_formed_token()
        with pytest.raises(ProviderUnavailable) as caught:
            await server.verify(token)  # while the three are still held: nothing waited
        assert not any(task.done() for task in first)
        held.release()
        results = await asyncio.gather(*first)
        assert {r.reason for r in results} == {"rejected_by_provider"}
        assert isinstance(await outcome(server.verify(token)), InvalidToken)  # a slot again
    error = caught.value
    assert (error.reason, error.provider) == ("too_many_concurrent_checks", "github")
    assert error.retry_after is not None
    assert error.retry_after >= 1
    assert error.detail == {"in_flight": 3, "limit": 3}
    assert token not in str(error) + repr(error) + caplog.text
    assert held.calls == 4
    assert held.peak == 3


async def test_a_refusal_at_the_limit_is_not_remembered() -> None:
    async with held_server(GitHubProvider(max_concurrent_checks=1)) as (server, held):
        busy = asyncio.create_task(outcome(server.verify(FakeGitHub.well_formed_token())))
        await held.settle(1)
        token = FakeGitHub.well_formed_token()
        with pytest.raises(ProviderUnavailable):
            await server.verify(token)
        held.release()
        await busy
        with pytest.raises(InvalidToken) as caught:
            await server.verify(token)  # asked this time: the 503 was not cached
    assert caught.value.reason == "rejected_by_provider"


async def test_all_sources_together_have_at_most_64_calls_in_flight() -> None:
    providers = [
        UserinfoProvider(
            f"op{i}",
            f"https://op{i}.example.test",
            userinfo_endpoint=f"https://op{i}.example.test/userinfo",
            token_prefixes=(f"op{i}_",),
        )
        for i in range(5)
    ]
    async with held_server(*providers) as (server, held):
        tasks = [
            asyncio.create_task(outcome(server.verify(f"op{i}_{alnum(30)}")))
            for _ in range(16)  # each source's own limit: 16 x 5 = 80
            for i in range(5)
        ]
        await held.settle(64)
        refused = [t.result() for t in tasks if t.done()]
        held.release()
        results = await asyncio.gather(*tasks)
    assert len(refused) == 16
    assert {r.reason for r in refused} == {"too_many_concurrent_checks"}
    assert held.peak == 64
    assert sum(isinstance(r, InvalidToken) for r in results) == 64


async def test_introspection_is_bounded_by_its_own_setting() -> None:
    provider = OIDCProvider(
        "op",
        issuer="https://op.example.test",
        audience="https://api.example.test",
        jwks_uri="https://op.example.test/jwks",
        introspection=Introspection(
            client_id="api",
            client_secret="secret",
            endpoint="https://op.example.test/introspect",
            max_concurrent_checks=2,
        ),
    )
    async with held_server(provider) as (server, held):
        tasks = [asyncio.create_task(outcome(server.verify(alnum(40)))) for _ in range(2)]
        await held.settle(2)
        with pytest.raises(ProviderUnavailable) as caught:
            await server.verify(alnum(40))
        held.release()
        await asyncio.gather(*tasks)
    assert (caught.value.reason, caught.value.provider) == ("too_many_concurrent_checks", "op")
    assert held.peak == 2


async def test_checks_per_second_are_bounded() -> None:
    # 0.2 per second: a bucket of one check, the next one due five seconds later.
    transport = httpx.MockTransport(lambda request: httpx.Response(401))
    server = ResourceServer([GitHubProvider(max_checks_per_second=0.2)], transport=transport)
    with pytest.raises(InvalidToken):
        await server.verify(FakeGitHub.well_formed_token())
    with pytest.raises(ProviderUnavailable) as caught:
        await server.verify(FakeGitHub.well_formed_token())
    assert caught.value.reason == "too_many_checks_per_second"
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 5


def test_the_rate_bucket_refills_and_says_when() -> None:
    now = [100.0]
    limit = CheckLimit("p", 10, 2.0, OutboundBudget(), monotonic=lambda: now[0])
    limit.release(limit.acquire())
    limit.release(limit.acquire())  # a bucket of one second: two checks
    with pytest.raises(ProviderUnavailable) as caught:
        limit.acquire()
    assert caught.value.retry_after == pytest.approx(0.5)
    now[0] += 0.25
    with pytest.raises(ProviderUnavailable) as caught:
        limit.acquire()
    assert caught.value.retry_after == pytest.approx(0.25)
    now[0] += 0.25
    limit.release(limit.acquire())  # one token refilled
    now[0] += 60
    limit.release(limit.acquire())
    limit.release(limit.acquire())  # refilled to the bucket's size, not beyond
    with pytest.raises(ProviderUnavailable):
        limit.acquire()
    assert limit.refused == 3
    assert limit.active == 0


def test_an_unbounded_rate_is_allowed() -> None:
    limit = CheckLimit("p", 2, math.inf, OutboundBudget())
    started = [limit.acquire() for _ in range(2)]
    with pytest.raises(ProviderUnavailable) as caught:
        limit.acquire()
    assert caught.value.reason == "too_many_concurrent_checks"
    for when in started:
        limit.release(when)
    assert limit.active == 0


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "8", None])
def test_max_concurrent_checks_must_be_a_whole_number_of_at_least_one(value: Any) -> None:
    for make in (
        lambda: GitHubProvider(max_concurrent_checks=value),
        lambda: FacebookProvider("1", "s", max_concurrent_checks=value),
        lambda: UserinfoProvider("u", "https://u.test", max_concurrent_checks=value),
        lambda: GoogleProvider("c", max_concurrent_checks=value),
    ):
        with pytest.raises(ConfigurationError) as caught:
            make()
        assert caught.value.reason == "max_concurrent_checks_out_of_range"
        assert "at least 1" in str(caught.value)


@pytest.mark.parametrize("value", [0, -1.0, math.nan, True, "100", None])
def test_max_checks_per_second_must_be_above_zero(value: Any) -> None:
    for make in (
        lambda: GitHubProvider(max_checks_per_second=value),
        lambda: Introspection(client_id="api", client_secret="s", max_checks_per_second=value),
    ):
        with pytest.raises(ConfigurationError) as caught:
            make()
        assert caught.value.reason == "max_checks_per_second_out_of_range"
        assert "above 0" in str(caught.value)


def test_introspection_limits_are_checked_too() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Introspection(client_id="api", client_secret="s", max_concurrent_checks=0)
    assert caught.value.reason == "max_concurrent_checks_out_of_range"


# -- cheap local checks first ------------------------------------------------------------------


def base62_decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + BASE62.index(char)
    return value


@given(st.text(ALNUM, min_size=30, max_size=30))
def test_the_github_checksum_is_the_base62_crc32_of_the_random_part(payload: str) -> None:
    checksum = github_checksum(payload)
    assert len(checksum) == 6
    assert base62_decode(checksum) == zlib.crc32(payload.encode())


@given(
    st.sampled_from(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]),
    st.text(ALNUM, min_size=30, max_size=30),
    st.integers(0, 35),
    st.sampled_from(ALNUM),
)
def test_every_checksummed_github_token_passes_and_every_typo_is_caught(
    prefix: str, payload: str, where: int, replacement: str
) -> None:
    token = prefix + payload + github_checksum(payload)
    assert github_token_plausible(token)
    body = token[4:]
    typo = body[:where] + replacement + body[where + 1 :]
    # CRC32 catches every single-character change.
    assert github_token_plausible(prefix + typo) == (typo == body)


@given(
    st.sampled_from(["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
    st.text(ALNUM + "_.-", min_size=1, max_size=600).filter(
        lambda body: len(body) != 36 or not body.isalnum()
    ),
)
def test_github_token_shapes_without_a_published_checksum_are_left_to_github(
    prefix: str, body: str
) -> None:
    # Fine-grained tokens, GitHub's longer ghs_APPID_JWT installation tokens, and any
    # future shape: only the 40-character checksummed format is checked locally.
    assert github_token_plausible(prefix + body)


@given(st.text(ALNUM + "._-", min_size=1, max_size=2043))
def test_every_google_access_token_within_the_documented_size_passes(body: str) -> None:
    assert google_access_token_plausible("ya29." + body)


async def test_tokens_not_in_their_providers_format_are_refused_without_any_call() -> None:
    github, google, facebook = FakeGitHub(), FakeGoogle(), FakeFacebook()
    genuine_pat = github.issue_token(kind="github_pat")
    providers = [
        GitHubProvider(),
        GoogleProvider(
            "1234567890-fake.apps.googleusercontent.com", tokeninfo_url=google.tokeninfo_url
        ),
        FacebookProvider(facebook.app_id, facebook.app_secret, graph_base=facebook.graph_base),
    ]
    server = ResourceServer(providers, transport=github.transport)  # any call would fail
    bad_checksum = FakeGitHub.well_formed_token("ghp")
    bad_checksum = bad_checksum[:-1] + ("A" if bad_checksum[-1] != "A" else "B")
    cases = {
        bad_checksum: ("github", "malformed_token"),
        "gho_" + alnum(36): ("github", "malformed_token"),  # odds of a valid checksum: 2**-32
        "ya29." + "a" * 2044: ("google", "token_too_large"),  # beyond Google's 2048 bytes
        "ya29.abc~def": ("google", "malformed_token"),
        "ya29.abc/def==": ("google", "malformed_token"),
        "EAA" + alnum(100) + "-x": ("facebook", "malformed_token"),
        "EAA" + alnum(100) + "==": ("facebook", "malformed_token"),
    }
    for token, (provider, reason) in cases.items():
        with pytest.raises(InvalidToken) as caught:
            await server.verify(token)
        assert (caught.value.provider, caught.value.reason) == (provider, reason), token
        assert caught.value.detail  # says what was expected
        assert token not in str(caught.value)
    assert github.requests == []
    assert google.requests == []
    assert facebook.requests == []
    # A token of a documented shape without a checksum goes to GitHub.
    with pytest.raises(InvalidToken) as caught:
        await server.verify(genuine_pat[:-1] + "x")
    assert caught.value.reason == "rejected_by_provider"
    assert len(github.requests) == 1


ELSEWHERE = "https://provider.example.test"


@pytest.mark.parametrize(
    ("provider", "token"),
    [
        (GitHubProvider(api_base=ELSEWHERE, check_token_format=False), "gho_" + "a" * 36),
        (GoogleProvider("c", tokeninfo_url=ELSEWHERE, check_token_format=False), "ya29.a~b"),
        (FacebookProvider("1", "s", graph_base=ELSEWHERE, check_token_format=False), "EAAa-b"),
    ],
    ids=["github", "google", "facebook"],
)
async def test_each_format_check_can_be_switched_off(provider: Any, token: str) -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        return httpx.Response(503)

    server = ResourceServer([provider], transport=httpx.MockTransport(handler))
    with pytest.raises(ProviderUnavailable):
        await server.verify(token)
    assert asked == ["provider.example.test"]


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["ghp", "gho", "ghu", "ghs", "ghr", "github_pat"]))
def test_every_token_the_fake_github_issues_passes_the_local_check(kind: Any) -> None:
    assert github_token_plausible(FakeGitHub().issue_token(kind=kind))
    assert github_token_plausible(FakeGitHub.well_formed_token(kind))
