"""Interoperability tests against real OAuth 2.0 / OpenID Connect servers on 127.0.0.1."""
