"""Fixtures of the security suite (``fake_issuer`` comes from the authbridge pytest plugin)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authbridge import AuthBridge
from authbridge.testing import FakeIssuer

from ._support import FakeClock, Upstream


@pytest.fixture(scope="module", autouse=True)
def _cheap_password_hashing(cheap_password_hashing: None) -> None:
    """Attacks on login flows are tested here, not hashing: cheap argon2id (tests/conftest.py)."""


@pytest.fixture(scope="session")
def attacker_key() -> rsa.RSAPrivateKey:
    """An RSA-2048 key no configured issuer publishes."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def second_key() -> rsa.RSAPrivateKey:
    """The signing key of a second, independent issuer."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def upstream(fake_issuer: FakeIssuer) -> Upstream:
    return Upstream(fake_issuer)


@pytest.fixture
def make_auth(fake_issuer: FakeIssuer, clock: FakeClock, upstream: Upstream):
    """``make_auth(**provider_kwargs)`` → an AuthBridge for ``fake_issuer`` on ``upstream``."""

    def factory(*, bridge: dict | None = None, **provider_kwargs) -> AuthBridge:
        # The production default (the test kit's provider() has none): the cooldown is tested here.
        provider_kwargs.setdefault("jwks_cooldown", 30.0)
        return AuthBridge(
            providers=[fake_issuer.provider(**provider_kwargs)],
            transport=upstream.transport,
            clock=clock,
            **(bridge or {}),
        )

    return factory
