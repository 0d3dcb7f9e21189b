"""pytest plugin of the test kit (registered through the ``pytest11`` entry point).

Fixtures:
    fake_issuer: a fresh [`FakeIssuer`][authbridge.testing.FakeIssuer] per test, sharing
        one RSA key per session (generating keys is the slow part).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ._issuer import FakeIssuer


@pytest.fixture(scope="session")
def authbridge_signing_key() -> rsa.RSAPrivateKey:
    """One RSA-2048 key for the whole session."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fake_issuer(authbridge_signing_key: rsa.RSAPrivateKey) -> FakeIssuer:
    """A [`FakeIssuer`][authbridge.testing.FakeIssuer], in-process (use its ``transport``)."""
    return FakeIssuer(key=authbridge_signing_key)
