"""A JWKS server for model tests of the key cache: keys published at will, outages on demand.

Shared by the outage model (`test_jwks_outages.py`) and the clock-step model
(`test_clock_steps.py`).
"""

from __future__ import annotations

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.conftest import FakeClock

from authbridge.testing import FakeIssuer

DISCOVERY = "/.well-known/openid-configuration"


def make_signers() -> list[FakeIssuer]:
    """Three keys of one issuer (kids k0, k1, k2)."""
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]
    return [FakeIssuer(key=key, kid=f"k{i}") for i, key in enumerate(keys)]


class KeyServer:
    """Discovery, and a JWKS publishing some of the signers' keys (k0 at first), maybe failing."""

    def __init__(self, signers: list[FakeIssuer], clock: FakeClock) -> None:
        self.signers = signers
        self.clock = clock
        self.published = {0}
        self.ever_published = {0}
        self.up = True
        # Every JWKS request: (fake time, usable, the kids it published). An empty key
        # set is a failed attempt too (no usable key): 503, like an outage.
        self.attempts: list[tuple[float, bool, frozenset[int]]] = []
        self.transport = httpx.MockTransport(self._handle)

    def publish(self, index: int) -> None:
        """Publish signer ``index``'s key from now on."""
        self.published.add(index)
        self.ever_published.add(index)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == DISCOVERY:
            return httpx.Response(200, json=self.signers[0].discovery_document())
        usable = self.up and bool(self.published)
        self.attempts.append((self.clock(), usable, frozenset(self.published)))
        if not self.up:
            raise httpx.ConnectError("refused")
        keys = [self.signers[i].jwks()["keys"][0] for i in sorted(self.published)]
        return httpx.Response(200, json={"keys": keys})
