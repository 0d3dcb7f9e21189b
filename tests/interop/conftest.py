"""Fixtures running the real OpenID Provider ``oidc-provider`` on 127.0.0.1.

* ``oidc_provider`` (session): one provider with the default configuration (two resources,
  a client-credentials client, public PKCE clients incl. Swagger UI's, users alice/bob) and one
  RSA key.
* ``oidc_provider_factory`` (function): ``factory(config=None, **overrides) -> OidcProvider``
  starts a private provider (e.g. short token lifetimes, key rotation); stopped after the test.
* ``op_signing_key`` (session): the private JWK the session provider signs with.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from .op import (
    OidcProvider,
    OidcProviderConfig,
    OidcProviderFactory,
    default_config,
    ensure_oidc_provider_installed,
    generate_rsa_jwk,
)


def _require_node() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        message = f"interop tests need Node.js ({', '.join(missing)} not on PATH)"
        if os.environ.get("AUTHBRIDGE_REQUIRE_INTEROP") == "1":
            # scripts/test installs Node.js: a missing one there is a failure, not a skip.
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def oidc_provider_install_dir() -> Path:
    """Where oidc-provider is installed (once per machine, shared by test workers)."""
    _require_node()
    return ensure_oidc_provider_installed()


@pytest.fixture(scope="session")
def op_signing_key() -> dict[str, Any]:
    """The private RSA JWK (RS256) of the session-scoped provider."""
    return generate_rsa_jwk()


@pytest.fixture(scope="session")
def oidc_provider(
    oidc_provider_install_dir: Path,
    op_signing_key: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OidcProvider]:
    """A provider shared by the whole session; do not restart or reconfigure it."""
    provider = OidcProvider(
        tmp_path_factory.mktemp("oidc-provider"), install_dir=oidc_provider_install_dir
    )
    with provider:
        provider.start(default_config([op_signing_key]))
        yield provider


@pytest.fixture
def oidc_provider_factory(
    oidc_provider_install_dir: Path, tmp_path: Path
) -> Iterator[OidcProviderFactory]:
    """Start private providers: ``factory(config=None, **overrides)``.

    ``config`` defaults to :func:`default_config` with a fresh key; ``overrides`` are
    :class:`OidcProviderConfig` fields applied on top (e.g. ``access_token_ttl=2`` sets every
    resource's lifetime too). Every provider started here is stopped after the test.
    """
    started: list[OidcProvider] = []

    def factory(config: OidcProviderConfig | None = None, **overrides: Any) -> OidcProvider:
        base = config or default_config()
        ttl = overrides.pop("access_token_ttl", None)
        if ttl is not None:
            base = base.with_ttl(ttl)
        if overrides:
            base = base.replace(**overrides)
        provider = OidcProvider(
            tmp_path / f"op-{len(started)}", install_dir=oidc_provider_install_dir
        )
        started.append(provider)
        return provider.start(base)

    try:
        yield factory
    finally:
        for provider in reversed(started):
            provider.stop()


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    """An event loop in a background thread; ``portal.call(coro_fn, ...)`` runs in it."""
    with start_blocking_portal() as running:
        yield running
