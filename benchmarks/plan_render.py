"""Benchmark: plan and render one red alert over a county of ~1,000,000 SMS recipients.

Two measurements, in one process that loaded the directory once:

* **pure** — `gateway.plan.plan_alert` and then `Planner._render_all` (the planner's own
  rendering step: once per channel × unit × language × kind), no I/O at all;
* **planner** — `Planner.plan()` itself against our own Redis, on an alert accepted by
  the real `Ingestor`: plan, render, save the plan and messages, publish the units'
  pull state, cut and enqueue the provider batches. Store calls are wrapped with timers
  to split the time between Python work and Redis round trips.

Peak memory: tracemalloc's peak of a pure plan + render (Python allocations only), and
the process's peak RSS over each step (VmHWM reset before it, Linux `clear_refs`).

    python -m benchmarks.plan_render [--quick] [--reps N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import logging
import sys
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

import gateway.planner as planner_module
from benchmarks.common import (
    AGENCY_KEY,
    COUNTY,
    alert_json,
    alert_record,
    bench_config,
    config_dir,
    log,
    redis_server,
    reset_peak_rss,
    result_doc,
    rss_mb,
    summarize,
    write_results,
)
from gateway.app import build_workers, create_app
from gateway.config import Config
from gateway.keys import INGESTOR, REDIS, RENDERER
from gateway.metrics import Metrics
from gateway.plan import Plan, plan_alert
from gateway.planner import Planner

NAME = "plan_render"
FULL = {"sms": 1_000_000, "endpoints": 10_000, "reps": 5, "planner_reps": 3}
QUICK = {"sms": 100_000, "endpoints": 2_000, "reps": 3, "planner_reps": 3}
_ids = itertools.count(1)


def _alert_data() -> dict[str, Any]:
    return alert_json(f"BENCH-PLAN-{time.time_ns()}-{next(_ids)}")


def _plan_counts(plan: Plan) -> dict[str, int]:
    return {
        "units": len(plan.units),
        "push_recipients": sum(len(g) for g in plan.push),
        "push_groups": len(plan.push),
        "endpoints": len(plan.endpoints),
    }


def pure(config: Config, reps: int) -> dict[str, Any]:
    """plan_alert + Planner._render_all, `reps` times, then once under tracemalloc."""
    s = config.settings
    planner = Planner(config, None, _renderer(config), Metrics(), {})  # type: ignore[arg-type]
    agency = config.registry.agencies["changji-met"]
    runs = []
    for i in range(reps + 1):  # the first run compiles the templates: reported apart
        record = alert_record(_alert_data())
        now = datetime.now(UTC)
        gc.collect()
        before = rss_mb()["rss"]
        reset_peak_rss()
        t0 = time.perf_counter()
        plan = plan_alert(
            record, config.directory, config.policy, agency, now=now,
            geocode_names=s.ingest.geocode_names,
        )  # fmt: skip
        t1 = time.perf_counter()
        renders = planner._render_all(record, plan, agency, None)
        t2 = time.perf_counter()
        runs.append(
            {
                "cold": i == 0,
                "plan_s": t1 - t0,
                "render_s": t2 - t1,
                "total_s": t2 - t0,
                "messages": len(renders.messages),
                "render_failures": len(renders.failures),
                "rss_before_mb": before,
                "peak_rss_extra_mb": rss_mb()["hwm"] - before,
                **_plan_counts(plan),
            }
        )
        del plan, renders
    gc.collect()
    tracemalloc.start()
    record = alert_record(_alert_data())
    plan = plan_alert(
        record, config.directory, config.policy, agency, now=datetime.now(UTC),
        geocode_names=s.ingest.geocode_names,
    )  # fmt: skip
    planner._render_all(record, plan, agency, None)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"runs": runs, "tracemalloc_peak_mb": peak / 2**20}


def _renderer(config: Config) -> Any:
    from gateway.render import Renderer

    s = config.settings
    return Renderer(s.templates_dir, config.hazards, config.directory, s.render)


class _Timers:
    """Wall time spent inside wrapped calls (store round trips, planner steps)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()

    def wrap_async(self, obj: Any, name: str, label: str | None = None) -> None:
        orig: Callable[..., Awaitable[Any]] = getattr(obj, name)
        key = label or name

        async def timed(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return await orig(*args, **kw)
            finally:
                self.spent[key] += time.perf_counter() - t
                self.calls[key] += 1

        setattr(obj, name, timed)

    def wrap_sync(self, obj: Any, name: str, label: str | None = None) -> None:
        orig: Callable[..., Any] = getattr(obj, name)
        key = label or name

        def timed(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return orig(*args, **kw)
            finally:
                self.spent[key] += time.perf_counter() - t
                self.calls[key] += 1

        setattr(obj, name, timed)

    def reset(self) -> None:
        self.spent.clear()
        self.calls.clear()


async def planner_runs(config: Config, reps: int) -> list[dict[str, Any]]:
    """Planner.plan() against Redis on alerts accepted by the real Ingestor."""
    app = create_app(config, background=False)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        workers = build_workers(app, "bench")
        planner, store = workers.planner, workers.planner.store
        timers = _Timers()
        for name in ("enqueue", "publish_many", "save_plan", "count_queued", "mark_plan_done",
                     "save_relay_codes", "get_alert", "plan_done", "heartbeats"):  # fmt: skip
            timers.wrap_async(store, name, f"redis.{name}")
        timers.wrap_sync(planner, "_render_all", "render")
        timers.wrap_sync(planner_module, "plan_alert", "plan_alert")
        timers.wrap_async(planner, "_predicted_steps", "predicted_steps")
        ingestor = app[INGESTOR]
        principal = ingestor.authenticate(f"Bearer {AGENCY_KEY}")
        redis = app[REDIS]
        assert app[RENDERER] is planner.renderer
        runs = []
        for i in range(reps + 1):  # the first run renders with cold templates
            await redis.flushall()
            body = orjson.dumps(_alert_data())
            accepted = await ingestor.ingest(principal, body, "application/json")
            assert accepted.status == 202, accepted.body
            gc.collect()
            before = rss_mb()["rss"]
            reset_peak_rss()
            timers.reset()
            t0 = time.perf_counter()
            plan = await planner.plan(accepted.body["id"])
            total = time.perf_counter() - t0
            assert plan is not None
            spent = dict(timers.spent)
            redis_s = sum(v for k, v in spent.items() if k.startswith("redis."))
            info = await redis.info("memory")
            runs.append(
                {
                    "cold": i == 0,
                    "total_s": total,
                    "plan_alert_s": spent.get("plan_alert", 0.0),
                    "render_s": spent.get("render", 0.0),
                    "predicted_steps_s": spent.get("predicted_steps", 0.0),
                    "enqueue_s": spent.get("redis.enqueue", 0.0),
                    "publish_s": spent.get("redis.publish_many", 0.0),
                    "redis_other_s": redis_s
                    - spent.get("redis.enqueue", 0.0)
                    - spent.get("redis.publish_many", 0.0),
                    "rest_s": total
                    - redis_s
                    - spent.get("render", 0.0)
                    - spent.get("plan_alert", 0.0),
                    "calls": dict(timers.calls),
                    "peak_rss_extra_mb": rss_mb()["hwm"] - before,
                    "redis_used_mb": int(info["used_memory"]) / 2**20,
                    **_plan_counts(plan),
                }
            )
            del plan
        return runs
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--out", default=None, help="results file name (default: by mode)")
    parser.add_argument(
        "--gc",
        choices=("default", "freeze", "off"),
        default="default",
        help="diagnostic: gc.freeze() after loading the directory, or no cyclic GC",
    )
    args = parser.parse_args(argv)
    p = dict(QUICK if args.quick else FULL)
    if args.reps:
        p["reps"] = p["planner_reps"] = args.reps
    logging.getLogger("warngate").setLevel(logging.ERROR)
    bdir = config_dir(p["sms"], p["endpoints"])
    log(f"{NAME}: {bdir.describe()}")
    with redis_server() as server:
        t = time.perf_counter()
        config = bench_config(bdir.path, server.url)
        load_s = time.perf_counter() - t
        loaded = rss_mb()
        log(f"{NAME}: directory loaded in {load_s:.1f}s, RSS {loaded['rss']:.0f} MiB")
        if args.gc == "freeze":
            gc.collect()
            gc.freeze()
        elif args.gc == "off":
            gc.disable()
        pure_out = pure(config, p["reps"])
        log(f"{NAME}: pure done")
        planner_out = asyncio.run(planner_runs(config, p["planner_reps"]))
        log(f"{NAME}: planner done")
    warm = [r for r in pure_out["runs"] if not r["cold"]]
    warm_p = [r for r in planner_out if not r["cold"]]
    summary = {
        "county_sms": bdir.county_sms,
        "county_endpoints": bdir.county_endpoints,
        "directory_load_s": load_s,
        "rss_after_load_mb": loaded["rss"],
        "pure_total_s": summarize([r["total_s"] for r in warm], "s"),
        "pure_plan_s": summarize([r["plan_s"] for r in warm], "s"),
        "pure_render_s": summarize([r["render_s"] for r in warm], "s"),
        "pure_cold_total_s": pure_out["runs"][0]["total_s"],
        # Later runs reuse memory the first one freed: only the first run's peak is clean.
        "pure_peak_rss_extra_mb": pure_out["runs"][0]["peak_rss_extra_mb"],
        "pure_tracemalloc_peak_mb": pure_out["tracemalloc_peak_mb"],
        "planner_total_s": summarize([r["total_s"] for r in warm_p], "s"),
        "planner_enqueue_s": summarize([r["enqueue_s"] for r in warm_p], "s"),
        "planner_publish_s": summarize([r["publish_s"] for r in warm_p], "s"),
        "planner_render_s": summarize([r["render_s"] for r in warm_p], "s"),
        "planner_plan_alert_s": summarize([r["plan_alert_s"] for r in warm_p], "s"),
        "planner_rest_s": summarize([r["rest_s"] for r in warm_p], "s"),
        "planner_peak_rss_extra_mb": summarize([r["peak_rss_extra_mb"] for r in warm_p], "MiB"),
        "planner_cold_total_s": planner_out[0]["total_s"],
        "messages_rendered": warm[0]["messages"] if warm else None,
        "render_failures": warm[0]["render_failures"] if warm else None,
        "push_recipients": warm[0]["push_recipients"] if warm else None,
        "units": warm[0]["units"] if warm else None,
    }
    argv_used = sys.argv[1:] if argv is None else list(argv)
    doc = result_doc(
        NAME,
        argv_used,
        {**p, "county": COUNTY, "directory": bdir.describe(), "gc": args.gc},
        {"pure": pure_out, "planner": planner_out},
        summary,
    )
    path = write_results(args.out or (f"{NAME}.quick" if args.quick else NAME), doc)
    log(f"{NAME}: wrote {path}")
    return doc


if __name__ == "__main__":
    main()
