"""A signing key rotated from the command line is used by every instance, with no refusal.

While a stream of requests runs (each turn: a token minted on each instance, each token
validated on every instance, an old token validated too, and every instance's JWKS read),
``authbridge keys rotate --now`` changes the keys in the shared database, then instance A's
runtime schedules the next key (``runtime.keys.rotate()``). No request of the stream is
refused (no 401, no 503); every instance signs with each new key; a scheduled key is in every
instance's JWKS before any instance signs with it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from .flows import ROBOT, bearer, jwt_header
from .harness import Cluster, child_env, remember_secrets, sql
from .support import ISSUER_OPTIONS

NAMES = ("A", "B", "C")
DEADLINE = 15.0
PAUSE = 0.02


@dataclass
class Stream:
    """Tokens minted and validated on every instance, in a thread, until stopped."""

    cluster: Cluster
    old_token: str
    minted: list[tuple[float, str, str]] = field(default_factory=list)  # (at, instance, kid)
    published: dict[str, dict[str, float]] = field(default_factory=dict)  # kid -> name -> at
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="key-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _record(self, what: str, name: str, response: httpx.Response) -> None:
        self.statuses[(what, response.status_code)] += 1
        if response.status_code != 200:
            self.failures.append(f"{what} on {name}: {response.status_code} {response.text[:200]}")

    def _run(self) -> None:
        cluster = self.cluster
        auth = httpx.BasicAuth(ROBOT, cluster.robot_secret)
        with httpx.Client(timeout=10, trust_env=False) as http:
            while not self._stop.is_set():
                for name in NAMES:
                    base = cluster[name].base_url
                    keys = http.get(f"{base}/oauth/jwks")
                    self._record("jwks", name, keys)
                    now = time.time()
                    for key in keys.json().get("keys", []) if keys.status_code == 200 else ():
                        self.published.setdefault(key["kid"], {}).setdefault(name, now)
                    minted = http.post(
                        f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=auth
                    )
                    self._record("mint", name, minted)
                    remember_secrets(minted)
                    if minted.status_code != 200:
                        continue
                    token = minted.json()["access_token"]
                    self.minted.append((time.time(), name, jwt_header(token)["kid"]))
                    for validator in NAMES:
                        url = f"{cluster[validator].base_url}/whoami"
                        self._record("validate", validator, http.get(url, headers=bearer(token)))
                    old = http.get(f"{base}/whoami", headers=bearer(self.old_token))
                    self._record("validate_old", name, old)
                time.sleep(PAUSE)  # a steady stream, not one that takes every core

    def signers_of(self, kid: str) -> dict[str, float]:
        """When each instance first signed with ``kid``."""
        first: dict[str, float] = {}
        for at, name, signed in self.minted:
            if signed == kid:
                first.setdefault(name, at)
        return first

    def wait_until_all_sign(self, kid: str) -> dict[str, float]:
        deadline = time.monotonic() + DEADLINE
        while len(self.signers_of(kid)) < len(NAMES):
            assert time.monotonic() < deadline, f"not every instance signs with {kid}"
            assert self._thread.is_alive()
            time.sleep(0.05)
        return self.signers_of(kid)


def rotate(cluster: Cluster, *flags: str) -> tuple[str, float]:
    """``authbridge keys rotate`` against the shared database; the new key and its start."""
    options = [
        "--jwks-max-age", str(ISSUER_OPTIONS["jwks_max_age"]),
        "--access-token-ttl", str(ISSUER_OPTIONS["access_token_ttl"]),
    ]  # fmt: skip
    before = {row["kid"] for row in keys(cluster)}
    done = subprocess.run(
        [sys.executable, "-m", "authbridge", "keys", "rotate", *flags, *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env=child_env(
            AUTHBRIDGE_STORE=cluster.store_url,
            AUTHBRIDGE_KEY_ENCRYPTION_KEY=cluster.config["kek"],
        ),
    )
    assert done.returncode == 0, done.stderr
    added = [row for row in keys(cluster) if row["kid"] not in before]
    assert len(added) == 1, added
    return added[0]["kid"], float(added[0]["active_from"])


def keys(cluster: Cluster) -> list[dict[str, Any]]:
    return sql(
        cluster.store_url,
        "SELECT kid, active_from, retired_at, revoked_at FROM authbridge_signing_keys "
        "ORDER BY active_from, kid",
    )


def test_keys_rotated_by_the_command_line_and_by_one_instance_sign_and_validate_on_all(
    cluster: Cluster,
) -> None:
    auth = httpx.BasicAuth(ROBOT, cluster.robot_secret)
    old = httpx.post(
        f"{cluster['A'].base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=auth,
        timeout=10,
    )
    assert old.status_code == 200, old.text
    first_kid = jwt_header(old.json()["access_token"])["kid"]
    stream = Stream(cluster, old.json()["access_token"])
    stream.start()
    try:
        time.sleep(0.5)
        immediate, rotated_at = rotate(cluster, "--now")
        signing = stream.wait_until_all_sign(immediate)
        added = httpx.post(f"{cluster['A'].base_url}/test/rotate-key", timeout=10)
        assert added.status_code == 200, added.text
        scheduled, active_from = added.json()["kid"], added.json()["active_from"]
        assert active_from > time.time() + 1  # published ahead, not signing yet
        signed_scheduled = stream.wait_until_all_sign(scheduled)
        time.sleep(0.3)
    finally:
        stream.stop()

    assert stream.failures == []
    assert {what for what, _ in stream.statuses} == {"jwks", "mint", "validate", "validate_old"}
    assert {status for _, status in stream.statuses} == {200}
    assert immediate != first_kid
    # Scheduled: every instance published it before any instance signed with it, and
    # none signed with it before its time.
    first_signature = min(signed_scheduled.values())
    published = stream.published[scheduled]
    assert sorted(published) == sorted(NAMES)
    assert max(published.values()) < first_signature
    assert first_signature >= active_from
    assert all(kid == scheduled for at, _, kid in stream.minted if at > first_signature + 1.0)
    # Every key the stream saw signing is still trusted by every instance.
    stored = {row["kid"]: row for row in keys(cluster)}
    assert all(stored[kid]["revoked_at"] is None for kid in (first_kid, immediate, scheduled))
    print(
        "key rotation:",
        {
            "requests": sum(stream.statuses.values()),
            "by_kind": dict(Counter({w: n for (w, _), n in stream.statuses.items()})),
            "immediate_signing_after_s": {
                n: round(t - rotated_at, 2) for n, t in sorted(signing.items())
            },
            "scheduled_published_before_signing_s": round(
                first_signature - max(published.values()), 2
            ),
            "scheduled_signing_spread_s": round(
                max(signed_scheduled.values()) - first_signature, 2
            ),
        },
    )
