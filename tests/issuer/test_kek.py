"""Private signing keys at rest: AES-256-GCM under key-encryption keys (SECURITY-CASES §11).

Against a real store (SQLite file, PostgreSQL): what is in the table is read
back raw, changed behind the issuer's back, and the issuer must refuse it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import store_support
from authbridge.errors import ConfigurationError
from authbridge.issuer import AppIssuer
from authbridge.issuer._config import KEK_ENV
from authbridge.issuer._kek import (
    UNENCRYPTED,
    KeyEncryption,
    UndecryptableKey,
    kek_id,
    new_kek,
    new_record,
    open_record,
)
from authbridge.issuer._keys import KeyManager
from authbridge.store import SigningKeyRecord, Store, open_store

postgres_database = store_support.postgres_database
postgres_store_url = store_support.postgres_store_url
sqlite_store_url = store_support.sqlite_store_url
store_url = store_support.store_url

ISSUER = "https://api.example.com"
OLD, NEW, STRANGER = new_kek(), new_kek(), new_kek()


def _id(kek: str) -> str:
    return kek_id(base64.urlsafe_b64decode(kek + "="))


@pytest.fixture(autouse=True)
def _no_kek_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEK_ENV, raising=False)


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


async def started(
    url: str, *, clock: Clock | None = None, **options: Any
) -> tuple[Store, KeyManager]:
    """A started store and key manager (the store is closed by the caller)."""
    store = open_store(url)
    await store.start()
    config = AppIssuer(ISSUER, store=url, **options)
    keys = KeyManager(store.keys, config=config, clock=clock or Clock())
    try:
        await keys.start()
    except BaseException:
        await store.aclose()
        raise
    return store, keys


async def refused(url: str, **options: Any) -> ConfigurationError:
    try:
        store, _ = await started(url, **options)
    except ConfigurationError as exc:
        return exc
    await store.aclose()
    pytest.fail("the key manager started")


async def raw_rows(url: str) -> list[dict[str, Any]]:
    """The signing-key table as the database holds it."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT * FROM authbridge_signing_keys"))
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


async def replace(store: Store, record: SigningKeyRecord, **changes: Any) -> SigningKeyRecord:
    """Change a stored record behind the issuer's back."""
    changed = dataclasses.replace(record, **changes)
    await store.keys.delete(record.kid)
    await store.keys.add(changed)
    return changed


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- the encryption itself ------------------------------------------------------------------


def test_a_new_kek_is_base64url_of_32_random_bytes() -> None:
    made = {new_kek() for _ in range(20)}
    assert len(made) == 20
    for kek in made:
        assert len(kek) == 43
        assert set(kek) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert len(base64.urlsafe_b64decode(kek + "=")) == 32


def test_round_trip_with_kid_as_associated_data_and_a_fresh_nonce() -> None:
    encryption = KeyEncryption([OLD])
    assert encryption.current_id == _id(OLD)
    assert (
        encryption.current_id
        == hashlib.sha256(base64.urlsafe_b64decode(OLD + "=")).hexdigest()[:16]
    )
    one, kek = encryption.encrypt("kid-1", b"secret key bytes")
    two, _ = encryption.encrypt("kid-1", b"secret key bytes")
    assert kek == _id(OLD)
    assert one != two  # a random nonce each time
    assert b"secret key bytes" not in one
    assert encryption.decrypt("kid-1", one, kek) == b"secret key bytes"
    with pytest.raises(UndecryptableKey, match="signing_key_decryption_failed"):
        encryption.decrypt("kid-2", one, kek)  # moved to another record


@pytest.mark.parametrize("index", [0, 11, 12, 20, -16, -1])
def test_any_changed_byte_is_refused(index: int) -> None:
    """Nonce (0, 11), ciphertext (12, 20), tag (-16, -1)."""
    encryption = KeyEncryption([OLD])
    sealed, kek = encryption.encrypt("kid", b"x" * 40)
    with pytest.raises(UndecryptableKey, match="signing_key_decryption_failed"):
        encryption.decrypt("kid", flip(sealed, index % len(sealed)), kek)
    with pytest.raises(UndecryptableKey, match="signing_key_decryption_failed"):
        encryption.decrypt("kid", sealed[:20], kek)


