"""The Redis fixtures without Redis: skipped with a message, or failed when the services
are required (``AUTHBRIDGE_REQUIRE_POSTGRES=1``, as CI sets it, or
``AUTHBRIDGE_REQUIRE_REDIS=1``); the URL's password is never shown.
"""

from __future__ import annotations

import pytest

import store_support

from ._support import PASSWORD, closed_port


@pytest.fixture
def redis_down(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{closed_port()}/0"
    monkeypatch.setattr(store_support, "REDIS_URL", url)
    store_support.redis_available.cache_clear()
    yield
    store_support.redis_available.cache_clear()


@pytest.mark.usefixtures("redis_down")
@pytest.mark.parametrize("require", [False, True])
def test_without_redis_the_fixtures_skip_or_fail(
    monkeypatch: pytest.MonkeyPatch, require: bool
) -> None:
    monkeypatch.setattr(store_support, "REQUIRE_REDIS", require)
    outcome = pytest.fail.Exception if require else pytest.skip.Exception
    with pytest.raises(outcome) as stopped:
        store_support.require_redis()
    message = str(stopped.value)
    assert message.startswith("Redis is not reachable at 127.0.0.1:")
    assert "(ConnectionError)" in message
    assert ("AUTHBRIDGE_REQUIRE_POSTGRES=1" in message) is require
    assert PASSWORD not in message


def test_the_services_requirement_covers_redis() -> None:
    assert store_support.REQUIRE_REDIS or not store_support.REQUIRE_POSTGRES


def test_prefixes_are_per_test_and_cleaned(redis_prefix: str) -> None:
    import redis  # noqa: PLC0415

    assert redis_prefix.startswith("authbridge-test:")
    assert redis_prefix != store_support.new_redis_prefix()
    client = redis.Redis.from_url(store_support.REDIS_URL)
    try:
        client.set(redis_prefix + "a*b", b"1")
        client.set(redis_prefix + "c", b"2")
        client.set(redis_prefix[:-1] + "-not-mine", b"3")
        assert store_support.delete_redis_prefix(redis_prefix) == 2
        assert client.get(redis_prefix[:-1] + "-not-mine") == b"3"
    finally:
        client.delete(redis_prefix[:-1] + "-not-mine")
        client.close()
