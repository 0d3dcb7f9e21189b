"""Issuing delegated tokens in-process: what a robot's token for a user costs.

An ``IssuerRuntime`` (ES256, the default) on a fresh PostgreSQL database (the store of a
deployment with several instances) and on a SQLite file, with a confidential robot client
(``client_secret_basic``, token exchange only: no refresh family) and accounts. Each figure
is the median over repeats of the mean per call, calls awaited one after the other in one
coroutine (no HTTP):

* ``create``: ``runtime.delegations.create(user, actor=robot, scopes=["items:read"], ...)``,
  what ``POST /me/delegations`` runs: the checks, the robot client (kept in memory by the
  runtime) and the account read, the count of the user's active delegations, the record's
  insert, and the robot's access token
  (with ``act`` and ``did``) minted. ``delegation_issue_us`` is this, on PostgreSQL. The
  accounts take turns so that none reaches ``max_delegations_per_user``;
* ``exchange``: ``runtime.token(...)`` of an RFC 8693 exchange by the robot of the user's
  access token under an active delegation: client authentication, the subject token
  verified (signature and the revocation lookups), the account and the user's delegations
  read, a token minted. Nothing is written;
* ``mint_delegated`` and ``mint``: ``runtime.mint_access_token`` with and without the
  ``act`` and ``did`` claims (claims, JSON, base64url, signature; no store).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from bench import scale_pg
from bench.common import b64url_decode, median, settle
from bench.token_servers import new_kek

ROBOT = "bench-robot"
ROBOT_SECRET = "abcs_bench-robot-secret-not-a-real-one-0123456789"  # a fixed bench credential
ISSUER = "https://issuer.bench.test"
RESOURCE = "https://api.bench.test"
SCOPES = ("items:read", "items:write")
USERS = 40  # turns: each account holds at most 50 active delegations
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


class _NoResolver:
    """Provider tokens are not part of this benchmark: the app's own never reach it."""

    async def resolve(self, subject_token: str, subject_token_type: str) -> Any:
        raise AssertionError("the app's own token was handed to the provider-token resolver")


async def _time(
    call: Callable[[], Awaitable[Any]], iterations: int, repeats: int
) -> dict[str, float]:
    for _ in range(max(10, iterations // 10)):  # warm up
        await call()
    means: list[float] = []
    for _ in range(repeats):
        settle()
        start = perf_counter_ns()
        for _ in range(iterations):
            await call()
        means.append((perf_counter_ns() - start) / iterations / 1000)
    return {"us": round(median(means), 1), "min_us": round(min(means), 1)}


async def _measure(store_url: str, iterations: int, repeats: int) -> dict[str, Any]:
    from authbridge.issuer import AppIssuer, IssuerRuntime, TokenRequest  # noqa: PLC0415
    from authbridge.issuer._secrets import hash_secret  # noqa: PLC0415
    from authbridge.jose import parse_compact  # noqa: PLC0415
    from authbridge.store import ClientRecord, UserRecord  # noqa: PLC0415

    config = AppIssuer(
        ISSUER,
        store=store_url,
        scopes=list(SCOPES),
        audience=RESOURCE,
        key_encryption_key=new_kek(),
    )
    runtime = IssuerRuntime(config, time.time)
    await runtime.start()
    try:
        runtime.subject_tokens = _NoResolver()  # type: ignore[assignment]
        now = time.time()
        await runtime.store.clients.add(
            ClientRecord(
                client_id=ROBOT,
                name="benchmark robot",
                auth_method="client_secret_basic",
                secret_hash=hash_secret(ROBOT_SECRET, "client_secret"),
                grant_types=frozenset({TOKEN_EXCHANGE}),
                scopes=frozenset(SCOPES),
                created_at=now,
            )
        )
        for i in range(USERS):
            await runtime.store.users.add(
                UserRecord(
                    id=f"user-{i:04d}",
                    username=f"user{i:04d}",
                    scopes=frozenset(SCOPES),
                    created_at=now,
                )
            )

        async def principal(user: str) -> Any:
            token, _ = runtime.mint_access_token(
                subject=user, client_id="web", scopes=frozenset(SCOPES), audiences=(RESOURCE,)
            )
            parsed = parse_compact(token, max_bytes=16384)
            return token, (await runtime.source.verify_jwt(parsed, len(token))).principal

        users = [await principal(f"user-{i:04d}") for i in range(USERS)]
        turn = 0

        async def create() -> None:
            nonlocal turn
            _, user = users[turn % USERS]
            turn += 1
            await runtime.delegations.create(
                user, actor=ROBOT, scopes=["items:read"], audience=None, expires_in=3600.0
            )

        # Every account's delegations, minus the turns the timing takes, stay under 50.
        calls = max(10, iterations // 10) + iterations * repeats
        if calls > USERS * 45:
            msg = f"at most {USERS * 45} delegations: lower the iterations"
            raise ValueError(msg)
        created = await _time(create, iterations, repeats)

        subject_token, _ = users[0]
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": ACCESS,
            "scope": "items:read",
        }
        raw = f"{ROBOT}:{ROBOT_SECRET}".encode()
        request = TokenRequest(form, authorization="Basic " + base64.b64encode(raw).decode())
        answer = await runtime.token(request)
        if b'"act"' not in b64url_decode(answer["access_token"].split(".")[1]):
            raise RuntimeError("the exchanged token has no act claim")

        async def exchange() -> None:
            await runtime.token(request)

        exchanged = await _time(exchange, iterations, repeats)

        extra = {"act": {"sub": ROBOT, "client_id": ROBOT}, "did": "dlg_" + "x" * 22}
        read = frozenset({"items:read"})

        async def mint_delegated() -> None:
            runtime.mint_access_token(
                subject="user-0000", client_id=ROBOT, scopes=read, audiences=(RESOURCE,),
                extra=extra, lifetime=3600.0,
            )  # fmt: skip

        async def mint() -> None:
            runtime.mint_access_token(
                subject="user-0000", client_id=ROBOT, scopes=read, audiences=(RESOURCE,)
            )

        mint_iterations = iterations * 10
        return {
            "create": created,
            "exchange": exchanged,
            "mint_delegated": await _time(mint_delegated, mint_iterations, repeats),
            "mint": await _time(mint, mint_iterations, repeats),
            "iterations_per_repeat": iterations,
            "mint_iterations_per_repeat": mint_iterations,
            "repeats": repeats,
            "token_bytes": len(answer["access_token"]),
        }
    finally:
        await runtime.aclose()


def run(iterations: int, repeats: int, workdir: Path, pg: scale_pg.Cluster) -> dict[str, Any]:
    """Both stores; the headline is PostgreSQL's ``create``."""
    results: dict[str, Any] = {"algorithm": "ES256"}
    with contextlib.ExitStack() as stack:
        stores = {
            "sqlite": f"sqlite+aiosqlite:///{workdir / 'delegation.db'}",
            "postgres": stack.enter_context(scale_pg.database(pg)),
        }
        for name, url in stores.items():
            found = asyncio.run(_measure(url, iterations, repeats))
            results[name] = found
            print(
                f"  delegation ({name}): create {found['create']['us']} us, exchange "
                f"{found['exchange']['us']} us, mint {found['mint_delegated']['us']} us "
                f"(without act {found['mint']['us']} us)",
                flush=True,
            )
    results["issue_us"] = results["postgres"]["create"]["us"]
    return results
