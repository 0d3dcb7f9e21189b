"""Local passwords: argon2id through pwdlib, hashed off the event loop with bounded concurrency.

A hash costs tens of milliseconds of CPU and tens of megabytes of memory by
design, so a login storm must neither stall the event loop nor queue unbounded
work: every hash and verification runs in a worker thread of a small pool,
at most ``max_concurrent`` at once, with at most ``max_waiting`` logins
waiting for a slot; any more are refused at once with 503
``temporarily_unavailable``.

An unknown account is verified against a dummy hash made once with the same
parameters, so it costs the same time and gets the same answer as a wrong
password.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar

from pwdlib import PasswordHash
from pwdlib.exceptions import PwdlibError
from pwdlib.hashers import HasherProtocol
from pwdlib.hashers.argon2 import Argon2Hasher

from ._errors import OAuthError

__all__ = [
    "MAX_PASSWORD_BYTES",
    "PasswordHasher",
    "PasswordTooLong",
    "hash_password",
    "normalize_username",
    "password_bytes",
]

MAX_PASSWORD_BYTES = 1024
"""Longest password accepted, in UTF-8 bytes (longer ones are refused before hashing)."""

T = TypeVar("T")

# The dummy hash is of a fixed string: what matters is that verifying against it
# costs what verifying against a real hash of the same parameters costs.
_DUMMY_PASSWORD = b"authbridge dummy password for unknown accounts"


class PasswordTooLong(ValueError):
    """A password longer than `MAX_PASSWORD_BYTES` (or not encodable), refused unhashed."""

    def __init__(self) -> None:
        super().__init__(f"passwords are at most {MAX_PASSWORD_BYTES} bytes of UTF-8")


def normalize_username(username: str) -> str:
    """The form usernames are stored and looked up in: NFKC, case-folded, stripped.

    ``Alice``, ``ALICE``, fullwidth ``alice`` and `` alice `` are one
    account. Case folding can produce text that is no longer NFKC-normal, so
    the result is normalised again (Unicode's NFKC_Casefold, as PRECIS does).
    """
    folded = unicodedata.normalize("NFKC", username).casefold()
    return unicodedata.normalize("NFKC", folded).strip()


def password_bytes(password: str) -> bytes:
    """The password as hashed: its UTF-8 bytes, exactly as typed (no normalisation).

    Raises:
        PasswordTooLong: longer than `MAX_PASSWORD_BYTES`, or not valid
            Unicode text (a lone surrogate).
    """
    if len(password) > MAX_PASSWORD_BYTES:  # cheap bound before encoding
        raise PasswordTooLong
    try:
        data = password.encode("utf-8")
    except UnicodeEncodeError:
        raise PasswordTooLong from None
    if len(data) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong
    return data


def _default_hasher() -> HasherProtocol:
    # pwdlib's defaults: argon2id with argon2-cffi's RFC 9106 "low memory" profile.
    return Argon2Hasher()


def hash_password(password: str, *, hasher: HasherProtocol | None = None) -> str:
    """Hash a password synchronously (for the command line; the app uses `PasswordHasher`).

    Raises:
        PasswordTooLong: see `password_bytes`.
    """
    return PasswordHash((hasher or _default_hasher(),)).hash(password_bytes(password))


def busy() -> OAuthError:
    """The answer when every hashing slot and waiting place is taken."""
    return OAuthError(
        "temporarily_unavailable",
        "The authorization server is busy; retry shortly",
        reason="password_hashing_busy",
        status=503,
        retry_after=1,
    )


class PasswordHasher:
    """Hashes and verifies passwords in worker threads, a bounded number at once.

    Args:
        max_concurrent: Hashes computed at once (each in its own worker
            thread; argon2 releases the GIL while it computes).
        max_waiting: Calls allowed to wait for a slot; beyond, `hash` and
            `verify` raise 503 ``temporarily_unavailable`` at once.
        hasher: The pwdlib hasher (argon2id with pwdlib's parameters by
            default). Stored hashes of other parameters still verify, and a
            successful `verify` returns their replacement.

    A caller cancelled while its hash runs gives its slot back when the
    worker thread finishes, not before: the bound holds for threads, not
    just for callers.
    """

    def __init__(
        self,
        *,
        max_concurrent: int = 2,
        max_waiting: int = 64,
        hasher: HasherProtocol | None = None,
    ) -> None:
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError("max_concurrent is at least 1 and max_waiting at least 0")
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self._hash = PasswordHash((hasher or _default_hasher(),))
        self._slots = asyncio.Semaphore(max_concurrent)
        self._waiting = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Calls waiting for a hashing slot now."""
        return self._waiting

    def close(self) -> None:
        """Stop the worker threads once their current hashes end (idempotent)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def hash(self, password: str) -> str:
        """A new hash of ``password`` with the current parameters.

        Raises:
            PasswordTooLong: see `password_bytes`.
            OAuthError: 503 ``temporarily_unavailable`` when too many wait.
        """
        data = password_bytes(password)
        return await self._run(self._hash.hash, data)

    async def verify(self, password: str, stored_hash: str | None) -> tuple[bool, str | None]:
        """Check ``password`` against ``stored_hash`` (``None``: no such account).

        Returns:
            Whether it matches, and a new hash to store when it matches but was
            made with other parameters (else ``None``). An unknown account, or
            a stored value that is not a hash pwdlib knows, is checked against
            the dummy hash (same time) and does not match.

        Raises:
            PasswordTooLong: see `password_bytes`.
            OAuthError: 503 ``temporarily_unavailable`` when too many wait.
        """
        data = password_bytes(password)
        return await self._run(self._verify, data, stored_hash)

    def _dummy_hash(self) -> str:
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self._hash.hash(_DUMMY_PASSWORD)
            return self._dummy

    def _verify(self, password: bytes, stored_hash: str | None) -> tuple[bool, str | None]:
        # Made on the first verification of any kind, so only the very first
        # login (known account or not) pays for it.
        dummy = self._dummy_hash()
        if stored_hash is not None:
            try:
                return self._hash.verify_and_update(password, stored_hash)
            except PwdlibError:
                pass  # not a hash we know (or malformed): refused, in the dummy's time
        self._hash.verify(password, dummy)
        return False, None

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_concurrent, thread_name_prefix="authbridge-passwords"
            )
        return self._executor

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._slots.locked() and self._waiting >= self.max_waiting:
            raise busy()
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            future = asyncio.get_running_loop().run_in_executor(self._pool(), function, *args)
        except BaseException:
            self._slots.release()
            raise
        # The slot is given back when the thread is done, even if this caller
        # is cancelled meanwhile (shield keeps the future from being cancelled
        # while its thread runs on).
        future.add_done_callback(self._release)
        return await asyncio.shield(future)

    def _release(self, _future: asyncio.Future[Any]) -> None:
        self._slots.release()
