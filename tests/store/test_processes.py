"""Several processes on one SQLite file: each race has exactly one winner across processes.

Four worker processes start together (a barrier file), each with its own
store on the same file, and each runs the same contested calls concurrently.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from authbridge.store import RefreshFamily, RefreshTokenRecord, SQLStore
from store_support import run_async

NOW = 1_900_000_000.0
PROCESSES = 4
CALLS_PER_PROCESS = 10

WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from authbridge.store import RefreshTokenRecord, SQLStore

    url, go, name = sys.argv[1:4]
    now, calls = float(sys.argv[4]), int(sys.argv[5])

    async def main():
        store = SQLStore(url)   # migrate=True: every worker runs the (no-op) upgrade at once
        await store.start()
        open(go + "." + name, "w").close()   # ready
        while not os.path.exists(go):
            await asyncio.sleep(0.005)
        takes = await asyncio.gather(*(
            store.one_time.take("code", "c", now=now) for _ in range(calls)
        ))
        advances = await asyncio.gather(*(
            store.refresh.advance("f", from_generation=0, now=now,
                token=RefreshTokenRecord(f"{name}-{i}", "f", 1, now, now + 60))
            for i in range(calls)
        ))
        firsts = await asyncio.gather(*(
            store.replay.first_use("jti", expires_at=now + 60, now=now) for _ in range(calls)
        ))
        hits = await asyncio.gather(*(
            store.rate_limits.hit("k", window=60, now=now) for _ in range(calls)
        ))
        await store.aclose()
        print(json.dumps({
            "takes": [t.decode() if t else None for t in takes],
            "advances": advances, "firsts": firsts, "hits": [h[0] for h in hits],
        }))

    asyncio.run(main())
    """
)


async def _prepare(url: str) -> None:
    setup = SQLStore(url)
    await setup.start()
    await setup.one_time.put("code", "c", b"the code", expires_at=NOW + 60)
    await setup.refresh.create(
        RefreshFamily("f", "app", "u1", frozenset(), ("https://api",), NOW, NOW + 3600),
        RefreshTokenRecord("g0", "f", 0, NOW, NOW + 60),
    )
    await setup.aclose()


async def _generation(url: str) -> int:
    check = SQLStore(url, migrate=False)
    await check.start()
    try:
        found = await check.refresh.find("g0")
        assert found is not None
        return found[1].generation
    finally:
        await check.aclose()


def test_processes_race_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    run_async(lambda: _prepare(url))

    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(go), f"p{n}", str(NOW), str(CALLS_PER_PROCESS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    # every worker connected and upgraded: the barrier releases them together
    while not all((tmp_path / f"go.p{n}").exists() for n in range(PROCESSES)):
        assert all(worker.poll() is None for worker in workers), "a worker died early"
        time.sleep(0.01)
    go.touch()
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        outputs.append(json.loads(out))

    takes = [t for o in outputs for t in o["takes"]]
    assert takes.count("the code") == 1
    assert takes.count(None) == PROCESSES * CALLS_PER_PROCESS - 1
    assert sum(a for o in outputs for a in o["advances"]) == 1
    assert sum(f for o in outputs for f in o["firsts"]) == 1
    hits = sorted(h for o in outputs for h in o["hits"])
    assert hits == list(range(1, PROCESSES * CALLS_PER_PROCESS + 1))
    assert run_async(lambda: _generation(url)) == 1
