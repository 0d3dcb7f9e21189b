"""Fakes of the provider APIs that vouch for opaque (non-JWT) access tokens.

Some providers hand out tokens that a resource server cannot check by itself;
the only way to know who a token belongs to is to ask the provider:

* `FakeGitHub` answers ``GET /user`` like the GitHub REST API, with the
  ``X-OAuth-Scopes`` and ``x-ratelimit-*`` headers.
* `FakeGoogle` answers ``/tokeninfo`` like ``oauth2.googleapis.com``.
* `FakeFacebook` answers ``/debug_token`` (and Graph API batch requests)
  like ``graph.facebook.com``.
* `FakeUserinfo` is an OpenID Connect UserInfo endpoint (OIDC Core 5.3,
  RFC 6750).

Each fake keeps a registry of the tokens it issued (so it can tell an unknown,
revoked or expired token from a good one), answers in process through
`FakeAPI.transport` or over real loopback HTTP through `FakeAPI.serve`,
logs every request it receives in `FakeAPI.requests` (with credentials
redacted, and whether a credential travelled in the URL), and can be told to
misbehave: rate limits, server errors, non-JSON bodies, slow answers.

The shapes follow each provider's public documentation; where the
documentation is silent they follow responses observed in the wild, and the
docstrings say so.
"""

from ._facebook import FakeFacebook
from ._fakeapi import FakeAPI, combined_transport
from ._github import FakeGitHub, GitHubTokenKind
from ._google import FakeGoogle
from ._userinfo import FakeUserinfo
from ._wire import RecordedRequest, TokenState

__all__ = [
    "FakeAPI",
    "FakeFacebook",
    "FakeGitHub",
    "FakeGoogle",
    "FakeUserinfo",
    "GitHubTokenKind",
    "RecordedRequest",
    "TokenState",
    "combined_transport",
]
