"""Fixtures of the multi-instance tests: the upstream provider and the three instances.

``cluster`` (one per package run, and per xdist worker that runs these tests): instances
``A``, ``B`` and ``C`` of ``multi.app`` on one fresh PostgreSQL database (+ Redis with a
prefix of this run, see `support.STORE_MODE`), started in parallel. Tests that kill or
stop something start instances of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authbridge.testing import FakeIssuer, ServedFakeIssuer

from .flows import LOCAL_PASSWORD, UPSTREAM_PASSWORD
from .harness import SECRETS, Browser, Cluster, assert_no_secret
from .support import RATE_LIMITED_PASSWORD, open_cluster

NAMES = ("A", "B", "C")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # With --dist loadgroup, every test of this package runs on one worker (one cluster).
    here = Path(__file__).parent
    xdist = config.pluginmanager.hasplugin("xdist")
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.slow)
            if xdist:
                item.add_marker(pytest.mark.xdist_group("multi"))


@pytest.fixture(scope="package")
def fake_issuer() -> Iterator[ServedFakeIssuer]:
    """The upstream login provider, served on a loopback port by this process."""
    with FakeIssuer.serve() as issuer:
        yield issuer


@pytest.fixture(scope="package")
def cluster(
    fake_issuer: ServedFakeIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Instances A, B and C of the app, sharing one store."""
    with open_cluster(fake_issuer, tmp_path_factory.mktemp("multi-logs"), NAMES) as started:
        yield started
    # Whatever the tests did, no instance logged a token, code, cookie or secret.
    known = {
        *SECRETS,
        started.config["kek"],
        started.config["provider"]["client_secret"],
        started.robot_secret,
        LOCAL_PASSWORD,
        UPSTREAM_PASSWORD,
        RATE_LIMITED_PASSWORD,
    }
    assert_no_secret(started.logs(), known)


@pytest.fixture
def browser(cluster: Cluster) -> Iterator[Browser]:
    """A fresh user agent spreading its requests over A, B and C."""
    with Browser(cluster, NAMES) as agent:
        yield agent
