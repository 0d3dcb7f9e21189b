"""Several processes on one Redis: each race has exactly one winner across processes.

Three worker processes start together (a barrier file), each with its own
RedisEphemeral (its own pool) on the test's key prefix, warm their pools, then
run the same contested calls concurrently: takes of five values, first uses of
one jti, hits on one counter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from authbridge.store._redis import RedisEphemeral
from store_support import REDIS_URL, run_async

NOW = 1_900_000_000.0
PROCESSES = 3
CALLS_PER_PROCESS = 20
VALUES = 5

WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from authbridge.store._redis import RedisEphemeral

    url, prefix, go, name = sys.argv[1:5]
    now, calls, values = float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])

    async def main():
        ephemeral = RedisEphemeral(url, prefix=prefix)
        await asyncio.gather(*(ephemeral.ping() for _ in range(calls)))  # open the pool
        open(go + "." + name, "w").close()   # ready
        while not os.path.exists(go):
            await asyncio.sleep(0.002)
        takes = await asyncio.gather(*(
            ephemeral.one_time.take("code", f"c{i % values}", now=now) for i in range(calls)
        ))
        firsts = await asyncio.gather(*(
            ephemeral.replay.first_use("jti", expires_at=now + 60, now=now) for _ in range(calls)
        ))
        hits = await asyncio.gather(*(
            ephemeral.rate_limits.hit("k", window=60, now=now) for _ in range(calls)
        ))
        await ephemeral.aclose()
        print(json.dumps({
            "takes": [t.decode() if t else None for t in takes],
            "firsts": firsts, "hits": [h[0] for h in hits],
        }))

    asyncio.run(main())
    """
)


async def _prepare(prefix: str) -> None:
    ephemeral = RedisEphemeral(REDIS_URL, prefix=prefix)
    for i in range(VALUES):
        await ephemeral.one_time.put("code", f"c{i}", f"value {i}".encode(), expires_at=NOW + 60)
    await ephemeral.aclose()


def test_three_processes_race_on_one_redis(tmp_path: Path, redis_prefix: str) -> None:
    run_async(lambda: _prepare(redis_prefix))
    go = str(tmp_path / "go")
    arguments = [str(NOW), str(CALLS_PER_PROCESS), str(VALUES)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, REDIS_URL, redis_prefix, go, str(n), *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{n}").exists() for n in range(PROCESSES)):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(worker.poll() is None for worker in workers), workers[0].communicate()
        time.sleep(0.01)
    Path(go).touch()
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        results.append(json.loads(out))

    takes = [value for result in results for value in result["takes"] if value is not None]
    assert sorted(takes) == [f"value {i}" for i in range(VALUES)]  # each value once, in all
    assert sum(firsts.count(True) for firsts in (r["firsts"] for r in results)) == 1
    hits = sorted(count for result in results for count in result["hits"])
    assert hits == list(range(1, PROCESSES * CALLS_PER_PROCESS + 1))  # every hit its own count
