"""Public test kit: a fake issuer that serves discovery + JWKS and mints tokens.

Use it to test routes protected by authbridge without any real provider:

```python
from authbridge import AuthBridge
from authbridge.testing import FakeIssuer

fake = FakeIssuer()
auth = AuthBridge(providers=[fake.provider()], transport=fake.transport)
token = fake.token(subject="alice", scopes=["items:read"])
```

The pytest plugin (registered automatically) provides the ``fake_issuer``
fixture. See ``docs/testing.md``.
"""

from ._issuer import BadTokens, FakeIssuer, ServedFakeIssuer, sign_jwt
from ._providers import (
    FakeAPI,
    FakeFacebook,
    FakeGitHub,
    FakeGoogle,
    FakeUserinfo,
    RecordedRequest,
    combined_transport,
)

__all__ = [
    "BadTokens",
    "FakeAPI",
    "FakeFacebook",
    "FakeGitHub",
    "FakeGoogle",
    "FakeIssuer",
    "FakeUserinfo",
    "RecordedRequest",
    "ServedFakeIssuer",
    "combined_transport",
    "sign_jwt",
]