def test_first_kek_encrypts_every_kek_decrypts() -> None:
    old_sealed, old_id = KeyEncryption([OLD]).encrypt("kid", b"old")
    both = KeyEncryption([NEW, OLD])
    assert both.decrypt("kid", old_sealed, old_id) == b"old"
    new_sealed, new_id = both.encrypt("kid", b"new")
    assert new_id == _id(NEW)
    with pytest.raises(UndecryptableKey, match="unknown_key_encryption_key"):
        KeyEncryption([OLD]).decrypt("kid", new_sealed, new_id)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "short",
        base64.urlsafe_b64encode(b"k" * 31).decode(),
        base64.urlsafe_b64encode(b"k" * 33).decode(),
        base64.b64encode(b"\xfb\xff" * 16).decode(),  # standard alphabet: + and /
        OLD[:-1] + "é",
        OLD[:20] + " " + OLD[20:],
        OLD + OLD,
    ],
    # the same in every process (OLD is random)
    ids=[
        "empty",
        "short",
        "31-bytes",
        "33-bytes",
        "standard-alphabet",
        "non-ascii",
        "space",
        "twice",
    ],
)
async def test_a_malformed_kek_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        KeyEncryption([NEW, value])
    assert info.value.reason == "invalid_key_encryption_key"
    assert "#2" in str(info.value)
    assert "authbridge keys kek" in str(info.value)
    if value:
        assert value not in str(info.value)
    assert NEW not in str(info.value)
    config = AppIssuer(ISSUER, key_encryption_key=value, development=True)
    keys = KeyManager(open_store("sqlite+aiosqlite:///:memory:").keys, config=config, clock=Clock())
    with pytest.raises(ConfigurationError, match="invalid_key_encryption_key"):
        await keys.check_configuration()


async def test_the_kek_may_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, sqlite_store_url: str
) -> None:
    monkeypatch.setenv(KEK_ENV, f"{NEW}, {OLD}")
    store, keys = await started(sqlite_store_url)
    try:
        (info,) = await keys.describe()
        assert info.kek_id == _id(NEW)
    finally:
        await store.aclose()


# --- in the store ---------------------------------------------------------------------------


async def test_the_private_key_is_never_in_the_table_in_plain_text(store_url: str) -> None:
    store, _ = await started(store_url, key_encryption_key=OLD)
    try:
        (record,) = await store.keys.list()
        private = open_record(record, KeyEncryption([OLD]), development=False)
    finally:
        await store.aclose()
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    scalar = private.private_numbers().private_value.to_bytes(32, "big")
    (row,) = await raw_rows(store_url)
    stored = bytes(row["private_key"])
    assert row["kek_id"] == _id(OLD)
    for secret in (der, scalar, base64.urlsafe_b64encode(scalar).rstrip(b"=")):
        assert secret not in stored
        assert secret.hex() not in str(row)
    assert '"d"' not in row["public_jwk"]
    assert len(stored) == 12 + len(der) + 16  # nonce, ciphertext, tag


