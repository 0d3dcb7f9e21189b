"""Fixtures of the login routes' tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def _cheap_password_hashing(cheap_password_hashing: None) -> None:
    """Login flows are tested here, not hashing: cheap argon2id (tests/conftest.py)."""
