"""The issuer's signing keys: generation, lifecycle from times, instances sharing a store, JWKS.

Every test runs against a real store (a SQLite file, and PostgreSQL where the
server runs; see ``store_support``) with an injected clock. "Two instances" are
two key managers with their own store connections on one database; first
starts racing are real processes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import store_support
from authbridge.errors import StoreUnavailable
from authbridge.issuer import AppIssuer
from authbridge.issuer._kek import new_kek, thumbprint
from authbridge.issuer._keys import KeyManager
from authbridge.jose import import_jwks, parse_compact
from authbridge.jose.keys import PRIVATE_MEMBERS
from authbridge.store import SigningKeyRecord, Store, open_store

ISSUER = "https://api.example.com"
KEK = new_kek()

# The store fixtures (pytest registers the fixtures it finds in a module's namespace).
postgres_database = store_support.postgres_database
postgres_store_url = store_support.postgres_store_url
sqlite_store_url = store_support.sqlite_store_url
store_url = store_support.store_url
DAY = 86400.0


class Clock:
    """A settable clock shared by every key manager of a test."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def sqlite_url(sqlite_store_url: str) -> str:
    return sqlite_store_url


@pytest.fixture
def clock() -> Clock:
    return Clock()


def issuer_config(url: str, **options: Any) -> AppIssuer:
    options.setdefault("key_encryption_key", KEK)
    return AppIssuer(ISSUER, store=url, **options)


class Instance:
    """One app instance's keys: its own store connections, the shared clock."""

    def __init__(self, url: str, clock: Clock, **options: Any) -> None:
        self.config = issuer_config(url, **options)
        self.store: Store = open_store(url)
        self.keys = KeyManager(self.store.keys, config=self.config, clock=clock)

    async def start(self) -> Instance:
        await self.store.start()
        await self.keys.start()
        return self

    async def aclose(self) -> None:
        await self.store.aclose()


@pytest.fixture
async def instances(store_url: str, clock: Clock) -> AsyncIterator[list[Instance]]:
    """Instances made with `make`, closed at the end."""
    made: list[Instance] = []
    yield made
    for instance in made:
        await instance.aclose()


async def make(
    made: list[Instance], url: str, clock: Clock, *, start: bool = True, **options: Any
) -> Instance:
    instance = Instance(url, clock, **options)
    made.append(instance)
    return await instance.start() if start else instance


def header_of(token: str) -> dict[str, Any]:
    return dict(parse_compact(token, max_bytes=16 * 1024).header)


def verify_with_cryptography(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """Verify a compact JWS with the JWKS, by cryptography alone (no authbridge code)."""
    head, body, sig = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    signature = base64.urlsafe_b64decode(sig + "==")
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    data = f"{head}.{body}".encode()

    def number(name: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(jwk[name] + "=="), "big")

    if header["alg"] == "ES256":
        assert len(signature) == 64
        public = ec.EllipticCurvePublicNumbers(number("x"), number("y"), ec.SECP256R1())
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        public.public_key().verify(der, data, ec.ECDSA(hashes.SHA256()))
    elif header["alg"] == "RS256":
        rsa_public = rsa.RSAPublicNumbers(number("e"), number("n")).public_key()
        rsa_public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = base64.urlsafe_b64decode(jwk["x"] + "==")
        ed25519.Ed25519PublicKey.from_public_bytes(raw).verify(signature, data)
    return dict(json.loads(base64.urlsafe_b64decode(body + "==")))


def kids(keys: KeyManager) -> list[str]:
    return [k["kid"] for k in keys.jwks()["keys"]]


# --- generation, signing, the JWKS ---------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "kty", "crv"),
    [("ES256", "EC", "P-256"), ("RS256", "RSA", None), ("EdDSA", "OKP", "Ed25519")],
)
async def test_first_start_generates_one_active_key_of_the_configured_algorithm(
    sqlite_url: str, clock: Clock, alg: str, kty: str, crv: str | None
) -> None:
    made: list[Instance] = []
    try:
        one = await make(made, sqlite_url, clock, signing_algorithm=alg)
        (info,) = await one.keys.describe()
        assert (info.alg, info.state, info.active_from) == (alg, "active", clock.now)
        (jwk,) = one.keys.jwks()["keys"]
        assert (jwk["kty"], jwk.get("crv"), jwk["alg"], jwk["use"]) == (kty, crv, alg, "sig")
        assert jwk["kid"] == info.kid == thumbprint(jwk)
        assert not PRIVATE_MEMBERS & set(jwk)
        token = one.keys.sign({"iss": ISSUER, "sub": "alice", "n": 1}, typ="at+jwt")
        assert header_of(token) == {"alg": alg, "kid": info.kid, "typ": "at+jwt"}
        assert verify_with_cryptography(token, one.keys.jwks()) == {
            "iss": ISSUER,
            "sub": "alice",
            "n": 1,
        }
        # Compact JSON: no spaces anywhere in the payload.
        assert base64.urlsafe_b64decode(token.split(".")[1] + "==") == (
            b'{"iss":"https://api.example.com","sub":"alice","n":1}'
        )
        # A second start on the same store generates nothing.
        two = await make(made, sqlite_url, clock, signing_algorithm=alg)
        assert kids(two.keys) == [info.kid]
    finally:
        for instance in made:
            await instance.aclose()


