"""The issuer's signing keys: generation, encryption at rest, lifecycle, signing, the JWKS.

Every instance sharing a store sees the same keys and makes the same choices
from their times alone, so instances need no coordination beyond the store:

- the signer is the key with the newest ``active_from`` that has come (ties:
  the greatest ``kid``), neither retired nor revoked;
- a *next* key (``active_from`` ahead) is published at once and signs from
  ``active_from`` on, which every instance reaches at the same moment;
- a key older than the signer is *retired* (by whichever instance notices
  first) and stays published until its last token has expired, then is
  deleted; a *revoked* key leaves the JWKS at once.

Instances reload the keys at least every `KeyManager.refresh_interval`
seconds, and what they must not miss in between is allowed for: a scheduled
key is published for ``jwks_max_age`` plus that interval before it signs,
and a retired key is kept for the access-token lifetime plus that interval
plus a minute of clock skew and verification leeway.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .._clock import Clock
from .._shared import SharedTasks
from ..errors import ConfigurationError, StoreUnavailable
from ..jose import KeySet, VerificationKey
from ..store import SigningKeyRecord, SigningKeyStore
from ._kek import (
    KeyEncryption,
    SigningKeyInfo,
    UndecryptableKey,
    chosen_signer,
    describe_record,
    new_record,
    open_record,
    public_jwk,
)

if TYPE_CHECKING:
    from ._config import AppIssuer, SigningAlgorithm

logger = logging.getLogger("authbridge.issuer")

RETENTION_LEEWAY = 60.0
"""Kept beyond a retired key's last token: verification leeway (30 s) and clock skew."""

_ENCODER = json.JSONEncoder(separators=(",", ":"))
_ECDSA = ec.ECDSA(hashes.SHA256())
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


class _Key:
    """One stored key this instance can use: decrypted, checked, ready to sign."""

    __slots__ = ("alg", "headers", "jwk", "kid", "record", "sign", "verifier")

    sign: Callable[[bytes], bytes]
    """The raw JWS signature of a signing input."""

    def __init__(self, record: SigningKeyRecord, private: Any) -> None:
        self.record = record
        self.kid = record.kid
        self.alg = record.alg
        public = private.public_key()
        self.jwk = {**public_jwk(public), "kid": record.kid, "alg": record.alg, "use": "sig"}
        self.verifier = VerificationKey(
            kid=record.kid, algorithms=frozenset({record.alg}), _key=public
        )
        # typ -> base64url of the JOSE header, built once per key.
        self.headers: dict[str, bytes] = {}
        if record.alg == "ES256":
            sign = private.sign

            def sign_es256(data: bytes) -> bytes:
                # JWS wants r || s at the curve's size (RFC 7518 §3.4), not DER.
                r, s = decode_dss_signature(sign(data, _ECDSA))
                return r.to_bytes(32, "big") + s.to_bytes(32, "big")

            self.sign = sign_es256
        elif record.alg == "RS256":
            sign = private.sign
            self.sign = lambda data: sign(data, _PKCS1, _SHA256)
        else:
            self.sign = private.sign

    def header(self, typ: str) -> bytes:
        found = self.headers.get(typ)
        if found is None:
            header = {"alg": self.alg, "kid": self.kid, "typ": typ}
            found = _b64(_ENCODER.encode(header).encode("ascii"))
            if len(self.headers) < 8:
                self.headers[typ] = found
        return found


