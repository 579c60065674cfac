"""Benchmark: fan-out — 1,000,000 SMS recipients to a fake provider, and 10,000 long-polls.

**sms** (one fresh process per repetition, so its peak RSS is its own): the gateway as
`warngate serve` runs it (`create_app(config)` with its background workers: one planner
loop, one send loop per push channel, dispatch concurrency 8) on a loopback port; one
red alert over the big county is POSTed to it; the fake provider (its own process)
answers every recipient accepted. Measured from the POST: time to the first SMS handed
over, to 95 %, to the last, and until the last batch of every channel is acknowledged
(stream empty, no delivery left `queued`). Provider rate limits are lifted
(`rate_per_s` 1e9; the sample's 5,000/s would otherwise set the pace).

**reference** (same process, same Redis, right after): a bare redis-py asyncio loop
that XADDs as many entries as the gateway enqueued for SMS (same batches of 500, the
same packed recipient field, pipelined 200 at a time) and reads them back with
XREADGROUP (count 100) + XACK/XDEL: the storage ceiling for this fan-out.

**pull**: the gateway serving a directory with the same 10,000 endpoints in the county
(and no push recipients), every endpoint connected by long-poll from client processes
(one aiohttp ClientSession with `TCPConnector(limit=0)` each); time from the POST until
each endpoint has received the new alert, then an Update, then the Cancel.

**sse**: the same with every endpoint holding a server-sent-events stream instead.

The long-poll machinery (device clients, the bare server) is in `benchmarks.longpoll`.

    python -m benchmarks.fanout [--quick] [--reps N] [--only sms|pull|sse] [--device-procs K]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import os
import resource
import sys
import time
from datetime import UTC, datetime
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
    alert_record,
    bench_config,
    child_main,
    config_dir,
    cpu_seconds,
    log,
    new_id,
    post_alert,
    raise_fd_limit,
    redis_server,
    result_doc,
    rss_mb,
    run_child,
    start_pyspy,
    summarize,
    timeline_marks,
    write_results,
)
from benchmarks.longpoll import run_pull
from gateway.app import create_app
from gateway.keys import STORE
from gateway.models import Channel
from gateway.plan import plan_alert
from gateway.redis_server import free_port
from gateway.store import Batch

NAME = "fanout"
FULL = {"sms": 1_000_000, "endpoints": 10_000, "reps": 3, "pull_reps": 3}
QUICK = {"sms": 100_000, "endpoints": 2_000, "reps": 3, "pull_reps": 3}
POLL_S = 0.05
TIMEOUT_S = 900.0


# -- sms: one repetition in a fresh process ---------------------------------------------


def _sms_child(conn: Connection, p: dict[str, Any]) -> None:
    child_main(conn, lambda: asyncio.run(_sms_rep(conn, p)))


async def _sms_rep(conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
    raise_fd_limit()
    logging.getLogger("warngate").setLevel(logging.ERROR)
    t = time.perf_counter()
    dispatch = {"concurrency": p["concurrency"]} if p.get("concurrency") else {}
    config = bench_config(
        Path(p["dir"]), p["redis_url"], provider_url=p["provider_url"], **dispatch
    )
    load_s = time.perf_counter() - t
    rss_loaded = rss_mb()["rss"]
    if p.get("gc") == "freeze":  # diagnostic: the loaded directory leaves the GC's view
        gc.collect()
        gc.freeze()
    elif p.get("gc") == "off":  # diagnostic: no cyclic GC at all during the fan-out
        gc.disable()
    app = create_app(config, workers=1)  # with its background workers, as `warngate serve`
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    store = app[STORE]
    keys = store.keys
    redis: Redis = store.redis
    if p.get("handshake"):  # let the parent attach a profiler before the clock starts
        conn.send({"pid": os.getpid()})
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    cpu0, redis_cpu0 = cpu_seconds(), cpu_seconds(p["redis_pid"])
    fake_cpu0 = cpu_seconds(p["fake_pid"])
    t_post, t_accept, answer = await post_alert(port, alert_json(new_id("SMS")))
    alert = answer["id"]
    channels = ("sms", "app", "messenger")
    fields = [f"n|{c}|queued" for c in channels]
    streams = [keys.send_queue(c, lane) for c in channels for lane in ("hi", "lo")]
    planned_at: float | None = None
    timed_out = False
    while True:
        await asyncio.sleep(POLL_S)
        if planned_at is None:
            done_ms = await redis.hget(keys.plan(alert), "done")
            if done_ms:
                planned_at = int(done_ms) / 1000
            continue
        queued = await redis.hmget(keys.agg(alert), fields)
        if all(int(q or 0) == 0 for q in queued):
            lengths = [await redis.xlen(s) for s in streams]
            if not any(lengths):
                break
        if time.time() - t_post > TIMEOUT_S:
            timed_out = True
            break
    t_done = time.time()
    cpu = cpu_seconds() - cpu0
    redis_cpu = cpu_seconds(p["redis_pid"]) - redis_cpu0
    fake_cpu = cpu_seconds(p["fake_pid"]) - fake_cpu0
    agg = await store.aggregates(alert)
    summary_raw = await redis.hget(keys.plan(alert), "summary")
    counts = orjson.loads(summary_raw)["counts"] if summary_raw else {}
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    await runner.cleanup()
    entries = _sms_batches(config, alert)
    reference = await _reference(entries, p["redis_url"])
    reference_http = await _reference_http(entries, p["redis_url"], p["provider_url"])
    return {
        "load_s": load_s,
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": peak_rss,
        "t_post": t_post,
        "accept_s": t_accept - t_post,
        "planned_s": (planned_at or math.nan) - t_post,
        "done_s": t_done - t_post,
        "timed_out": timed_out,
        "gateway_cpu_s": cpu,
        "redis_cpu_s": redis_cpu,
        "fake_cpu_s": fake_cpu,
        "planned": counts,
        "sent": {c: agg.get(f"n|{c}|sent", 0) for c in channels},
        "failed": {c: agg.get(f"n|{c}|failed", 0) for c in channels},
        "reference": reference,
        "reference_http": reference_http,
    }


def _sms_batches(config: Any, alert: str) -> list[dict[str, str]]:
    """The SMS stream entries the planner makes for the county (same batches and packing)."""
    record = alert_record(alert_json(new_id("REF")))
    agency = config.registry.agencies["changji-met"]
    plan = plan_alert(
        record, config.directory, config.policy, agency, now=datetime.now(UTC),
        geocode_names=config.settings.ingest.geocode_names,
    )  # fmt: skip
    size = min(config.settings.providers["sms-main"].batch_size, 1000)
    out = []
    for g in plan.push:
        if g.channel is not Channel.SMS:
            continue
        cols = g.columns
        for start in range(0, len(g.rows), size):
            packed = "\n".join(
                f"{cols.ids[i]}\t{cols.addresses[i]}\t{cols.persons[i]}\t{cols.groups[i]}"
                for i in g.rows[start : start + size]
            )
            message = f"sms|{g.unit}|{g.language}|{g.kind}"
            batch = Batch(
                alert, "sms", g.unit, g.language, g.kind.value, message, "red", 0, packed=packed
            )
            out.append(batch.fields())
    return out


async def _reference(entries: list[dict[str, str]], url: str) -> dict[str, Any]:
    """Bare redis-py: XADD the SMS batches (pipelined), XREADGROUP + XACK/XDEL them."""
    recipients = sum(f["r"].count("\n") + 1 for f in entries)
    redis: Any = Redis.from_url(url, decode_responses=True)
    try:
        await redis.flushall()
        stream, group = "ref:send:sms", "senders"
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
        t0 = time.perf_counter()
        for i in range(0, len(entries), 200):
            async with redis.pipeline(transaction=False) as pipe:
                for f in entries[i : i + 200]:
                    pipe.xadd(stream, f)
                await pipe.execute()
        t1 = time.perf_counter()
        read = 0
        while read < len(entries):
            got = await redis.xreadgroup(group, "ref", {stream: ">"}, count=100)
            ids = [entry for _, messages in got for entry, _ in messages]
            read += len(ids)
            async with redis.pipeline(transaction=False) as pipe:
                pipe.xack(stream, group, *ids)
                pipe.xdel(stream, *ids)
                await pipe.execute()
        t2 = time.perf_counter()
        await redis.flushall()
    finally:
        await redis.aclose()
    return {
        "entries": len(entries),
        "recipients": recipients,
        "write_s": t1 - t0,
        "read_s": t2 - t1,
        "total_s": t2 - t0,
        "recipients_per_s": recipients / (t2 - t0),
    }


async def _reference_http(
    entries: list[dict[str, str]], url: str, provider: str, concurrency: int = 8
) -> dict[str, Any]:
    """Bare pipeline: XADD the batches, then `concurrency` loops that each XREADGROUP one
    entry, POST it as the SMS adapter's JSON body to the fake provider (same process, same
    answers, not counted), read the answer with orjson and XACK/XDEL: storage + HTTP."""
    recipients = sum(f["r"].count("\n") + 1 for f in entries)
    redis: Any = Redis.from_url(url, decode_responses=True)
    stream, group = "ref:send:sms", "senders"
    text = "【昌吉市气象台】暴雨红色预警" * 4
    try:
        await redis.flushall()
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
        for i in range(0, len(entries), 200):
            async with redis.pipeline(transaction=False) as pipe:
                for f in entries[i : i + 200]:
                    pipe.xadd(stream, f)
                await pipe.execute()
        connector = aiohttp.TCPConnector(limit=200, limit_per_host=100)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def worker(name: str) -> int:
                done = 0
                while True:
                    got = await redis.xreadgroup(group, name, {stream: ">"}, count=1)
                    if not got:
                        return done
                    entry, fields = got[0][1][0]
                    rows = [line.split("\t") for line in fields["r"].split("\n")]
                    body = {
                        "text": text,
                        "encoding": "ucs2",
                        "recipients": [
                            {"id": f"{fields['a']}:sms:{r[0]}", "to": r[1]} for r in rows
                        ],
                    }
                    async with http.post(
                        provider + "/send-reference",
                        data=orjson.dumps(body),
                        headers={"Content-Type": "application/json"},
                    ) as resp:
                        answer = orjson.loads(await resp.read())
                    done += sum(1 for r in answer["results"] if r["status"] == "accepted")
                    async with redis.pipeline(transaction=False) as pipe:
                        pipe.xack(stream, group, entry)
                        pipe.xdel(stream, entry)
                        await pipe.execute()

            t0 = time.perf_counter()
            sent = sum(await asyncio.gather(*(worker(f"w{i}") for i in range(concurrency))))
            wall = time.perf_counter() - t0
        await redis.flushall()
    finally:
        await redis.aclose()
    return {
        "entries": len(entries),
        "recipients": recipients,
        "accepted": sent,
        "concurrency": concurrency,
        "total_s": wall,
        "recipients_per_s": recipients / wall,
    }


def run_sms(
    bdir: BenchDir,
    reps: int,
    pyspy: str | None,
    concurrency: int | None = None,
    gc_mode: str = "default",
) -> list[dict[str, Any]]:
    runs = []
    with redis_server() as server, FakeProvider() as fake:
        assert server.process is not None
        for rep in range(reps):
            fake.reset()
            p = {
                "dir": str(bdir.path),
                "redis_url": server.url,
                "provider_url": fake.url,
                "redis_pid": server.process.pid,
                "fake_pid": fake.pid,
                "handshake": bool(pyspy),
                "concurrency": concurrency,
                "gc": gc_mode,
            }
            if pyspy:
                result = _profiled(p, pyspy, rep)
            else:
                result = run_child(_sms_child, p, timeout=TIMEOUT_S + 300)
            stats = fake.stats()
            t0 = result["t_post"]
            expected = bdir.county_sms + bdir.county_messenger
            result["sms"] = timeline_marks(stats["timeline"].get("sms", []), expected, t0)
            result["app"] = timeline_marks(stats["timeline"].get("app", []), bdir.county_app, t0)
            result["dupes"] = stats["dupes"]
            result["unique"] = stats["unique"]
            sms = result["sms"]
            # The fake's /send also carries the messengers (same provider): rates use the
            # gateway's own count of SMS-channel deliveries sent.
            result["sms_per_s"] = result["sent"]["sms"] / result["done_s"]
            pushed = sum(result["sent"].values())
            result["push_per_s"] = pushed / result["done_s"]
            log(
                f"{NAME} sms rep {rep + 1}/{reps}: {sms['count']:,} SMS in"
                f" {result['done_s']:.1f}s ({result['sms_per_s']:,.0f}/s), first"
                f" {sms['first_s']:.2f}s, 95% {sms['p95_s']:.1f}s; references: storage"
                f" {result['reference']['total_s']:.2f}s, storage + HTTP"
                f" {result['reference_http']['total_s']:.2f}s;"
                f" peak RSS {result['peak_rss_mb']:.0f} MiB"
            )
            runs.append(result)
    return runs


def _profiled(p: dict[str, Any], pyspy: str, rep: int) -> dict[str, Any]:
    """One repetition with py-spy attached to the gateway process for the fan-out."""
    child = Child(_sms_child, p)
    try:
        pid = child.wait_ready(300)["pid"]
        out = Path(f"/tmp/wg-fanout-pyspy-{rep}.txt")
        spy = start_pyspy(pyspy, pid, str(out))
        assert spy is not None
        child.conn.send("go")
        if not child.conn.poll(TIMEOUT_S + 300):
            raise RuntimeError("profiled repetition did not finish")
        result: dict[str, Any] = child.conn.recv()
        spy.send_signal(2)
        spy.wait(60)
        log(f"{NAME}: py-spy profile written to {out}")
        result["profile"] = str(out)
        return result
    finally:
        child.stop()


# -- entry point -------------------------------------------------------------------------


def _summary(
    sms: list[dict[str, Any]], pull: list[dict[str, Any]], sse: list[dict[str, Any]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if sms:
        ref = [r["reference"] for r in sms]
        out.update(
            {
                "sms_recipients": sms[0]["sent"]["sms"],
                "sms_per_s": summarize([r["sms_per_s"] for r in sms], "recipients/s"),
                "push_per_s": summarize([r["push_per_s"] for r in sms], "recipients/s"),
                "done_s": summarize([r["done_s"] for r in sms], "s"),
                "planned_s": summarize([r["planned_s"] for r in sms], "s"),
                "first_sms_s": summarize([r["sms"]["first_s"] for r in sms], "s"),
                "p95_sms_s": summarize([r["sms"]["p95_s"] for r in sms], "s"),
                "last_sms_s": summarize([r["sms"]["last_s"] for r in sms], "s"),
                "peak_rss_mb": summarize([r["peak_rss_mb"] for r in sms], "MiB"),
                "rss_loaded_mb": summarize([r["rss_loaded_mb"] for r in sms], "MiB"),
                "gateway_cpu_share": summarize(
                    [r["gateway_cpu_s"] / r["done_s"] for r in sms], "cores"
                ),
                "redis_cpu_share": summarize(
                    [r["redis_cpu_s"] / r["done_s"] for r in sms], "cores"
                ),
                "sms_dupes": sum(r["dupes"].get("sms", 0) for r in sms),
                "reference_recipients_per_s": summarize(
                    [r["recipients_per_s"] for r in ref], "recipients/s"
                ),
                "reference_total_s": summarize([r["total_s"] for r in ref], "s"),
                "ratio_to_reference": summarize(
                    [r["sms_per_s"] / r["reference"]["recipients_per_s"] for r in sms], "x"
                ),
                "reference_http_recipients_per_s": summarize(
                    [r["reference_http"]["recipients_per_s"] for r in sms], "recipients/s"
                ),
                "reference_http_total_s": summarize(
                    [r["reference_http"]["total_s"] for r in sms], "s"
                ),
                "ratio_to_reference_http": summarize(
                    [r["sms_per_s"] / r["reference_http"]["recipients_per_s"] for r in sms], "x"
                ),
            }
        )
    for part, runs in (("pull", pull), ("sse", sse)):
        if runs:
            out.update(_pull_summary(part, runs))
    return out


def _pull_summary(part: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for phase in ("alert", "update", "cancel"):
        rows = [ph for r in runs for ph in r["phases"] if ph["phase"] == phase]
        out[f"{part}_{phase}_last_s"] = summarize([ph["last_s"] for ph in rows], "s")
        out[f"{part}_{phase}_p50_s"] = summarize([ph["p50_s"] for ph in rows], "s")
        out[f"{part}_{phase}_planned_s"] = summarize([ph["planned_s"] for ph in rows], "s")
        out[f"{part}_{phase}_missing"] = sum(ph["missing"] for ph in rows)
        out[f"{part}_{phase}_receipts_recorded"] = min(ph["fetch_receipts_recorded"] for ph in rows)
        out[f"{part}_{phase}_receipts_recorded_s"] = summarize(
            [ph["fetch_receipts_recorded_s"] for ph in rows], "s"
        )
        out[f"{part}_{phase}_server_errors"] = sum(ph["gateway_errors_logged"] for ph in rows)
        ref = [ph for r in runs for ph in r["reference"]["phases"] if ph["phase"] == phase]
        out[f"{part}_{phase}_reference_last_s"] = summarize([ph["last_s"] for ph in ref], "s")
        out[f"{part}_{phase}_ratio_last"] = summarize(
            [g["last_s"] / b["last_s"] for g, b in zip(rows, ref, strict=True)], "x"
        )
    out[f"{part}_endpoints"] = runs[0]["endpoints"]
    out[f"{part}_client_procs"] = runs[0]["client_procs"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--only", choices=("sms", "pull", "sse"))
    parser.add_argument("--device-procs", type=int, default=2)
    parser.add_argument("--py-spy", default=None, help="path of py-spy: profile the gateway")
    parser.add_argument(
        "--concurrency", type=int, help="dispatch.concurrency (default: the config's, 8)"
    )
    parser.add_argument(
        "--gc",
        choices=("default", "freeze", "off"),
        default="default",
        help="diagnostic: gc.freeze() after loading the directory, or no cyclic GC",
    )
    parser.add_argument(
        "--redis-max-connections",
        type=int,
        help="diagnostic: the gateway's redis.max_connections (default: the config's)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    p = dict(QUICK if args.quick else FULL)
    if args.reps:
        p["reps"] = p["pull_reps"] = args.reps
    sms_runs: list[dict[str, Any]] = []
    pull_runs: list[dict[str, Any]] = []
    sse_runs: list[dict[str, Any]] = []
    big = config_dir(p["sms"], p["endpoints"])
    pull_dir = config_dir(0, p["endpoints"], recipients=0)
    if args.only in (None, "sms"):
        log(f"{NAME} sms: {big.describe()}")
        sms_runs = run_sms(big, p["reps"], args.py_spy, args.concurrency, args.gc)
    if args.only in (None, "pull"):
        log(f"{NAME} pull: {pull_dir.describe()}; {args.device_procs} client processes")
        pull_runs = run_pull(
            pull_dir, p["pull_reps"], args.device_procs, args.py_spy, args.redis_max_connections
        )
    if args.only in (None, "sse"):
        log(f"{NAME} sse: {pull_dir.describe()}; {args.device_procs} client processes")
        sse_runs = run_pull(
            pull_dir, p["pull_reps"], args.device_procs, args.py_spy,
            args.redis_max_connections, transport="sse",
        )  # fmt: skip
    params = {
        **p,
        "county": COUNTY,
        "sms_directory": big.describe(),
        "pull_directory": pull_dir.describe(),
        "device_procs": args.device_procs,
        "concurrency": args.concurrency or "default (8)",
        "gc": args.gc,
        "redis_max_connections": args.redis_max_connections or "default",
    }
    doc = result_doc(
        NAME,
        sys.argv[1:] if argv is None else argv,
        params,
        {"sms": sms_runs, "pull": pull_runs, "sse": sse_runs},
        _summary(sms_runs, pull_runs, sse_runs),
    )
    default = f"{NAME}.quick" if args.quick else NAME
    if args.only:
        default += f"-{args.only}"
    path = write_results(args.out or default, doc)
    log(f"{NAME}: wrote {path}")
    return doc


if __name__ == "__main__":
    main()