async def test_a_key_under_an_unknown_kek_refuses_the_start_naming_only_its_kek_id(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store, _ = await started(store_url, key_encryption_key=OLD)
    await store.aclose()
    error = await refused(store_url, key_encryption_key=STRANGER)
    assert error.reason == "unknown_key_encryption_key"
    assert _id(OLD) in str(error)
    for secret in (OLD, STRANGER):
        assert secret not in str(error)
        assert secret not in caplog.text


async def test_kek_rotation_old_kek_second_in_the_list(store_url: str) -> None:
    store, keys = await started(store_url, key_encryption_key=OLD)
    (first,) = await keys.describe()
    await store.aclose()

    store, keys = await started(store_url, key_encryption_key=[NEW, OLD])
    try:
        assert keys.signer_kid == first.kid  # the old key still signs
        keys.sign({"iss": ISSUER}, typ="at+jwt")
        added = await keys.rotate(immediately=True)
        assert added.kek_id == _id(NEW)
        assert {i.kid: i.kek_id for i in await keys.describe()} == {
            first.kid: _id(OLD),
            added.kid: _id(NEW),
        }
    finally:
        await store.aclose()
    # The old KEK is needed as long as a key encrypted under it is kept.
    error = await refused(store_url, key_encryption_key=NEW)
    assert error.reason == "unknown_key_encryption_key"
    assert _id(OLD) in str(error)


@pytest.mark.parametrize("index", [0, 30, -1])
async def test_a_changed_ciphertext_refuses_the_start_and_is_dropped_by_a_running_instance(
    store_url: str, caplog: pytest.LogCaptureFixture, index: int
) -> None:
    store, running = await started(store_url, key_encryption_key=OLD)
    try:
        (record,) = await store.keys.list()
        await running.rotate()  # a second, next key that stays intact
        await replace(store, record, private_key=flip(record.private_key, index % 60))
        error = await refused(store_url, key_encryption_key=OLD)
        assert error.reason == "signing_key_decryption_failed"
        assert record.kid in str(error)

        with caplog.at_level(logging.ERROR, logger="authbridge.issuer"):
            await running.refresh()
        assert record.kid not in [k["kid"] for k in running.jwks()["keys"]]
        assert not running.keyset.has_kid(record.kid)
        assert "signing_key_decryption_failed" in caplog.text
    finally:
        await store.aclose()


async def test_someone_who_can_write_the_table_cannot_plant_a_key(store_url: str) -> None:
    store, _ = await started(store_url, key_encryption_key=OLD)
    try:
        (ours,) = await store.keys.list()
        theirs = new_record(
            "ES256", KeyEncryption([STRANGER]), now=ours.created_at, active_from=ours.active_from
        )
        # Their public key under our kid, with our ciphertext: the key does not match.
        await replace(store, ours, public_jwk=theirs.public_jwk)
        assert (await refused(store_url, key_encryption_key=OLD)).reason == (
            "public_key_does_not_match"
        )
        # Our ciphertext under their kid: the associated data does not match.
        await store.keys.delete(ours.kid)
        await store.keys.add(
            dataclasses.replace(theirs, private_key=ours.private_key, kek_id=ours.kek_id)
        )
        assert (await refused(store_url, key_encryption_key=OLD)).reason == (
            "signing_key_decryption_failed"
        )
    finally:
        await store.aclose()


# --- production and development mode --------------------------------------------------------


async def test_production_without_a_kek_is_refused_with_how_to_make_one(
    sqlite_store_url: str,
) -> None:
    config = AppIssuer(ISSUER, store=sqlite_store_url)
    assert not config.development
    keys = KeyManager(open_store(sqlite_store_url).keys, config=config, clock=Clock())
    with pytest.raises(ConfigurationError) as info:
        await keys.check_configuration()
    assert info.value.reason == "key_encryption_key_required"
    assert "authbridge keys kek" in str(info.value)
    assert KEK_ENV in str(info.value)
    assert (await refused(sqlite_store_url)).reason == "key_encryption_key_required"


async def test_development_without_a_kek_stores_plain_keys_with_a_warning_production_refuses_them(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="authbridge.issuer"):
        store, keys = await started(store_url, development=True)
        await keys.check_configuration()
        await keys.refresh()
    try:
        warnings = [r for r in caplog.records if "unencrypted" in r.getMessage()]
        assert len(warnings) == 1
        assert "AUTHBRIDGE_KEY_ENCRYPTION_KEY" in warnings[0].getMessage()
        (record,) = await store.keys.list()
        assert record.kek_id == UNENCRYPTED
        serialization.load_der_private_key(record.private_key, password=None)  # the DER as it is

        # Production (with a KEK now) refuses to start on it, and says how to fix it.
        error = await refused(store_url, key_encryption_key=OLD)
        assert error.reason == "unencrypted_signing_key"
        assert record.kid in str(error)
        assert f"authbridge keys revoke {record.kid}" in str(error)
        # A KEK in development mode: new keys are encrypted, old plain ones still load.
        dev_store, dev_keys = await started(store_url, key_encryption_key=OLD, development=True)
        try:
            added = await dev_keys.rotate(immediately=True)
            assert added.kek_id == _id(OLD)
            assert await dev_keys.revoke(record.kid) is not None
        finally:
            await dev_store.aclose()
    finally:
        await store.aclose()
    # Once the plain key is revoked, production starts.
    prod_store, prod_keys = await started(store_url, key_encryption_key=OLD)
    try:
        assert prod_keys.signer_kid == added.kid
        assert record.kid not in [k["kid"] for k in prod_keys.jwks()["keys"]]
    finally:
        await prod_store.aclose()


async def test_a_running_production_instance_does_not_trust_a_plain_key_added_later(
    sqlite_store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store, prod = await started(sqlite_store_url, key_encryption_key=OLD)
    try:
        plain = new_record("ES256", KeyEncryption([]), now=Clock().now, active_from=Clock().now + 1)
        await store.keys.add(plain)
        await prod.refresh()
        assert not prod.keyset.has_kid(plain.kid)
        assert "unencrypted_signing_key" in caplog.text
    finally:
        await store.aclose()


async def test_an_instance_missing_the_new_kek_keeps_signing_with_a_key_it_can_use(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A rolling deploy done in the wrong order: one instance has NEW first, one lacks it."""
    clock = Clock()
    old_store, lagging = await started(store_url, clock=clock, key_encryption_key=OLD)
    new_store, ahead = await started(store_url, clock=clock, key_encryption_key=[NEW, OLD])
    try:
        first = lagging.signer_kid
        clock.now += 10
        added = await ahead.rotate(immediately=True)
        await lagging.refresh()
        assert lagging.signer_kid == first  # retired, still published: its tokens verify
        assert not lagging.keyset.has_kid(added.kid)  # not trusted: it cannot decrypt it
        assert f"The active signing key {added.kid} cannot be used here" in caplog.text
        assert ahead.keyset.has_kid(first)
        lagging.sign({"iss": ISSUER}, typ="at+jwt")
    finally:
        await old_store.aclose()
        await new_store.aclose()