class KeyManager:
    """The signing keys of one [AppIssuer][authbridge.AppIssuer], kept in the store.

    Args:
        store: Where the keys are kept (shared by every instance of the app).
        config: The issuer's configuration (algorithm, key-encryption keys,
            development mode, lifetimes, rotation schedule).
        clock: Time source, POSIX seconds.

    Attributes:
        refresh_interval: The longest time between two reloads from the store
            (``min(60, jwks_max_age / 4)`` seconds).
        next_refresh_at: When `maybe_refresh` reloads next; whoever runs the
            app may also call `refresh` on a timer at this time.
    """

    def __init__(self, store: SigningKeyStore, *, config: AppIssuer, clock: Clock) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self.refresh_interval = min(60.0, config.jwks_max_age / 4)
        self.next_refresh_at = -math.inf
        self._encryption: KeyEncryption | None = None
        self._warned_unencrypted = False
        self._records: tuple[SigningKeyRecord, ...] = ()
        self._usable: dict[str, _Key] = {}
        self._published: tuple[_Key, ...] = ()
        self._keyset = KeySet(())
        self._withdrawn: frozenset[str] = frozenset()
        self._signer: _Key | None = None
        self._switch_at = math.inf
        self._reported: set[tuple[str, str]] = set()
        self._refreshing: SharedTasks[None] = SharedTasks()
        self._started = False

    # --- configuration ----------------------------------------------------------------------

    @property
    def publish_ahead(self) -> float:
        """How long a scheduled key is published before it signs.

        The JWKS max-age, so that any copy of the JWKS cached before the key
        appeared has expired when it signs, plus one reload interval, the
        longest another instance may take to start publishing it.
        """
        return self._config.jwks_max_age + self.refresh_interval

    @property
    def retention(self) -> float:
        """How long a retired key stays published after ``retired_at``.

        The access-token lifetime (its last token's), plus one reload interval
        (another instance may sign with it until it reloads), plus
        `RETENTION_LEEWAY`.
        """
        return self._config.access_token_ttl + self.refresh_interval + RETENTION_LEEWAY

    def _kek(self) -> KeyEncryption:
        if self._encryption is None:
            self._encryption = KeyEncryption(self._config.key_encryption_keys)
        return self._encryption

    async def check_configuration(self) -> None:
        """Refuse a configuration that must not start (before the store is opened).

        Raises:
            ConfigurationError: ``invalid_key_encryption_key`` (a KEK is not
                base64url of 32 bytes), ``key_encryption_key_required`` (none
                configured outside development mode).
        """
        encryption = self._kek()
        if encryption.configured:
            return
        if not self._config.development:
            raise ConfigurationError(
                "key_encryption_key_required",
                message="the signing keys are kept encrypted in the store and no "
                "key-encryption key is configured: make one with `authbridge keys kek` and "
                "set it in the environment variable AUTHBRIDGE_KEY_ENCRYPTION_KEY (or pass "
                "AppIssuer(key_encryption_key=...)); only development mode stores keys "
                "unencrypted",
            )
        if not self._warned_unencrypted:
            self._warned_unencrypted = True
            logger.warning(
                "Development mode without a key-encryption key: the issuer's private signing "
                "keys are stored unencrypted; set AUTHBRIDGE_KEY_ENCRYPTION_KEY (make one "
                "with `authbridge keys kek`) before going to production"
            )

    # --- loading ----------------------------------------------------------------------------

    def _open(self, record: SigningKeyRecord) -> _Key:
        """Decrypt and check one record.

        Raises:
            UndecryptableKey: why it cannot be used (safe to log).
        """
        known = self._usable.get(record.kid)
        if (
            known is not None
            and known.record.private_key == record.private_key
            and known.record.kek_id == record.kek_id
            and known.record.public_jwk == record.public_jwk
        ):
            known.record = record  # retired_at / revoked_at may have changed
            return known
        private = open_record(record, self._kek(), development=self._config.development)
        return _Key(record, private)

    def _install(self, records: Sequence[SigningKeyRecord], *, strict: bool) -> None:
        """Make ``records`` (the whole table) the current keys.

        Keys that cannot be used are left out of everything (not published, not
        trusted, never signing): at start (``strict``) that is fatal, later it
        is logged once per key.
        """
        now = self._clock()
        usable: dict[str, _Key] = {}
        for record in records:
            if record.revoked_at is not None:
                continue  # never trusted again: not even decrypted
            try:
                usable[record.kid] = self._open(record)
            except UndecryptableKey as exc:
                reason = exc.args[0]
                if strict:
                    raise _start_refusal(reason, record) from None
                if (record.kid, reason) not in self._reported:
                    self._reported.add((record.kid, reason))
                    logger.error(
                        "Signing key %s (stored under key-encryption key %s) cannot be used "
                        "here and is not trusted: %s",
                        record.kid,
                        record.kek_id,
                        reason,
                    )
        self._records = tuple(records)
        self._usable = usable
        retention = self.retention
        published = tuple(
            sorted(
                (
                    key
                    for key in usable.values()
                    if key.record.retired_at is None or now < key.record.retired_at + retention
                ),
                key=lambda k: (k.record.active_from, k.kid),
            )
        )
        if tuple(k.kid for k in published) != tuple(k.kid for k in self._published):
            # A new identity only when the set changes: it is the cache marker of
            # verified tokens (see OwnTokenSource.cache_marker).
            self._keyset = KeySet(k.verifier for k in published)
        self._published = published
        self._withdrawn = frozenset(r.kid for r in records if r.revoked_at is not None)
        self._choose(now)

    def _choose(self, now: float) -> None:
        """Pick the signer for ``now`` and when to pick again."""
        chosen = chosen_signer(self._records, now)
        signer = self._usable.get(chosen.kid) if chosen is not None else None
        if chosen is not None and signer is None:
            # Not decryptable here (a KEK this instance lacks): sign with the
            # newest key that is, published and already active, until fixed.
            fallback = [
                k for k in self._published if k.record.active_from <= now and k.kid != chosen.kid
            ]
            signer = max(fallback, key=lambda k: (k.record.active_from, k.kid), default=None)
            if (chosen.kid, "signer") not in self._reported:
                self._reported.add((chosen.kid, "signer"))
                logger.error(
                    "The active signing key %s cannot be used here; %s until it is revoked "
                    "(`authbridge keys revoke %s`) or its key-encryption key is configured",
                    chosen.kid,
                    f"signing with {signer.kid}" if signer else "no token can be signed",
                    chosen.kid,
                )
        self._signer = signer
        self._switch_at = min(
            (
                r.active_from
                for r in self._records
                if r.revoked_at is None and r.retired_at is None and r.active_from > now
            ),
            default=math.inf,
        )

    async def _reload(self, *, strict: bool = False) -> None:
        self._install(await self._store.list(), strict=strict)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the keys (generating the first one), and do any due transition.

        Raises:
            ConfigurationError: see `check_configuration`; also
                ``unknown_key_encryption_key`` (a key is stored under a KEK
                not configured here; the message names its ``kek_id`` only),
                ``signing_key_decryption_failed`` (a stored key was changed),
                ``unencrypted_signing_key`` (a key stored without encryption,
                outside development mode).
            StoreUnavailable: the store failed.
        """
        await self.check_configuration()
        await self._reload(strict=True)
        await self._transitions()
        self.next_refresh_at = self._clock() + self.refresh_interval
        self._started = True

    async def refresh(self) -> None:
        """Reload the keys from the store (another instance may have rotated) and
        do any due transition; concurrent calls share one reload.

        Raises:
            StoreUnavailable: the store failed (the keys in memory stay in use).
        """
        await self._refreshing.run(self._refresh_now)

    async def _refresh_now(self) -> None:
        self.next_refresh_at = self._clock() + self.refresh_interval
        await self.check_configuration()
        await self._reload()
        await self._transitions()

    async def maybe_refresh(self) -> None:
        """`refresh` if it is due; cheap otherwise. Call it before signing.

        A failing store is logged and retried after a few seconds; the keys in
        memory stay in use meanwhile.
        """
        if self._clock() < self.next_refresh_at or self._refreshing.running():
            return
        try:
            await self.refresh()
        except StoreUnavailable as exc:
            self.next_refresh_at = self._clock() + min(5.0, self.refresh_interval)
            logger.warning("Signing keys not reloaded, the store is unavailable: %s", exc.reason)

    async def _transitions(self) -> None:
        """Generate, schedule, retire and delete what the times say is due."""
        now = self._clock()
        config = self._config
        changed = False
        chosen = chosen_signer(self._records, now)
        if chosen is None:
            await self._add(config.signing_algorithm, active_from=now)
            changed = True
        else:
            pending = [
                r
                for r in self._records
                if r.revoked_at is None and r.retired_at is None and r.active_from > now
            ]
            interval = config.key_rotation_interval
            if interval and not pending and now - chosen.active_from >= interval:
                await self._add(config.signing_algorithm, active_from=now + self.publish_ahead)
                changed = True
            for record in self._records:
                older = (record.active_from, record.kid) < (chosen.active_from, chosen.kid)
                if older and record.retired_at is None and record.revoked_at is None:
                    changed |= await self._store.retire(record.kid, at=now)
        retention = self.retention
        for record in self._records:
            ended = record.revoked_at if record.revoked_at is not None else record.retired_at
            if ended is not None and now >= ended + retention:
                changed |= await self._store.delete(record.kid)
        if changed:
            await self._reload()

    async def _add(self, alg: SigningAlgorithm, *, active_from: float) -> SigningKeyRecord:
        encryption = self._kek()
        now = self._clock()

        def make() -> SigningKeyRecord:
            return new_record(alg, encryption, now=now, active_from=active_from)

        # RSA generation takes a good fraction of a second: not on the event loop.
        record = await asyncio.to_thread(make)
        await self._store.add(record)
        logger.info(
            "Signing key %s (%s) added, signing from %s", record.kid, alg, _iso(record.active_from)
        )
        return record

    async def rotate(
        self,
        *,
        immediately: bool = False,
        revoke_current: bool = False,
        alg: SigningAlgorithm | None = None,
    ) -> SigningKeyInfo:
        """Add a new signing key.

        Args:
            immediately: Sign with it now instead of after it was published
                for `publish_ahead` seconds. Verifiers that cached the JWKS
                fetch it again on the unknown ``kid``; use it when the current
                key must stop signing at once.
            revoke_current: Also revoke the current signer (a compromised key):
                it leaves the JWKS at once and its tokens are refused. Needs
                ``immediately``.
            alg: The new key's algorithm (the configured one by default).

        Returns:
            The new key (or, without ``immediately``, the next key already
            scheduled with that algorithm, if there is one).

        Raises:
            ConfigurationError: as `check_configuration`.
            ValueError: ``revoke_current`` without ``immediately``.
            StoreUnavailable: the store failed.
        """
        if revoke_current and not immediately:
            raise ValueError("revoke_current needs immediately=True: a key must replace it now")
        await self.check_configuration()
        algorithm: SigningAlgorithm = alg or self._config.signing_algorithm
        if algorithm not in ("ES256", "RS256", "EdDSA"):
            raise ConfigurationError("unsupported_signing_algorithm")
        records = await self._store.list()
        now = self._clock()
        chosen = chosen_signer(records, now)
        if immediately:
            record = await self._add(algorithm, active_from=now)
            for older in records:
                if (
                    older.active_from <= now
                    and older.retired_at is None
                    and older.revoked_at is None
                ):
                    await self._store.retire(older.kid, at=now)
            if revoke_current and chosen is not None:
                await self._store.revoke(chosen.kid, at=now)
                logger.warning("Signing key %s revoked", chosen.kid)
        else:
            pending = [
                r
                for r in records
                if r.revoked_at is None
                and r.retired_at is None
                and r.active_from > now
                and r.alg == algorithm
            ]
            if pending:
                record = max(pending, key=lambda r: (r.active_from, r.kid))
            else:
                record = await self._add(algorithm, active_from=now + self.publish_ahead)
        return await self._after_change(record.kid)

    async def revoke(self, kid: str) -> SigningKeyInfo | None:
        """Withdraw one key at once (it leaves the JWKS, its tokens are refused).

        Revoking the signer without `rotate` first leaves no signing key: each
        instance generates a new one, active at once, when it next reloads.

        Returns:
            The revoked key, or ``None`` if no key has this ``kid``.

        Raises:
            StoreUnavailable: the store failed.
        """
        records = await self._store.list()
        if not any(r.kid == kid for r in records):
            return None
        if await self._store.revoke(kid, at=self._clock()):
            logger.warning("Signing key %s revoked", kid)
        return await self._after_change(kid)

    async def _after_change(self, kid: str) -> SigningKeyInfo:
        records = await self._store.list()
        if self._started:
            self._install(records, strict=False)  # a running instance: at once
        found = next(r for r in records if r.kid == kid)
        return describe_record(found, records, self._clock(), self.retention)

    async def describe(self) -> list[SigningKeyInfo]:
        """Every stored key with its state now, oldest ``active_from`` first.

        Needs no key-encryption key: nothing is decrypted.

        Raises:
            StoreUnavailable: the store failed.
        """
        records = await self._store.list()
        now = self._clock()
        retention = self.retention
        return [
            describe_record(r, records, now, retention)
            for r in sorted(records, key=lambda r: (r.active_from, r.kid))
        ]

    # --- signing and publishing -------------------------------------------------------------

    @property
    def keyset(self) -> KeySet:
        """Every published key, for verification (a new object when the set changes)."""
        return self._keyset

    @property
    def withdrawn(self) -> frozenset[str]:
        """The ``kid`` of every revoked key still in the store."""
        return self._withdrawn

    @property
    def signer_kid(self) -> str | None:
        """The ``kid`` that signs now, or ``None`` before `start`."""
        now = self._clock()
        if now >= self._switch_at:
            self._choose(now)
        return self._signer.kid if self._signer is not None else None

    def sign(self, claims: Mapping[str, Any], *, typ: str) -> str:
        """Sign ``claims`` as a compact JWS with the current key.

        Args:
            claims: The payload (JSON-serialisable).
            typ: The ``typ`` header (``at+jwt`` for access tokens).

        Raises:
            RuntimeError: no key is loaded (`start` was not awaited).
        """
        now = self._clock()
        if now >= self._switch_at:
            self._choose(now)
        signer = self._signer
        if signer is None:
            raise RuntimeError("no signing key loaded: await KeyManager.start() first")
        signing_input = signer.header(typ) + b"." + _b64(_ENCODER.encode(claims).encode("ascii"))
        signature = _b64(signer.sign(signing_input))
        return (signing_input + b"." + signature).decode("ascii")

    def jwks(self) -> dict[str, Any]:
        """The published JWKS: public members, ``kid``, ``alg`` and ``use`` only."""
        return {"keys": [dict(key.jwk) for key in self._published]}

    def jwks_cache_control(self) -> str:
        """The JWKS ``Cache-Control`` header value.

        ``max-age`` is the configured ``jwks_max_age`` as it is: a scheduled
        key is published `publish_ahead` (more than that) before it signs,
        and a retired key stays published as long as its tokens live, so a
        copy cached for ``max-age`` verifies every token signed meanwhile.
        Only an immediate rotation outruns it, and verifiers refetch on the
        unknown ``kid``. A revoked key may linger in caches for ``max-age``:
        the app's own resource server refuses its tokens at once.
        """
        return f"public, max-age={int(self._config.jwks_max_age)}"


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _start_refusal(reason: str, record: SigningKeyRecord) -> ConfigurationError:
    withdraw = (
        f"`authbridge keys revoke {record.kid}` withdraws it (first `authbridge keys rotate "
        "--now` if it is the active key)"
    )
    if reason == "unknown_key_encryption_key":
        message = (
            f"signing key {record.kid} is encrypted under key-encryption key "
            f"{record.kek_id}, which is not configured: add that KEK to "
            f"AUTHBRIDGE_KEY_ENCRYPTION_KEY (after the current one), or {withdraw}"
        )
    elif reason == "unencrypted_signing_key":
        message = (
            f"signing key {record.kid} is stored unencrypted (it was made in development "
            f"mode, without a key-encryption key): {withdraw}"
        )
    else:
        message = (
            f"signing key {record.kid} cannot be used ({reason}): its stored record was "
            f"changed or damaged; {withdraw}"
        )
    return ConfigurationError(reason, message=message)
