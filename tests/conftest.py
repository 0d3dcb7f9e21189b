"""Shared fixtures for authbridge's own tests (the public kit's fixtures come from its plugin).

The suite runs in parallel (``pytest -n 2 --dist loadgroup``, pytest-xdist) as well as in one
process, so every test keeps to names of its own (``tmp_path``, free ports, random database
names and key prefixes) and the parametrized ids are the same in every process. Tests that share
a heavy fixture run in one worker: every test under ``tests/browser`` is in the ``browser``
group, every test under ``tests/interop`` in the ``interop`` group (`XDIST_GROUPS`), so each
session- or module-scoped provider, app server and browser is started once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

XDIST_GROUPS = {"browser": TESTS / "browser", "interop": TESTS / "interop"}
"""The pytest-xdist group (``--dist loadgroup``) of every test under each directory."""

CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
"""argon2id at its cheapest (one pass over 1 MiB, one lane): for tests of login flows."""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist appends the group to the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for group, directory in XDIST_GROUPS.items():
            if item.path.is_relative_to(directory):
                item.add_marker(pytest.mark.xdist_group(group))


class FakeClock:
    """A settable clock: ``clock()`` returns the current fake time."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def cheap_password_hashing() -> Iterator[None]:
    """Password hashers made in this module hash with `CHEAP_ARGON2` by default.

    For modules testing login flows, not password hashing (tests/issuer/test_passwords.py
    tests that, with the real parameters): pwdlib's default argon2id (64 MiB, three passes, four
    lanes) takes about half a second of both cores per hash, and a login flow hashes two or
    three times. Hashes of other parameters still verify, as in production. Module-scoped, so
    apps that module-scoped fixtures start use it too; undone after the module.
    """
    from pwdlib.hashers.argon2 import Argon2Hasher  # noqa: PLC0415 - only where used

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            "authbridge.issuer._passwords._default_hasher", lambda: Argon2Hasher(**CHEAP_ARGON2)
        )
        yield
