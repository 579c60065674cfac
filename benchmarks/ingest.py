"""Benchmark: ingest — POST valid JSON alerts, each with a new identifier, to the gateway.

The gateway (`create_app(config, background=False)`: the HTTP API only, no workers)
runs in its own process behind `web.AppRunner` on a loopback port, with our own Redis.
In the same run, a second process serves a bare aiohttp application with one JSON echo
route (read the body, `orjson.loads`, `orjson.dumps`, answer): the ceiling of this
server stack for a body of the same size (the very same alert bytes are echoed).

The load comes from this process: a minimal HTTP/1.1 keep-alive client on asyncio
streams (requests prepared before the clock starts), N connections each sending its
next request when the last answer is read. It is far cheaper per request than
aiohttp's client, so that the client is not what is measured; its CPU time is reported.

    python -m benchmarks.ingest [--quick] [--reps N] [--concurrency 1,32]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import orjson
from aiohttp import web
from redis.asyncio import Redis

from benchmarks.common import (
    AGENCY_KEY,
    SAMPLE,
    Child,
    alert_json,
    bench_config,
    cpu_seconds,
    log,
    percentile,
    redis_server,
    result_doc,
    summarize,
    write_results,
)
from gateway.app import create_app
from gateway.redis_server import free_port

NAME = "ingest"
FULL = {"reps": 5, "requests": {1: 3_000, 32: 20_000}, "warmup": 500}
QUICK = {"reps": 3, "requests": {1: 1_000, 32: 5_000}, "warmup": 300}
BODY_BYTES = 1900  # the 1.9 KB body of DESIGN.md's aiohttp echo ceiling


# -- servers (each in its own process) --------------------------------------------------


def _serve(conn: Connection, kind: str, redis_url: str) -> None:
    async def run() -> None:
        logging.getLogger("warngate").setLevel(logging.ERROR)
        if kind == "gateway":
            config = bench_config(SAMPLE, redis_url)
            app = create_app(config, background=False)
        else:
            app = web.Application()
            app.router.add_post("/echo", _echo)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        conn.send(port)
        await asyncio.Event().wait()

    asyncio.run(run())


async def _echo(request: web.Request) -> web.Response:
    data = orjson.loads(await request.read())
    return web.Response(body=orjson.dumps(data), content_type="application/json")


# -- the client ------------------------------------------------------------------------


def _requests(port: int, path: str, n: int, tag: str) -> list[bytes]:
    """`n` POSTs, each an alert with its own identifier, ready to write."""
    out = []
    for i in range(n):
        body = orjson.dumps(alert_json(f"BENCH-INGEST-{tag}-{i}", pad_to=BODY_BYTES))
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {AGENCY_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def _connection(
    port: int, todo: Iterator[bytes], latencies: list[float], statuses: Counter[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in todo:
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t)
            statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def _load(port: int, requests: list[bytes], concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    todo = iter(requests)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    await asyncio.gather(
        *(_connection(port, todo, latencies, statuses) for _ in range(concurrency))
    )
    wall = time.perf_counter() - t0
    return {
        "requests": len(latencies),
        "wall_s": wall,
        "per_s": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "statuses": {str(k): v for k, v in statuses.items()},
        "client_cpu_s": cpu_seconds() - cpu0,
    }


async def _measure(
    port: int, path: str, pid: int, redis_pid: int | None, n: int, c: int, tag: str, warm: int
) -> dict[str, Any]:
    await _load(port, _requests(port, path, warm, f"{tag}-warm"), c)
    requests = _requests(port, path, n, tag)
    server0 = cpu_seconds(pid)
    redis0 = cpu_seconds(redis_pid) if redis_pid else 0.0
    out = await _load(port, requests, c)
    out["server_cpu_s"] = cpu_seconds(pid) - server0
    out["redis_cpu_s"] = cpu_seconds(redis_pid) - redis0 if redis_pid else 0.0
    return out


async def _flush(url: str) -> None:
    redis = Redis.from_url(url)
    await redis.flushall()
    await redis.aclose()


def run(p: dict[str, Any], concurrencies: list[int]) -> list[dict[str, Any]]:
    runs = []
    with redis_server() as server:
        assert server.process is not None
        gateway = Child(_serve, "gateway", server.url)
        echo = Child(_serve, "echo", server.url)
        try:
            g_port, e_port = gateway.wait_ready(), echo.wait_ready()
            for rep in range(p["reps"]):
                for c in concurrencies:
                    n = p["requests"].get(c, p["requests"][max(p["requests"])])
                    asyncio.run(_flush(server.url))
                    tag = f"{time.time_ns()}-{rep}-{c}"
                    g = asyncio.run(
                        _measure(g_port, "/api/v1/alerts", gateway.pid, server.process.pid,
                                 n, c, tag, p["warmup"])
                    )  # fmt: skip
                    e = asyncio.run(
                        _measure(e_port, "/echo", echo.pid, None, n, c, tag, p["warmup"])
                    )
                    ok = g["statuses"].get("202", 0)
                    assert ok == g["requests"], f"gateway answered {g['statuses']}"
                    runs.append({"rep": rep, "concurrency": c, "gateway": g, "echo": e})
                    log(
                        f"{NAME} rep {rep + 1} c={c}: gateway {g['per_s']:,.0f}/s p50"
                        f" {g['p50_ms']:.2f} ms p99 {g['p99_ms']:.2f} ms | echo"
                        f" {e['per_s']:,.0f}/s p50 {e['p50_ms']:.2f} ms"
                    )
        finally:
            gateway.stop()
            echo.stop()
    return runs


def _summary(runs: list[dict[str, Any]], concurrencies: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in concurrencies:
        rows = [r for r in runs if r["concurrency"] == c]
        for side in ("gateway", "echo"):
            out[f"c{c}_{side}_per_s"] = summarize([r[side]["per_s"] for r in rows], "req/s")
            out[f"c{c}_{side}_p50_ms"] = summarize([r[side]["p50_ms"] for r in rows], "ms")
            out[f"c{c}_{side}_p99_ms"] = summarize([r[side]["p99_ms"] for r in rows], "ms")
            out[f"c{c}_{side}_server_cpu_share"] = summarize(
                [r[side]["server_cpu_s"] / r[side]["wall_s"] for r in rows], "cores"
            )
            out[f"c{c}_{side}_client_cpu_share"] = summarize(
                [r[side]["client_cpu_s"] / r[side]["wall_s"] for r in rows], "cores"
            )
        out[f"c{c}_redis_cpu_share"] = summarize(
            [r["gateway"]["redis_cpu_s"] / r["gateway"]["wall_s"] for r in rows], "cores"
        )
        out[f"c{c}_ratio"] = summarize(
            [r["gateway"]["per_s"] / r["echo"]["per_s"] for r in rows], "x"
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--concurrency", default="1,32", help="comma-separated list")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    p = dict(QUICK if args.quick else FULL)
    if args.reps:
        p["reps"] = args.reps
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    body = len(orjson.dumps(alert_json("BENCH-INGEST-size", pad_to=BODY_BYTES)))
    log(f"{NAME}: body {body} bytes, concurrency {concurrencies}, {p['reps']} reps")
    runs = run(p, concurrencies)
    doc = result_doc(
        NAME,
        sys.argv[1:] if argv is None else argv,
        {**p, "concurrency": concurrencies, "body_bytes": body},
        runs,
        _summary(runs, concurrencies),
    )
    path = write_results(args.out or (f"{NAME}.quick" if args.quick else NAME), doc)
    log(f"{NAME}: wrote {path}")
    return doc


if __name__ == "__main__":
    main()