async def test_jwks_has_public_members_only_for_every_algorithm_and_state(
    instances: list[Instance], store_url: str, clock: Clock
) -> None:
    one = await make(instances, store_url, clock)
    await one.keys.rotate(alg="RS256")  # next
    await one.keys.rotate(immediately=True, alg="EdDSA")  # active; the first retired
    states = sorted(info.state for info in await one.keys.describe())
    assert states == ["active", "next", "retired"]
    jwks = one.keys.jwks()
    assert len(jwks["keys"]) == 3
    for jwk in jwks["keys"]:
        assert not PRIVATE_MEMBERS & set(jwk), jwk
        assert set(jwk) <= {"kty", "crv", "x", "y", "n", "e", "kid", "alg", "use"}
        assert jwk["use"] == "sig"
        assert jwk["alg"] in ("ES256", "RS256", "EdDSA")
        assert jwk["kid"]
    # What the app publishes is a usable JWKS for any verifier.
    assert len(import_jwks(jwks)) == 3
    # And a copy: changing it changes nothing inside.
    jwks["keys"][0]["d"] = "x"
    assert "d" not in one.keys.jwks()["keys"][0]


async def test_jwks_cache_control_is_the_configured_max_age(
    instances: list[Instance], store_url: str, clock: Clock
) -> None:
    one = await make(instances, store_url, clock, jwks_max_age=900.0)
    assert one.keys.jwks_cache_control() == "public, max-age=900"


async def test_sign_before_start_is_a_programming_error(sqlite_url: str, clock: Clock) -> None:
    instance = Instance(sqlite_url, clock)
    with pytest.raises(RuntimeError):
        instance.keys.sign({"iss": ISSUER}, typ="at+jwt")


async def test_many_signatures_all_verify(
    instances: list[Instance], store_url: str, clock: Clock
) -> None:
    """Throughput sanity (the figures are bench/'s): distinct tokens, each one valid."""
    one = await make(instances, store_url, clock)
    jwks = one.keys.jwks()
    tokens = {
        one.keys.sign({"iss": ISSUER, "jti": str(i), "exp": clock.now + 600}, typ="at+jwt")
        for i in range(2000)
    }
    assert len(tokens) == 2000
    for token in list(tokens)[:50]:
        verify_with_cryptography(token, jwks)


# --- the lifecycle, from times ----------------------------------------------------------------


async def test_scheduled_rotation_publishes_ahead_switches_on_time_and_retires_then_deletes(
    instances: list[Instance], store_url: str, clock: Clock
) -> None:
    one = await make(
        instances,
        store_url,
        clock,
        key_rotation_interval=10 * DAY,
        jwks_max_age=3600.0,
        access_token_ttl=600.0,
    )
    keys = one.keys
    (first,) = kids(keys)
    clock.advance(10 * DAY - 1)
    await keys.maybe_refresh()
    assert kids(keys) == [first]  # not old enough yet

    clock.advance(1 + keys.refresh_interval)
    await keys.maybe_refresh()
    assert len(kids(keys)) == 2  # the next key, published now
    second = kids(keys)[1]
    published_at = clock.now
    (nxt,) = [i for i in await keys.describe() if i.kid == second]
    assert nxt.state == "next"
    assert nxt.active_from - published_at >= 3600.0  # at least one JWKS max-age ahead
    assert header_of(keys.sign({}, typ="at+jwt"))["kid"] == first

    # Still the first key just before the next one's time, the next one at it,
    # without any reload: every instance switches at the same moment.
    clock.now = nxt.active_from - 0.001
    old_token = keys.sign({"exp": int(clock.now) + 600}, typ="at+jwt")
    assert header_of(old_token)["kid"] == first
    clock.now = nxt.active_from
    assert header_of(keys.sign({}, typ="at+jwt"))["kid"] == second

    await keys.refresh()
    retired = {i.kid: i for i in await keys.describe()}
    assert retired[first].state == "retired"
    assert retired[first].retired_at == clock.now
    assert retired[second].state == "active"
    assert retired[first].published_until == clock.now + keys.retention
    assert keys.retention >= 600.0 + 60.0
    # The retired key stays published (its last token verifies) ...
    clock.advance(600.0)  # the old token's expiry
    await keys.refresh()
    assert first in kids(keys)
    verify_with_cryptography(old_token, keys.jwks())
    # ... until its last token expired, with the margin; then it is deleted.
    clock.now = retired[first].published_until - 0.001  # type: ignore[operator]
    await keys.refresh()
    assert first in kids(keys)
    clock.now = retired[first].published_until  # type: ignore[assignment]
    await keys.refresh()
    assert kids(keys) == [second]
    assert [r.kid for r in await one.store.keys.list()] == [second]


