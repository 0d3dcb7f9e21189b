"""PasswordHasher: argon2id through pwdlib, off the event loop, bounded, cancellation-safe."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pwdlib.hashers.argon2 import Argon2Hasher

from authbridge.issuer import OAuthError
from authbridge.issuer._passwords import (
    MAX_PASSWORD_BYTES,
    PasswordHasher,
    PasswordTooLong,
    hash_password,
    normalize_username,
    password_bytes,
)

CHEAP = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


def cheap() -> Argon2Hasher:
    return Argon2Hasher(**CHEAP)


class GatedHasher(Argon2Hasher):
    """A cheap argon2id hasher whose verifications wait for a gate (in the worker thread)."""

    def __init__(self) -> None:
        super().__init__(**CHEAP)
        self.gate = threading.Event()
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def verify(self, password: str | bytes, hash: str | bytes) -> bool:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            assert self.gate.wait(30)
            return super().verify(password, hash)
        finally:
            with self._lock:
                self.running -= 1


def test_usernames_are_normalised() -> None:
    assert normalize_username("  Alice ") == "alice"
    assert normalize_username("ALICE") == "alice"
    assert normalize_username("\uff41\uff4c\uff49\uff43\uff45") == "alice"  # fullwidth
    assert normalize_username("Stra\u00dfe") == "strasse"
    assert normalize_username("e\u0301") == "\u00e9"  # composed
    assert normalize_username("\u3000bob\u3000") == "bob"  # ideographic spaces
    assert normalize_username("   ") == ""


def test_password_bytes_bound() -> None:
    assert password_bytes("é" * (MAX_PASSWORD_BYTES // 2)) == "é".encode() * 512
    with pytest.raises(PasswordTooLong):
        password_bytes("é" * (MAX_PASSWORD_BYTES // 2) + "x")
    with pytest.raises(PasswordTooLong):
        password_bytes("x" * (MAX_PASSWORD_BYTES + 1))
    with pytest.raises(PasswordTooLong):
        password_bytes("lone \ud800 surrogate")
    # The message never holds the password.
    with pytest.raises(PasswordTooLong) as caught:
        password_bytes("secret-" * 200)
    assert "secret" not in str(caught.value)


async def test_hash_and_verify() -> None:
    hasher = PasswordHasher(hasher=cheap())
    stored = await hasher.hash("correct horse")
    assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert await hasher.verify("correct horse", stored) == (True, None)
    assert await hasher.verify("wrong horse", stored) == (False, None)
    assert await hasher.verify("correct horse", None) == (False, None)
    assert await hasher.verify("correct horse", "not a hash") == (False, None)
    assert await hasher.verify("correct horse", "$argon2id$v=19$m=1024,t=1,p=1$broken") == (
        False,
        None,
    )
    with pytest.raises(PasswordTooLong):
        await hasher.verify("x" * 2000, stored)
    with pytest.raises(PasswordTooLong):
        await hasher.hash("x" * 2000)


async def test_default_parameters_are_argon2id() -> None:
    stored = hash_password("pw")
    assert stored.startswith("$argon2id$")
    assert await PasswordHasher().verify("pw", stored) == (True, None)


async def test_rehash_when_parameters_change() -> None:
    old = hash_password("pw", hasher=Argon2Hasher(time_cost=2, memory_cost=2048, parallelism=1))
    ok, new = await PasswordHasher(hasher=cheap()).verify("pw", old)
    assert ok
    assert new is not None
    assert new.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert await PasswordHasher(hasher=cheap()).verify("pw", new) == (True, None)
    # A wrong password gets no replacement hash.
    assert await PasswordHasher(hasher=cheap()).verify("other", old) == (False, None)


async def test_unknown_account_costs_one_hash_of_the_same_parameters() -> None:
    """The dummy is made once, with the hasher's own parameters, and verified against."""
    gated = GatedHasher()
    gated.gate.set()
    hasher = PasswordHasher(hasher=gated)
    await hasher.verify("pw", None)
    dummy = hasher._dummy
    assert dummy is not None
    assert dummy.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    before = gated.most_running
    await hasher.verify("pw", None)
    assert hasher._dummy == dummy  # made once
    assert before == 1


async def test_hashing_runs_in_worker_threads() -> None:
    seen: list[str] = []

    class Recording(Argon2Hasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            seen.append(threading.current_thread().name)
            return super().hash(password, salt=salt)

    hasher = PasswordHasher(hasher=Recording(**CHEAP))
    await hasher.hash("pw")
    assert seen
    assert seen[0].startswith("authbridge-passwords")
    assert seen[0] != threading.main_thread().name
    hasher.close()
    hasher.close()


async def test_bounded_with_fast_refusal_beyond_the_waiting_places() -> None:
    gated = GatedHasher()
    hasher = PasswordHasher(max_concurrent=2, max_waiting=3, hasher=gated)
    stored = hash_password("pw", hasher=cheap())
    tasks = [asyncio.create_task(hasher.verify("pw", stored)) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert hasher.waiting == 3
    # Beyond 2 running and 3 waiting: refused at once, while the gate is still closed.
    with pytest.raises(OAuthError) as caught:
        await hasher.verify("pw", stored)
    error = caught.value
    assert (error.status, error.error, error.reason) == (
        503,
        "temporarily_unavailable",
        "password_hashing_busy",
    )
    assert error.retry_after == 1
    assert "pw" not in str(error.body())
    gated.gate.set()
    assert await asyncio.gather(*tasks) == [(True, None)] * 5
    assert gated.most_running == 2
    assert hasher.waiting == 0


async def test_no_waiting_places() -> None:
    gated = GatedHasher()
    hasher = PasswordHasher(max_concurrent=1, max_waiting=0, hasher=gated)
    running = asyncio.create_task(hasher.verify("pw", None))
    await asyncio.sleep(0.05)
    with pytest.raises(OAuthError):
        await hasher.verify("pw", None)
    gated.gate.set()
    assert await running == (False, None)


async def test_cancelled_caller_keeps_its_slot_until_the_thread_ends() -> None:
    gated = GatedHasher()
    hasher = PasswordHasher(max_concurrent=1, max_waiting=1, hasher=gated)
    running = asyncio.create_task(hasher.verify("pw", None))
    await asyncio.sleep(0.05)
    assert gated.running == 1
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    # The thread still computes: the slot is still taken, so a second call waits ...
    second = asyncio.create_task(hasher.verify("pw", None))
    await asyncio.sleep(0.05)
    assert hasher.waiting == 1
    assert gated.running == 1
    # ... and gets it once the cancelled caller's thread is done.
    gated.gate.set()
    assert await second == (False, None)
    assert gated.most_running == 1


async def test_cancelled_waiter_gives_back_its_place() -> None:
    gated = GatedHasher()
    hasher = PasswordHasher(max_concurrent=1, max_waiting=1, hasher=gated)
    running = asyncio.create_task(hasher.verify("pw", None))
    await asyncio.sleep(0.05)
    waiter = asyncio.create_task(hasher.verify("pw", None))
    await asyncio.sleep(0.05)
    assert hasher.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert hasher.waiting == 0
    # The freed place takes a new waiter instead of a refusal.
    again = asyncio.create_task(hasher.verify("pw", None))
    await asyncio.sleep(0.05)
    assert hasher.waiting == 1
    gated.gate.set()
    assert await running == (False, None)
    assert await again == (False, None)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        PasswordHasher(max_concurrent=0)
    with pytest.raises(ValueError, match="max_waiting"):
        PasswordHasher(max_waiting=-1)
