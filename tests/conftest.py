"""Shared fixtures for authbridge's own tests (the public kit's fixtures come from its plugin).

The suite runs in parallel (``pytest -n 2 --dist loadgroup``, pytest-xdist) as well as in one
process, so every test keeps to names of its own (``tmp_path``, free ports, random database
names and key prefixes) and parametrized ids are the same in every process (no random values,
object addresses, set orders or times in them: the workers' collections are compared).

With ``--dist loadgroup`` the workers get work by `DirectoryGroupScheduling`: every test under
a directory of `XDIST_GROUPS` goes to one worker, in order (so the session-, package- and
module-scoped providers, app servers and clusters there start once), and every other module
goes to one worker as a whole (its module-scoped fixtures start once, its tests run in their
order). ``xdist_group`` marks alone do not group tests: pytest-xdist 3.8 cannot attach them to
test ids under pytest 9.2 (pytest-dev/pytest-xdist#1386).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent

XDIST_GROUPS = {
    "browser": TESTS / "browser",
    "interop": TESTS / "interop",
    "multi": TESTS / "multi",
}
"""Directories whose tests all run in one pytest-xdist worker (``--dist loadgroup``)."""

CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
"""argon2id at its cheapest (one pass over 1 MiB, one lane): for tests of login flows."""


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`DirectoryGroupScheduling` for ``--dist loadgroup``; xdist's own for the others."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling  # noqa: PLC0415 - only under xdist

    prefixes = {
        group: directory.relative_to(config.rootpath).as_posix() + "/"
        for group, directory in XDIST_GROUPS.items()
    }

    class DirectoryGroupScheduling(LoadGroupScheduling):
        """Work units: a directory of `XDIST_GROUPS`, an ``@group`` id suffix, or a module."""

        def _split_scope(self, nodeid: str) -> str:
            scope: str = super()._split_scope(nodeid)
            if scope != nodeid:  # an xdist_group suffix (pytest-xdist attaches it again)
                return scope
            for group, prefix in prefixes.items():
                if nodeid.startswith(prefix):
                    return group  # the unit an xdist_group(group) mark would make
            return nodeid.split("::", 1)[0]

    return DirectoryGroupScheduling(config, log)


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