async def test_no_scheduled_rotation_with_interval_zero(
    instances: list[Instance], store_url: str, clock: Clock
) -> None:
    one = await make(instances, store_url, clock, key_rotation_interval=0)
    clock.advance(400 * DAY)
    await one.keys.refresh()
    assert len(kids(one.keys)) == 1


async def test_rotate_schedules_once_then_rotate_now_and_revoke(
    instances: list[Instance], store_url: str, clock: Clock
) -> None:
    one = await make(instances, store_url, clock)
    keys = one.keys
    (first,) = kids(keys)
    scheduled = await keys.rotate()
    assert scheduled.state == "next"
    assert scheduled.active_from == clock.now + keys.publish_ahead
    assert (await keys.rotate()).kid == scheduled.kid  # already scheduled: the same key
    assert scheduled.kid in kids(keys)  # published at once by this instance

    with pytest.raises(ValueError, match="immediately"):
        await keys.rotate(revoke_current=True)

    now = await keys.rotate(immediately=True)
    assert (now.state, now.active_from) == ("active", clock.now)
    assert header_of(keys.sign({}, typ="at+jwt"))["kid"] == now.kid
    states = {i.kid: i.state for i in await keys.describe()}
    assert states == {first: "retired", scheduled.kid: "next", now.kid: "active"}

    # The compromised-key case: revoked, gone from the JWKS at once.
    replacement = await keys.rotate(immediately=True, revoke_current=True)
    states = {i.kid: i.state for i in await keys.describe()}
    assert states[now.kid] == "revoked"
    assert states[replacement.kid] == "active"
    assert now.kid not in kids(keys)
    assert now.kid in keys.withdrawn
    assert header_of(keys.sign({}, typ="at+jwt"))["kid"] == replacement.kid


async def test_revoking_the_only_key_makes_a_new_one_at_the_next_reload(
    instances: list[Instance], store_url: str, clock: Clock
) -> None:
    one = await make(instances, store_url, clock)
    (first,) = kids(one.keys)
    revoked = await one.keys.revoke(first)
    assert revoked is not None
    assert revoked.state == "revoked"
    assert await one.keys.revoke("no-such-kid") is None
    assert kids(one.keys) == []
    await one.keys.refresh()
    (second,) = kids(one.keys)
    assert second != first
    assert header_of(one.keys.sign({}, typ="at+jwt"))["kid"] == second


async def test_maybe_refresh_reloads_at_most_once_per_interval_and_survives_a_dead_store(
    instances: list[Instance], store_url: str, clock: Clock
) -> None:
    one = await make(instances, store_url, clock, jwks_max_age=100.0)
    keys = one.keys
    assert keys.refresh_interval == 25.0  # min(60, jwks_max_age / 4)
    assert keys.next_refresh_at == clock.now + 25.0
    calls: list[str] = []
    inner = keys._store

    class Counting:
        down = False

        def __getattr__(self, name: str) -> Any:
            async def call(*args: Any, **kwargs: Any) -> Any:
                calls.append(name)
                if self.down:
                    raise StoreUnavailable("connection_refused")
                return await getattr(inner, name)(*args, **kwargs)

            return call

    counting = Counting()
    keys._store = counting  # type: ignore[assignment]
    await asyncio.gather(*(keys.maybe_refresh() for _ in range(50)))
    assert calls == []
    clock.advance(25.0)
    await asyncio.gather(*(keys.maybe_refresh() for _ in range(50)))
    assert calls == ["list"]  # one reload for all of them

    counting.down = True
    before = kids(keys)
    clock.advance(25.0)
    await keys.maybe_refresh()  # logged, not raised
    assert kids(keys) == before
    keys.sign({}, typ="at+jwt")  # still signs
    assert keys.next_refresh_at == clock.now + 5.0  # retried soon
    with pytest.raises(StoreUnavailable):
        await keys.refresh()


