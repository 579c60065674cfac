"""Measure one hostile POST: time, the server's peak RSS, the answer's size, /healthz.

    python -m tests.measure_post [empty-infos|xml-empty-infos|polygon] [parallel]

The gateway (`create_app(config, background=False)` with the sample configuration)
serves in a child process on loopback, on a redis-server started here (persistence
off). This process posts the body (`parallel` copies at once) while it asks /healthz
every 50 ms, and reads the child's peak resident size (VmHWM) from /proc before and
after. Not a test: a tool for the figures in the commit messages of issue 10, item 8.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from gateway.redis_server import EmbeddedRedis, free_port
from tests import alerts as A

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
SERVER = """
import asyncio, logging, sys
from aiohttp import web
from gateway.app import create_app
from gateway.config import load_config

async def main():
    logging.getLogger("warngate").setLevel(logging.ERROR)
    cfg = load_config(sys.argv[1], redis={"url": sys.argv[2], "prefix": "measure"})
    runner = web.AppRunner(create_app(cfg, background=False))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[3])).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def body(kind: str) -> tuple[bytes, str]:
    if kind == "empty-infos":
        return b'{"info":[' + b",".join([b"{}"] * ((MIB - 12) // 3)) + b"]}", "application/json"
    if kind == "xml-empty-infos":
        xml = b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
        return xml + b"<info/>" * ((MIB - 100) // 7) + b"</alert>", "application/cap+xml"
    if kind == "polygon":  # valid: one polygon of 45,000 points around Changji City
        n = 45_000
        ring = [
            f"{44.0 + 0.05 * math.sin(2 * math.pi * i / n):.6f},"
            f"{87.3 + 0.05 * math.cos(2 * math.pi * i / n):.6f}"
            for i in range(n)
        ]
        return orjson.dumps(A.alert(polygon=" ".join([*ring, ring[0]]))), "application/json"
    raise SystemExit(f"unknown body {kind!r}")


def peak_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return -1


async def measure(port: int, pid: int, data: bytes, content_type: str, parallel: int) -> None:
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {A.MET}", "Content-Type": content_type}
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(f"{url}/healthz") as resp:
            await resp.read()
        before = peak_mib(pid)
        probes: list[float] = []
        done = asyncio.Event()

        async def probe() -> None:
            while not done.is_set():
                started = time.perf_counter()
                async with session.get(f"{url}/healthz") as resp:
                    await resp.read()
                probes.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)

        async def post() -> tuple[int, int]:
            async with session.post(f"{url}/api/v1/alerts", data=data, headers=headers) as r:
                return r.status, len(await r.read())

        prober = asyncio.create_task(probe())
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        results = await asyncio.gather(*(post() for _ in range(parallel)))
        elapsed = time.perf_counter() - started
        done.set()
        await prober
    print(f"{parallel} x {len(data):,} bytes: {[s for s, _ in results]} in {elapsed:.2f} s")
    print(f"answer {results[0][1]:,} bytes; server peak RSS {before} -> {peak_mib(pid)} MiB")
    print(f"/healthz meanwhile: {len(probes)} answers, slowest {max(probes):.3f} s")


def main(argv: list[str]) -> None:
    kind = argv[0] if argv else "empty-infos"
    parallel = int(argv[1]) if len(argv) > 1 else 1
    data, content_type = body(kind)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp), persistent=False) as redis:
        port = free_port()
        child = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(ROOT / "config"), redis.url, str(port)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            assert child.stdout is not None
            child.stdout.readline()
            asyncio.run(measure(port, child.pid, data, content_type, parallel))
        finally:
            child.terminate()
            child.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
