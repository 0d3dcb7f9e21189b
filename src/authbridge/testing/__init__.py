"""Public test kit: a fake issuer that serves discovery + JWKS and mints tokens.

Use it to test routes protected by authbridge without any real provider:

```python
from authbridge import AuthBridge
from authbridge.testing import FakeIssuer

fake = FakeIssuer()
auth = AuthBridge(providers=[fake.provider()], transport=fake.transport)
token = fake.token(subject="alice", scopes=["items:read"])
```

For an app whose ``AuthBridge`` is built at import time,
``override_auth(app, auth, with_=test_auth)`` swaps all of its dependencies
for those of a test ``AuthBridge`` (and restores them when used as a context
manager).

Each fake also serves its provider's documented login flow (an authorize page,
a token endpoint, the user APIs), in process and on 127.0.0.1 with ``serve()``,
so login routes can be tested and browsers can log in with no network.

The pytest plugin (registered automatically) provides the ``fake_issuer``
fixture. See ``docs/testing.md``.
"""

from ._apple import FakeApple
from ._issuer import BadTokens, FakeIssuer, ServedFakeIssuer, sign_jwt
from ._overrides import AuthOverride, override_auth
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
    "AuthOverride",
    "BadTokens",
    "FakeAPI",
    "FakeApple",
    "FakeFacebook",
    "FakeGitHub",
    "FakeGoogle",
    "FakeIssuer",
    "FakeUserinfo",
    "RecordedRequest",
    "ServedFakeIssuer",
    "combined_transport",
    "override_auth",
    "sign_jwt",
]