# --- several instances on one store --------------------------------------------------------


async def test_two_instances_agree_on_the_signer_and_publish_every_key(
    instances: list[Instance], store_url: str, clock: Clock
) -> None:
    # Both start on an empty store at once: each may generate a key.
    one, two = await asyncio.gather(
        make(instances, store_url, clock), make(instances, store_url, clock)
    )
    await asyncio.gather(one.keys.refresh(), two.keys.refresh())
    assert one.keys.signer_kid == two.keys.signer_kid is not None
    assert sorted(kids(one.keys)) == sorted(kids(two.keys))
    assert 1 <= len(kids(one.keys)) <= 2


async def test_ties_in_active_from_are_broken_by_kid_everywhere(
    instances: list[Instance], store_url: str, clock: Clock
) -> None:
    one = await make(instances, store_url, clock, start=False)
    await one.store.start()
    from authbridge.issuer._kek import KeyEncryption, new_record  # noqa: PLC0415

    encryption = KeyEncryption([KEK])
    made = [new_record("ES256", encryption, now=clock.now, active_from=clock.now) for _ in range(3)]
    for record in made:
        await one.store.keys.add(record)
    await one.keys.start()
    two = await make(instances, store_url, clock)
    assert one.keys.signer_kid == two.keys.signer_kid == max(r.kid for r in made)


async def test_an_instance_validates_tokens_of_another_after_its_rotation(
    instances: list[Instance], store_url: str, clock: Clock
) -> None:
    one = await make(instances, store_url, clock)
    two = await make(instances, store_url, clock)
    before = one.keys.sign({"n": 1}, typ="at+jwt")
    new = await two.keys.rotate(immediately=True)
    after = two.keys.sign({"n": 2}, typ="at+jwt")
    assert header_of(after)["kid"] == new.kid
    assert new.kid not in kids(one.keys)  # one has not reloaded yet
    await one.keys.refresh()  # what its OwnTokenSource does on the unknown kid
    assert one.keys.signer_kid == new.kid
    for token in (before, after):
        verify_with_cryptography(token, one.keys.jwks())
        verify_with_cryptography(token, two.keys.jwks())


_RACER = """
import asyncio, sys
from authbridge.issuer import AppIssuer
from authbridge.issuer._keys import KeyManager
from authbridge.store import open_store

async def main(url, kek, go):
    store = open_store(url)
    import os, time
    while not os.path.exists(go):
        time.sleep(0.005)
    await store.start()
    keys = KeyManager(store.keys, config=AppIssuer("https://api.example.com", store=url,
                      key_encryption_key=kek), clock=time.time)
    await keys.start()
    print(keys.signer_kid)
    await store.aclose()

asyncio.run(main(*sys.argv[1:]))
"""


def _racers(url: str, tmp_path: Any, count: int) -> Iterator[subprocess.Popen[str]]:
    go = str(tmp_path / "go")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for _ in range(count):
        yield subprocess.Popen(
            [sys.executable, "-c", _RACER, url, KEK, go],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )


async def test_first_starts_racing_in_several_processes_leave_one_agreed_signer(
    store_url: str, tmp_path: Any
) -> None:
    racers = list(_racers(store_url, tmp_path, 3))
    await asyncio.sleep(0.5)  # let them all import and wait at the line
    (tmp_path / "go").write_text("")
    outputs = [await asyncio.to_thread(p.communicate, timeout=60) for p in racers]
    for racer, (_out, err) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, err
    store = open_store(store_url)
    await store.start()
    try:
        records: list[SigningKeyRecord] = list(await store.keys.list())
        assert 1 <= len(records) <= 3
        # Every instance trusts (and a fresh one loads) every key made in the race.
        clock = Clock(max(r.active_from for r in records) + 1)
        keys = KeyManager(store.keys, config=issuer_config(store_url), clock=clock)
        await keys.start()
        assert sorted(kids(keys)) == sorted(r.kid for r in records)
        newest = max(records, key=lambda r: (r.active_from, r.kid))
        assert keys.signer_kid == newest.kid
    finally:
        await store.aclose()


# --- authbridge keys ---------------------------------------------------------------------------


def keys_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    from typer.testing import CliRunner  # noqa: PLC0415

    from authbridge.cli._keys import keys_app  # noqa: PLC0415

    environment = {"AUTHBRIDGE_KEY_ENCRYPTION_KEY": "", **(env or {})}
    result = CliRunner().invoke(keys_app, list(args), env=environment)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def listed(url: str) -> list[dict[str, Any]]:
    result = keys_cli("list", "--json", "--store", url)
    assert result.exit_code == 0, result.stderr
    return list(json.loads(result.stdout))


