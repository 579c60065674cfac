"""Benchmark: one message to 1,000 HTTP webhook receivers — Apprise and warngate's app adapter.

The receivers are one fake server in its own process on one loopback port with 1,000
distinct paths (`/hook/0` … `/hook/999`); it counts what each receiver got.

* **apprise** — `apprise.Apprise()` with the 1,000 `json://127.0.0.1:PORT/hook/N` URLs,
  then one `notify()` (Apprise's own thread pool, one HTTP POST per receiver).
* **adapter-per-receiver** — `channels.app.AppPushAdapter`, one adapter per receiver URL
  (one token each), all sends started together on one aiohttp session with the
  gateway's own connector limits (200 connections, 100 per host).
* **adapter-batched** — the same adapter as warngate uses it: the 1,000 receivers as
  tokens of a push service, in batches of its maximum size (500), posted to the same
  fake server, which counts each token for its receiver.

Wall time of the sending only (building the Apprise object or the adapters is timed
apart), and messages per second; every repetition checks all 1,000 arrived once.

    python -m benchmarks.peer_apprise [--quick] [--reps N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

import aiohttp
import apprise

from benchmarks.common import (
    FakeProvider,
    cpu_seconds,
    log,
    result_doc,
    summarize,
    write_results,
)
from channels import Message, Recipient
from channels.app import AppPushAdapter
from gateway.models import ProviderConfig

NAME = "peer_apprise"
RECEIVERS = 1_000
FULL = {"reps": 5}
QUICK = {"reps": 3}
TITLE = "暴雨红色预警"
BODY = (
    "昌吉市气象台发布暴雨红色预警：预计未来3小时内昌吉市将出现50毫米以上降水，"
    "请远离河道，转移到安全地带。"
)


def _arrived(fake: FakeProvider) -> tuple[int, int]:
    stats = fake.stats()
    return int(stats["hooks"]), int(stats["hook_messages"])


def run_apprise(fake: FakeProvider) -> dict[str, Any]:
    t0 = time.perf_counter()
    notifier = apprise.Apprise()
    for n in range(RECEIVERS):
        notifier.add(f"json://127.0.0.1:{fake.port}/hook/{n}")
    build_s = time.perf_counter() - t0
    cpu0 = cpu_seconds()
    t1 = time.perf_counter()
    ok = notifier.notify(body=BODY, title=TITLE)
    wall = time.perf_counter() - t1
    return {"build_s": build_s, "wall_s": wall, "ok": bool(ok), "cpu_s": cpu_seconds() - cpu0}


def _provider(url: str, batch: int) -> ProviderConfig:
    return ProviderConfig.model_validate(
        {"kind": "app_http", "url": url, "batch_size": batch, "timeout_s": 30.0}
    )


async def run_adapter(fake: FakeProvider, batched: bool) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=200, limit_per_host=100)  # as gateway.app
    async with aiohttp.ClientSession(connector=connector) as session:
        message = Message(text=BODY, language="zh", title=TITLE, data={"level": "red"})
        t0 = time.perf_counter()
        if batched:
            adapter = AppPushAdapter("push", _provider(f"{fake.url}/push", 500), session)
            size = adapter.batch_size
            recipients = [Recipient(f"d{n}", f"hook-{n}") for n in range(RECEIVERS)]
            jobs = [(adapter, recipients[i : i + size]) for i in range(0, RECEIVERS, size)]
        else:
            jobs = [
                (
                    AppPushAdapter(f"hook{n}", _provider(f"{fake.url}/hook/{n}", 1), session),
                    [Recipient(f"d{n}", f"token-{n}")],
                )
                for n in range(RECEIVERS)
            ]
        build_s = time.perf_counter() - t0
        cpu0 = cpu_seconds()
        t1 = time.perf_counter()
        results = await asyncio.gather(*(a.send(message, rs) for a, rs in jobs))
        wall = time.perf_counter() - t1
    accepted = sum(len(r.accepted) for r in results)
    return {
        "build_s": build_s,
        "wall_s": wall,
        "ok": accepted == RECEIVERS,
        "requests": len(jobs),
        "cpu_s": cpu_seconds() - cpu0,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    p = dict(QUICK if args.quick else FULL)
    if args.reps:
        p["reps"] = args.reps
    logging.getLogger("apprise").setLevel(logging.ERROR)
    runs: list[dict[str, Any]] = []
    with FakeProvider() as fake:
        for rep in range(p["reps"]):
            row: dict[str, Any] = {"rep": rep}
            for kind in ("apprise", "adapter_per_receiver", "adapter_batched"):
                fake.reset()
                if kind == "apprise":
                    out = run_apprise(fake)
                else:
                    out = asyncio.run(run_adapter(fake, batched=kind == "adapter_batched"))
                receivers, messages = _arrived(fake)
                out["receivers"], out["messages"] = receivers, messages
                out["per_s"] = messages / out["wall_s"]
                if receivers != RECEIVERS or messages != RECEIVERS:
                    log(f"{NAME} {kind}: {receivers} receivers got {messages} messages")
                row[kind] = out
            log(
                f"{NAME} rep {rep + 1}/{p['reps']}: "
                + ", ".join(
                    f"{k} {row[k]['wall_s']:.3f}s ({row[k]['per_s']:,.0f}/s)"
                    for k in ("apprise", "adapter_per_receiver", "adapter_batched")
                )
            )
            runs.append(row)
    summary: dict[str, Any] = {"receivers": RECEIVERS, "apprise_version": apprise.__version__}
    for kind in ("apprise", "adapter_per_receiver", "adapter_batched"):
        summary[f"{kind}_wall_s"] = summarize([r[kind]["wall_s"] for r in runs], "s")
        summary[f"{kind}_per_s"] = summarize([r[kind]["per_s"] for r in runs], "msg/s")
        summary[f"{kind}_build_s"] = summarize([r[kind]["build_s"] for r in runs], "s")
        summary[f"{kind}_cpu_s"] = summarize([r[kind]["cpu_s"] for r in runs], "s")
    for kind in ("adapter_per_receiver", "adapter_batched"):
        summary[f"{kind}_speedup_vs_apprise"] = summarize(
            [r["apprise"]["wall_s"] / r[kind]["wall_s"] for r in runs], "x"
        )
    doc = result_doc(
        NAME,
        sys.argv[1:] if argv is None else argv,
        {**p, "receivers": RECEIVERS, "receiver_server": "one port, 1,000 distinct paths"},
        runs,
        summary,
    )
    path = write_results(args.out or (f"{NAME}.quick" if args.quick else NAME), doc)
    log(f"{NAME}: wrote {path}")
    return doc


if __name__ == "__main__":
    main()
