"""Benchmark helper: endpoints pulling from the gateway, and a bare aiohttp server.

Used by `benchmarks.fanout` (parts **pull** and **sse**): the gateway serves a directory
whose county holds ~10,000 loudspeakers and screens; client processes keep one long-poll
(`transport="poll"`) or one server-sent-events stream (`transport="sse"`) open per
endpoint (one `aiohttp.ClientSession` with `TCPConnector(limit=0)` each); an alert, an
Update and a Cancel are POSTed and the time until every endpoint has each is recorded.
The same clients then do the same against a bare aiohttp server that holds the same
connections on one `asyncio.Event` and answers with a prepared message (the ceiling).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import math
import os
import random
import resource
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from redis.asyncio import Redis

from benchmarks.common import (
    COUNTY,
    BenchDir,
    Child,
    FakeProvider,
    alert_json,
    bench_config,
    cpu_seconds,
    log,
    new_id,
    percentile,
    post_alert,
    raise_fd_limit,
    redis_server,
    start_pyspy,
)
from gateway.app import create_app
from gateway.keys import CONFIG
from gateway.redis_server import free_port
from gateway.samplegen import device_token
from gateway.store import Keys

__all__ = ["run_pull"]

NAME = "fanout"


def _gateway_child(conn: Connection, p: dict[str, Any]) -> None:
    async def serve() -> None:
        raise_fd_limit()
        errors = _count_log_records()
        extra = {"redis_max_connections": p["max_conn"]} if p.get("max_conn") else {}
        config = bench_config(
            Path(p["dir"]), p["redis_url"], provider_url=p["provider_url"], **extra
        )
        app = create_app(config, workers=1)
        # Parked long-polls of devices that went away would hold a 60 s shutdown.
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        assert app[CONFIG] is config
        conn.send({"port": port, "pid": os.getpid()})
        loop = asyncio.get_running_loop()
        while True:
            msg = await loop.run_in_executor(None, conn.recv)
            if msg == "cpu":
                conn.send({"cpu_s": cpu_seconds(), "log": dict(errors)})
            elif msg == "stop":
                break
        await runner.cleanup()
        conn.send({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})

    asyncio.run(serve())


class _Devices:
    """Pulling devices of one client process, and when each saw which alert.

    They behave as docs/endpoint-protocol.md recommends. Long-poll: `wait=30` with a
    45 s client timeout, ask again at once after an answer. Stream: one GET of
    `/stream`, resumed with `Last-Event-ID` if it ends. After an error, back off 1, 2,
    4 … 60 s plus a random part.
    """

    def __init__(self, port: int, ids: list[str]) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1/endpoints"
        self.ids = ids
        self.cursor: dict[str, str | None] = dict.fromkeys(ids)
        self.seen: dict[str, dict[str, float]] = {}  # alert id → endpoint → time
        self.errors: Counter[str] = Counter()
        self.responses = 0
        self.changed = asyncio.Event()

    async def fetch(self, http: aiohttp.ClientSession, eid: str, wait: float) -> bool:
        params = {"wait": str(wait)}
        cursor = self.cursor[eid]
        if cursor:
            params["since"] = cursor
        headers = {"Authorization": f"Bearer {device_token(eid)}"}
        try:
            async with http.get(
                f"{self.base}/{eid}/messages", params=params, headers=headers,
                timeout=aiohttp.ClientTimeout(total=wait + 15),
            ) as r:  # fmt: skip
                raw = await r.read()
                now = time.time()
                if r.status != 200:
                    self.errors[str(r.status)] += 1
                    return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
            return False
        body = orjson.loads(raw)
        self.responses += 1
        self.cursor[eid] = body["cursor"]
        for m in body["messages"]:
            self.seen.setdefault(m["id"], {}).setdefault(eid, now)
        if body["messages"]:
            self.changed.set()
        return True

    def _saw(self, eid: str, data: bytes, now: float) -> None:
        message = orjson.loads(data)
        self.cursor[eid] = message["seq"]
        self.seen.setdefault(message["id"], {}).setdefault(eid, now)
        self.changed.set()

    async def stream(
        self, http: aiohttp.ClientSession, eid: str, opened: asyncio.Event | None = None
    ) -> bool:
        """One stream until it ends: False after an error, True if the server closed it."""
        headers = {"Authorization": f"Bearer {device_token(eid)}"}
        cursor = self.cursor[eid]
        if cursor:
            headers["Last-Event-ID"] = cursor
        try:
            async with http.get(
                f"{self.base}/{eid}/stream", headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=90),
            ) as r:  # fmt: skip
                if r.status != 200:
                    self.errors[str(r.status)] += 1
                    return False
                if opened is not None:
                    opened.set()
                self.responses += 1
                data = b""
                async for line in r.content:
                    if line.startswith(b"data:"):
                        data = line[5:].strip()
                    elif line in (b"\n", b"\r\n") and data:
                        self._saw(eid, data, time.time())
                        data = b""
            return True
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
            return False

    async def stream_forever(
        self, http: aiohttp.ClientSession, eid: str, opened: asyncio.Event
    ) -> None:
        backoff = 1.0
        while True:
            if await self.stream(http, eid, opened):
                backoff = 1.0
                continue
            await asyncio.sleep(backoff + random.uniform(0, backoff))
            backoff = min(backoff * 2, 60.0)

    async def poll_forever(self, http: aiohttp.ClientSession, eid: str) -> None:
        backoff = 1.0
        while True:
            if await self.fetch(http, eid, 30):
                backoff = 1.0
                continue
            await asyncio.sleep(backoff + random.uniform(0, backoff))
            backoff = min(backoff * 2, 60.0)

    async def wait_for(self, alert: str, within: float) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while len(self.seen.get(alert, {})) < len(self.ids) and time.monotonic() < deadline:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)
        times = list(self.seen.get(alert, {}).values())
        return {"times": times, "missing": len(self.ids) - len(times), "errors": dict(self.errors)}


def _devices_child(conn: Connection, port: int, ids: list[str], transport: str) -> None:
    async def run() -> None:
        raise_fd_limit()
        devices = _Devices(port, ids)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            gate = asyncio.Semaphore(200)  # connect in waves: the listen backlog is finite

            async def first(eid: str) -> None:
                async with gate:
                    for _ in range(30):
                        if await devices.fetch(http, eid, 0):
                            return
                        await asyncio.sleep(1.0)

            async def open_stream(eid: str) -> asyncio.Task[None]:
                async with gate:
                    opened = asyncio.Event()
                    task = asyncio.create_task(devices.stream_forever(http, eid, opened))
                    await opened.wait()
                    return task

            if transport == "sse":
                tasks = list(await asyncio.gather(*(open_stream(eid) for eid in ids)))
            else:
                await asyncio.gather(*(first(eid) for eid in ids))
                tasks = [asyncio.create_task(devices.poll_forever(http, eid)) for eid in ids]
            cpu0 = cpu_seconds()
            conn.send({"ready": len(ids), "errors": dict(devices.errors)})
            loop = asyncio.get_running_loop()
            while True:
                msg = await loop.run_in_executor(None, conn.recv)
                if msg[0] == "wait":
                    conn.send(await devices.wait_for(msg[1], msg[2]))
                elif msg[0] == "stop":
                    break
            cpu = cpu_seconds() - cpu0
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        conn.send({"cpu_s": cpu, "responses": devices.responses, "errors": dict(devices.errors)})

    asyncio.run(run())


class _CountingHandler(logging.Handler):
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__(logging.WARNING)
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        what = f" [{type(exc).__name__}: {str(exc)[:60]}]" if exc else ""
        self.counts[f"{record.levelname} {record.name}: {str(record.msg)[:60]}{what}"] += 1


def _count_log_records() -> Counter[str]:
    """Gateway warnings and errors are counted (and reported), not printed."""
    counts: Counter[str] = Counter()
    for name in ("warngate", "aiohttp"):
        logger = logging.getLogger(name)
        logger.addHandler(_CountingHandler(counts))
        logger.propagate = False
    return counts


def _county_endpoints(path: Path) -> list[str]:
    with (path / "endpoints.csv").open(encoding="utf-8") as fh:
        return [row["id"] for row in csv.DictReader(fh) if row["unit"].startswith(COUNTY)]


async def _connected(port: int) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith("warngate_endpoints_connected "):
            return int(float(line.split()[1]))
    return 0


async def _wait_parked(port: int, n: int, within: float = 120.0) -> tuple[float, int]:
    """Until the gateway holds `n` open polls (or `within` s pass): (seconds, held)."""
    t = time.monotonic()
    held = await _connected(port)
    while held < n and time.monotonic() - t < within:
        await asyncio.sleep(0.2)
        held = await _connected(port)
    if held < n:
        log(f"{NAME} pull: only {held} of {n} endpoints connected after {within:.0f}s")
    return time.monotonic() - t, held


def run_pull(
    bdir: BenchDir,
    reps: int,
    procs: int,
    pyspy: str | None = None,
    max_conn: int | None = None,
    transport: str = "poll",
) -> list[dict[str, Any]]:
    """Each repetition: the gateway, then the bare reference, same clients.

    `transport`: "poll" (long-poll `/messages`) or "sse" (`/stream`).
    """
    ids = _county_endpoints(bdir.path)
    runs = []
    with redis_server() as server, FakeProvider() as fake:
        for rep in range(reps):
            asyncio.run(_flush(server.url))
            params = {
                "dir": str(bdir.path),
                "redis_url": server.url,
                "provider_url": fake.url,
                "max_conn": max_conn,
            }
            spy_out = f"/tmp/wg-{transport}-pyspy-{rep}.txt" if pyspy else None
            gw = Child(_gateway_child, params)
            result = _pull_once(gw, ids, procs, server, pyspy, spy_out, transport)
            bare = Child(_bare_child)
            result["reference"] = _pull_once(bare, ids, procs, None, None, None, transport)
            log(
                f"{NAME} {transport} rep {rep + 1}/{reps}: "
                + ", ".join(
                    f"{ph['phase']} last {ph['last_s']:.2f}s (missing {ph['missing']})"
                    for ph in result["phases"]
                )
                + "; bare reference: "
                + ", ".join(f"last {ph['last_s']:.2f}s" for ph in result["reference"]["phases"])
            )
            runs.append(result)
    return runs


def _pull_once(
    gw: Child,
    ids: list[str],
    procs: int,
    server: Any,
    pyspy: str | None,
    spy_out: str | None,
    transport: str,
) -> dict[str, Any]:
    """Connect every endpoint to the server in `gw`, run the three phases, stop."""
    clients: list[Child] = []
    try:
        ready = gw.wait_ready(300)
        port = ready["port"]
        chunks = [ids[i::procs] for i in range(procs)]
        clients = [Child(_devices_child, port, chunk, transport) for chunk in chunks]
        for c in clients:
            c.wait_ready(300)
        parked_s, _ = asyncio.run(_wait_parked(port, len(ids)))
        spy = start_pyspy(pyspy, ready["pid"], spy_out) if spy_out else None
        result = _pull_phases(port, clients, gw, server, len(ids))
        result["transport"] = transport
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
            result["profile"] = spy_out
        result["connect_s"] = parked_s
        ends = [c.ask(("stop",)) for c in clients]
        result["client_cpu_s"] = [e["cpu_s"] for e in ends]
        result["client_errors"] = [e["errors"] for e in ends]
        result["server_log"] = gw.ask("cpu")["log"]
        try:
            result["server_peak_rss_mb"] = gw.ask("stop", 120)["peak_rss_mb"]
        except RuntimeError:
            result["server_peak_rss_mb"] = math.nan
            log(f"{NAME} pull: the server did not stop within 120 s; terminated")
        return result
    finally:
        for c in clients:
            c.stop()
        gw.stop()


def _bare_child(conn: Connection) -> None:
    """The ceiling for this stack: aiohttp parking long-polls (or holding streams) on one
    asyncio.Event and answering each with a prepared ~2 KB JSON message (or event) when
    an alert is posted."""

    async def serve() -> None:
        raise_fd_limit()
        state: dict[str, Any] = {
            "event": asyncio.Event(), "body": b"", "frame": b"", "seq": 0, "held": 0
        }  # fmt: skip
        pad = "预警" * 300

        async def messages(request: web.Request) -> web.Response:
            since = request.query.get("since") or "0"
            wait = float(request.query.get("wait", "0"))
            if int(since) >= state["seq"] and wait > 0:
                event = state["event"]
                state["held"] += 1
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), wait)
                finally:
                    state["held"] -= 1
            if int(since) >= state["seq"]:
                body = orjson.dumps({"cursor": str(state["seq"]), "messages": []})
            else:
                body = state["body"]
            return web.Response(body=body, content_type="application/json")

        async def stream(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b"retry: 5000\n\n")
            seq = int(request.headers.get("Last-Event-ID") or state["seq"])
            state["held"] += 1
            try:
                while True:
                    if seq < state["seq"]:
                        seq = state["seq"]
                        await resp.write(state["frame"])
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(30):
                            await state["event"].wait()
            except (ConnectionResetError, RuntimeError):
                pass
            finally:
                state["held"] -= 1
            return resp

        async def post(request: web.Request) -> web.Response:
            await request.read()
            state["seq"] += 1
            alert = f"bare-{state['seq']}"
            message = {"id": alert, "seq": str(state["seq"]), "action": "play", "text": pad}
            state["body"] = orjson.dumps({"cursor": str(state["seq"]), "messages": [message]})
            data = orjson.dumps(message).decode()
            state["frame"] = f"id: {state['seq']}\nevent: play\ndata: {data}\n\n".encode()
            event, state["event"] = state["event"], asyncio.Event()
            event.set()
            return web.json_response({"id": alert}, status=202)

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(text=f"warngate_endpoints_connected {state['held']}\n")

        app = web.Application()
        app.router.add_get("/api/v1/endpoints/{id}/messages", messages)
        app.router.add_get("/api/v1/endpoints/{id}/stream", stream)
        app.router.add_post("/api/v1/alerts", post)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        conn.send({"port": port, "pid": os.getpid()})
        loop = asyncio.get_running_loop()
        while True:
            msg = await loop.run_in_executor(None, conn.recv)
            if msg == "cpu":
                conn.send({"cpu_s": cpu_seconds(), "log": {}})
            elif msg == "stop":
                break
        await runner.cleanup()
        conn.send({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})

    asyncio.run(serve())


async def _flush(url: str) -> None:
    redis = Redis.from_url(url)
    await redis.flushall()
    await redis.aclose()


def _pull_phases(port: int, clients: list[Child], gw: Child, server: Any, n: int) -> dict[str, Any]:
    phases = []
    first = alert_json(new_id("PULL"))
    update = alert_json(new_id("PULL-UPD"), msg_type="Update", references=[first])
    cancel = alert_json(new_id("PULL-CXL"), msg_type="Cancel", references=[first, update])
    redis_pid = server.process.pid if server is not None else None
    for phase, data in (("alert", first), ("update", update), ("cancel", cancel)):
        _, parked = asyncio.run(_wait_parked(port, n))
        time.sleep(0.5)
        gw0 = gw.ask("cpu")
        redis_cpu0 = cpu_seconds(redis_pid) if redis_pid else 0.0
        t_post, t_accept, answer = asyncio.run(post_alert(port, data))
        # The receipts are watched from the POST on, beside the devices (not after them).
        found: dict[str, tuple[int, float]] = {}
        watch = None
        if server:  # the bare reference writes no receipts
            watch = threading.Thread(
                target=_watch_receipts, args=(found, server.url, answer["id"], n, t_post)
            )
            watch.start()
        replies = [c.ask(("wait", answer["id"], 120.0), timeout=300) for c in clients]
        times = sorted(t - t_post for r in replies for t in r["times"])
        planned = asyncio.run(_plan_done(server.url, answer["id"])) if server else None
        if watch is not None:
            watch.join(60)
        recorded, recorded_s = found.get("got", (None, math.nan))
        gw1 = gw.ask("cpu")
        phases.append(
            {
                "phase": phase,
                "parked_before": parked,
                "received": len(times),
                "missing": sum(r["missing"] for r in replies),
                "accept_s": t_accept - t_post,
                "planned_s": planned - t_post if planned else math.nan,
                "first_s": times[0] if times else math.nan,
                "p50_s": percentile(times, 50),
                "p95_s": percentile(times, 95),
                "last_s": times[-1] if times else math.nan,
                "gateway_cpu_s": gw1["cpu_s"] - gw0["cpu_s"],
                "redis_cpu_s": cpu_seconds(redis_pid) - redis_cpu0 if redis_pid else 0.0,
                "gateway_errors_logged": _errors(gw1["log"]) - _errors(gw0["log"]),
                "device_errors": [r["errors"] for r in replies],
                # `sent` receipts the gateway recorded for these fetches (one per endpoint)
                "fetch_receipts_recorded": recorded,
                "fetch_receipts_recorded_s": recorded_s,
            }
        )
        ph = phases[-1]
        log(
            f"{NAME} pull {phase}: {ph['received']:,} received, {ph['missing']:,} missing;"
            f" p50 {ph['p50_s']:.2f}s, last {ph['last_s']:.2f}s, planned {ph['planned_s']:.2f}s;"
            f" gateway errors logged {ph['gateway_errors_logged']:,}; device errors"
            f" {ph['device_errors']}; fetch receipts recorded {ph['fetch_receipts_recorded']}"
            f" (all by {ph['fetch_receipts_recorded_s']:.2f}s)"
        )
    return {"endpoints": n, "client_procs": len(clients), "phases": phases}


def _errors(log_counts: dict[str, int]) -> int:
    return sum(n for key, n in log_counts.items() if key.startswith("ERROR"))


def _watch_receipts(
    found: dict[str, tuple[int, float]], url: str, alert: str, n: int, t_post: float
) -> None:
    found["got"] = asyncio.run(_fetch_receipts(url, alert, n, t_post))


async def _fetch_receipts(url: str, alert: str, n: int, t_post: float) -> tuple[int, float]:
    """Endpoints whose fetch of `alert` the gateway recorded (`sent`), and when the count
    last grew (seconds after the POST), polled every 0.05 s for up to 20 s. The hub
    writes them every 0.2 s, but while it answers thousands of devices its flush gets
    its turns late."""
    redis = Redis.from_url(url, decode_responses=True)
    fields = [f"n|{c}|sent" for c in ("loudspeaker", "display")]
    count, at = 0, math.nan
    try:
        for _ in range(400):
            values = await redis.hmget(Keys("bench").agg(alert), fields)
            now = sum(int(v or 0) for v in values)
            if now > count:
                count, at = now, time.time() - t_post
            if count >= n:
                break
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    return count, at


async def _plan_done(url: str, alert: str) -> float | None:
    redis = Redis.from_url(url, decode_responses=True)
    try:
        for _ in range(100):
            done = await redis.hget(Keys("bench").plan(alert), "done")
            if done:
                return int(done) / 1000
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    return None