def test_cli_kek_prints_a_fresh_key_encryption_key() -> None:
    one, two = keys_cli("kek"), keys_cli("kek")
    assert one.exit_code == two.exit_code == 0
    first = one.stdout.strip()
    assert len(base64.urlsafe_b64decode(first + "=")) == 32
    assert first != two.stdout.strip()
    assert "AUTHBRIDGE_KEY_ENCRYPTION_KEY" in one.stderr


def test_cli_rotate_needs_a_kek_outside_development_mode(store_url: str) -> None:
    result = keys_cli("rotate", "--now", "--store", store_url)
    assert result.exit_code == 2
    assert "key_encryption_key_required" in result.stderr
    assert "authbridge keys kek" in result.stderr
    assert listed(store_url) == []
    bad = keys_cli("rotate", "--store", store_url, env={"AUTHBRIDGE_KEY_ENCRYPTION_KEY": "x" * 40})
    assert bad.exit_code == 2
    assert "invalid_key_encryption_key" in bad.stderr
    assert "x" * 40 not in bad.stderr
    dev = keys_cli("rotate", "--now", "--development", "--store", store_url)
    assert dev.exit_code == 0, dev.stderr
    assert [k["kek_id"] for k in listed(store_url)] == ["none"]


def test_cli_list_rotate_revoke(store_url: str) -> None:
    env = {"AUTHBRIDGE_KEY_ENCRYPTION_KEY": KEK}
    assert keys_cli("list", "--store", store_url).exit_code == 0
    first = keys_cli("rotate", "--now", "--store", store_url, env=env)
    assert first.exit_code == 0, first.stderr
    (active,) = listed(store_url)
    assert active["state"] == "active"
    assert active["kid"] in first.stdout

    scheduled = keys_cli(
        "rotate", "--alg", "RS256", "--jwks-max-age", "600", "--store", store_url, env=env
    )
    assert scheduled.exit_code == 0, scheduled.stderr
    again = keys_cli("rotate", "--alg", "RS256", "--store", store_url, env=env)
    assert "already scheduled" in again.stdout
    states = {k["kid"]: (k["state"], k["alg"]) for k in listed(store_url)}
    assert sorted(states.values()) == [("active", "ES256"), ("next", "RS256")]
    (nxt,) = [k for k in listed(store_url) if k["state"] == "next"]
    assert nxt["active_from"] - nxt["created_at"] >= 600

    usage = keys_cli("rotate", "--revoke-current", "--store", store_url, env=env)
    assert usage.exit_code == 2
    assert "--now" in usage.stderr
    replaced = keys_cli(
        "rotate", "--now", "--revoke-current", "--alg", "EdDSA", "--store", store_url, env=env
    )
    assert replaced.exit_code == 0, replaced.stderr
    assert f"Revoked signing key {active['kid']}" in replaced.stdout
    by_kid = {k["kid"]: k for k in listed(store_url)}
    assert by_kid[active["kid"]]["state"] == "revoked"
    assert by_kid[nxt["kid"]]["state"] == "next"

    # A key id is base64url: one in 64 starts with "-", and is still a key id, not an option.
    dashed = keys_cli("revoke", "-ZCwhuR9RIe6_PMd9HCodC8pH7JiCQDmLC-z9T0vkuE", "--store", store_url)
    assert dashed.exit_code == 1, dashed.stderr
    assert "no signing key with the id '-ZCwhuR9RIe6_PMd9HCodC8pH7JiCQDmLC-z9T0vkuE'" in (
        dashed.stderr
    )

    table = keys_cli("list", "--store", store_url).stdout
    assert table.splitlines()[0].split()[:3] == ["KID", "ALG", "STATE"]
    assert len(table.splitlines()) == 4

    assert keys_cli("revoke", nxt["kid"], "--store", store_url).exit_code == 0
    assert {k["kid"]: k["state"] for k in listed(store_url)}[nxt["kid"]] == "revoked"
    missing = keys_cli("revoke", "no-such-kid", "--store", store_url)
    assert missing.exit_code == 1

    # Nothing printed is key material; no field of the listing is.
    everything = first.stdout + scheduled.stdout + replaced.stdout + table
    assert KEK not in everything
    for entry in listed(store_url):
        assert set(entry) == {
            "kid", "alg", "state", "kek_id", "created_at", "active_from", "retired_at",
            "revoked_at", "published_until",
        }  # fmt: skip
