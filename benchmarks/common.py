"""Benchmarks: shared helpers — Redis, sized config directories, statistics, machine info,
child processes and a tiny fast fake provider on loopback.

Nothing here imports from `tests/`: the benchmarks build their own alerts and fakes.
Every server binds 127.0.0.1; every Redis is one started here (persistence off), so
flushing it between repetitions touches nobody else's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway.cap import to_alert
from gateway.config import Config, load_config
from gateway.ingest import alert_level, content_hash
from gateway.models import AlertRecord, AlertState, format_cap_time
from gateway.redis_server import EmbeddedRedis, find_redis_server, free_port
from gateway.samplegen import generate
from gateway.settings import read_yaml
from gateway.store import alert_id

__all__ = [
    "AGENCY_KEY",
    "COUNTY",
    "RESULTS",
    "SAMPLE",
    "BenchDir",
    "Child",
    "FakeProvider",
    "alert_json",
    "alert_record",
    "bench_config",
    "config_dir",
    "cpu_seconds",
    "machine_info",
    "new_id",
    "percentile",
    "post_alert",
    "raise_fd_limit",
    "redis_server",
    "ref_of",
    "rss_mb",
    "start_pyspy",
    "summarize",
    "write_results",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CACHE = Path(os.environ.get("WARNGATE_BENCH_CACHE", Path(tempfile.gettempdir()) / "wg-bench"))
SAMPLE = ROOT / "config"
# The county every benchmark alert covers (Changji City) and the agency that may warn it.
COUNTY = "652301"
AGENCY_KEY = "wgdemo-changji-met"
SENDER = "met.changji@warngate.example"
_COPIED = ("agencies.yaml", "hazards.yaml", "policy.yaml", "gateway.yaml")
# Provider rate limits of the sample are deployment settings (5,000/s for sms-main):
# benchmarks lift them so that they measure the gateway, not a configured cap.
UNLIMITED_RATE = 1e9
HEADERS = {"Authorization": f"Bearer {AGENCY_KEY}", "Content-Type": "application/json"}
_ids = itertools.count(1)


# -- statistics ----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) by linear interpolation; nan for no values."""
    if not values:
        return math.nan
    data = sorted(values)
    k = (len(data) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def summarize(values: Sequence[float], unit: str = "") -> dict[str, Any]:
    """Median, min, max and the raw values of several runs."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "unit": unit, "values": []}
    return {
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
        "unit": unit,
        "values": vals,
    }


# -- the machine -------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, Python, Redis and library versions, load at start."""
    try:
        out = subprocess.run(
            [find_redis_server(), "--version"], capture_output=True, text=True, check=False
        ).stdout
        redis_version = next((p[2:] for p in out.split() if p.startswith("v=")), out.strip())
    except (OSError, RuntimeError):
        redis_version = "-"
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "redis_server": redis_version,
        "libraries": {
            p: _version(p) for p in ("aiohttp", "redis", "hiredis", "orjson", "pydantic", "apprise")
        },
        "loadavg_at_start": list(os.getloadavg()),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def code_state() -> dict[str, Any]:
    """The commit measured, and which gateway files differed from it (shared work tree)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "modified": git("status", "--short", "--", "gateway", "channels", "templates").splitlines(),
    }


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default), from /proc."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mb() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, in MiB."""
    out = {"rss": math.nan, "hwm": math.nan}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                out["hwm"] = int(line.split()[1]) / 1024
    return out


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux `clear_refs` 5); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def raise_fd_limit() -> int:
    """Raise the open-files soft limit to the hard limit (10,000 sockets need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return path


# -- Redis -------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[EmbeddedRedis]:
    """A redis-server of our own on a free loopback port, persistence off."""
    with tempfile.TemporaryDirectory(prefix="wg-bench-redis-") as tmp:
        server = EmbeddedRedis(Path(tmp), persistent=False)
        server.start()
        try:
            yield server
        finally:
            server.stop()


# -- configuration directories of a given size -----------------------------------------


@dataclass(frozen=True)
class BenchDir:
    """A generated configuration directory and what the benchmark county holds."""

    path: Path
    recipients: int  # rows generated in total (all counties, all channels)
    endpoints: int
    county_sms: int
    county_app: int
    county_messenger: int
    county_endpoints: int
    county_units: int

    def describe(self) -> str:
        return (
            f"county {COUNTY}: {self.county_sms:,} SMS, {self.county_app:,} app,"
            f" {self.county_messenger:,} messenger recipients, {self.county_endpoints:,}"
            f" endpoints in {self.county_units} units (directory: {self.recipients:,}"
            f" recipients, {self.endpoints:,} endpoints)"
        )


def _county_counts(path: Path) -> dict[str, int]:
    counts = {"sms": 0, "app": 0, "messenger": 0, "endpoints": 0}
    units: set[str] = set()
    with (path / "recipients.csv").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            parts = line.split(",", 4)
            if parts[3].startswith(COUNTY):
                counts[parts[1]] += 1
    with (path / "endpoints.csv").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            parts = line.split(",", 3)
            if parts[2].startswith(COUNTY):
                counts["endpoints"] += 1
                units.add(parts[2])
    counts["units"] = len(units)
    return counts


def _generate(out: Path, recipients: int, endpoints: int) -> dict[str, int]:
    generate(out, recipients=recipients, endpoints=endpoints)
    for name in _COPIED:
        shutil.copy(SAMPLE / name, out / name)
    return _county_counts(out)


def config_dir(sms: int, endpoints: int, *, recipients: int | None = None) -> BenchDir:
    """A full configuration directory whose county COUNTY holds about `sms` SMS
    recipients and `endpoints` endpoints (`gateway.samplegen` spreads rows over three
    counties by population, so the totals are scaled up from a small probe).

    `recipients` fixes the directory's total instead (0: endpoints only). Directories
    are cached under $WARNGATE_BENCH_CACHE (default /tmp/wg-bench) by their totals.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    probe = CACHE / "probe"
    shares = _generate(probe, 100_000, 10_000)
    total_r = recipients if recipients is not None else math.ceil(sms * 100_000 / shares["sms"])
    total_e = math.ceil(endpoints * 10_000 / shares["endpoints"]) if endpoints else 0
    out = CACHE / f"dir-{total_r}-{total_e}"
    meta = out / "bench.json"
    if meta.exists():
        counts = json.loads(meta.read_text())
    else:
        if out.exists():
            shutil.rmtree(out)
        counts = _generate(out, total_r, total_e)
        meta.write_text(json.dumps(counts))
    return BenchDir(
        out,
        total_r,
        total_e,
        counts["sms"],
        counts["app"],
        counts["messenger"],
        counts["endpoints"],
        counts["units"],
    )


def bench_config(
    path: Path,
    redis_url: str,
    *,
    prefix: str = "bench",
    provider_url: str | None = None,
    redis_max_connections: int | None = None,
    **dispatch: Any,
) -> Config:
    """Load a configuration directory against our Redis; providers (if given) point at
    one fake provider with their rate limits lifted; `dispatch` overrides settings."""
    redis: dict[str, Any] = {"url": redis_url, "prefix": prefix}
    if redis_max_connections:
        redis["max_connections"] = redis_max_connections
    overrides: dict[str, Any] = {"redis": redis, "log_level": "WARNING"}
    if provider_url is not None:
        providers = read_yaml(Path(path) / "gateway.yaml").get("providers", {})
        overrides["providers"] = {
            name: {
                "url": provider_url + ("/push" if p["kind"] == "app_http" else "/send"),
                "rate_per_s": UNLIMITED_RATE,
                "timeout_s": 10.0,
            }
            for name, p in providers.items()
        }
    if dispatch:
        overrides["dispatch"] = dispatch
    return load_config(path, **overrides)


# -- alerts ------------------------------------------------------------------------------


_DESCRIPTION = (
    "预计未来3小时内昌吉市大部地区将出现50毫米以上降水，局地可达100毫米以上，"
    "并伴有雷电、短时大风等强对流天气，山区可能引发山洪、泥石流、滑坡等地质灾害，"
    "城市低洼地区可能出现严重内涝。"
)


def alert_json(
    identifier: str,
    *,
    msg_type: str = "Alert",
    references: Sequence[dict[str, Any]] = (),
    level: str = "red",
    geocodes: Sequence[str] = (COUNTY,),
    sent: datetime | None = None,
    pad_to: int = 0,
) -> dict[str, Any]:
    """A CAP 1.2 alert as JSON, from the meteorological bureau, over `geocodes`.

    `pad_to`: lengthen the description until the encoded alert is about that many bytes
    (the ingest benchmark matches the 1.9 KB body of the machine's echo ceiling).
    """
    now = datetime.now(UTC).replace(microsecond=0)
    info = {
        "language": "zh-CN",
        "category": ["Met"],
        "event": "暴雨",
        "urgency": "Immediate",
        "severity": "Extreme",
        "certainty": "Likely",
        "eventCode": [{"valueName": "hazard", "value": "rainstorm"}],
        "expires": format_cap_time(now + timedelta(hours=6)),
        "senderName": "昌吉回族自治州气象局",
        "headline": "昌吉市气象台发布暴雨红色预警",
        "description": _DESCRIPTION,
        "instruction": "请远离河道，转移到安全地带。",
        "parameter": [{"valueName": "level", "value": level}],
        "area": [
            {
                "areaDesc": "昌吉市",
                "geocode": [{"valueName": "CPEAS Geographic Code", "value": g} for g in geocodes],
            }
        ],
    }
    data: dict[str, Any] = {
        "identifier": identifier,
        "sender": SENDER,
        "sent": format_cap_time(sent or now),
        "status": "Actual",
        "msgType": msg_type,
        "scope": "Public",
        "info": [info],
    }
    if references:
        data["references"] = " ".join(ref_of(r) for r in references)
    if pad_to:
        size = len(orjson.dumps(data))
        if size < pad_to:
            extra = (pad_to - size) // 3  # CJK characters are 3 bytes in UTF-8
            info["description"] = (_DESCRIPTION * (extra // len(_DESCRIPTION) + 2))[
                : len(_DESCRIPTION) + extra
            ]
    return data


def alert_record(data: dict[str, Any]) -> AlertRecord:
    """The stored record of an alert, built as the Ingestor builds it (no Redis)."""
    alert = to_alert(data)
    return AlertRecord(
        id=alert_id(alert.sender, alert.identifier),
        agency="changji-met",
        received=datetime.now(UTC),
        level=alert_level(alert),
        hazards=["rainstorm"],
        state=AlertState.ACTIVE,
        content_hash=content_hash(alert),
        alert=alert,
        expires=max(i.expires for i in alert.info if i.expires),
    )


def ref_of(data: dict[str, Any]) -> str:
    """The CAP reference triplet of an alert."""
    return f"{data['sender']},{data['identifier']},{data['sent']}"


# -- child processes ---------------------------------------------------------------------


class Child:
    """A spawned child process that reports readiness (any picklable value) on a pipe.

    The target is called as `target(conn, *args)`; it sends one value when ready and
    may later answer requests on the same pipe. Stopped by its own handle only.
    """

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child_conn, *args), daemon=True)
        self.process.start()
        child_conn.close()
        self.ready: Any = None

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def wait_ready(self, timeout: float = 120.0) -> Any:
        if not self.conn.poll(timeout):
            self.stop()
            raise RuntimeError(f"child {self.process.name} not ready within {timeout}s")
        self.ready = self.conn.recv()
        return self.ready

    def ask(self, message: Any, timeout: float = 600.0) -> Any:
        self.conn.send(message)
        if not self.conn.poll(timeout):
            raise RuntimeError(f"child {self.process.name} did not answer {message!r}")
        return self.conn.recv()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self.conn.close()


def run_child(target: Callable[..., Any], *args: Any, timeout: float = 1800.0) -> Any:
    """Run `target(conn, *args)` in a fresh process and return the one value it sends
    (a repetition with its own peak RSS and no state left over from the last one)."""
    child = Child(target, *args)
    try:
        result = child.wait_ready(timeout)
        if isinstance(result, dict) and "error" in result:
            raise RuntimeError(f"child failed: {result['error']}")
        return result
    finally:
        child.stop()


def child_main(conn: Connection, work: Callable[[], Any]) -> None:
    """Run `work` in a child; send its result, or its traceback as {"error": …}."""
    import traceback

    try:
        result = work()
    except BaseException:
        conn.send({"error": traceback.format_exc()})
        raise
    conn.send(result)


# -- the fake provider ---------------------------------------------------------------------


class _Tally:
    """What the fake provider was handed, per kind (`sms`, `app`, `hook`)."""

    def __init__(self) -> None:
        self.timeline: dict[str, list[tuple[float, int]]] = {}
        self.seen: dict[str, set[str]] = {}
        self.dupes: dict[str, int] = {}
        self.hooks: dict[str, int] = {}

    def add(self, kind: str, ids: list[str]) -> None:
        self.timeline.setdefault(kind, []).append((time.time(), len(ids)))
        seen = self.seen.setdefault(kind, set())
        before = len(seen)
        seen.update(ids)
        self.dupes[kind] = self.dupes.get(kind, 0) + len(ids) - (len(seen) - before)

    def stats(self) -> dict[str, Any]:
        return {
            "timeline": self.timeline,
            "dupes": self.dupes,
            "unique": {k: len(v) for k, v in self.seen.items()},
            "hooks": len(self.hooks),
            "hook_messages": sum(self.hooks.values()),
        }


def fake_app(tally: _Tally) -> web.Application:
    """Answers every recipient accepted: `/send` (SMS), `/push` (app), `/hook/{n}`
    (1,000 webhook receivers on distinct paths of one port), `/send-reference` (SMS,
    not counted: for reference loops); `/stats`, `/reset`."""

    def results(ids: list[str], status: str) -> web.Response:
        body = orjson.dumps({"results": [{"id": i, "status": status} for i in ids]})
        return web.Response(body=body, content_type="application/json")

    async def send(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        ids = [r["id"] for r in body.get("recipients", ())]
        tally.add("sms", ids)
        return results(ids, "accepted")

    async def send_untallied(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        return results([r["id"] for r in body.get("recipients", ())], "accepted")

    async def push(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        tokens = body.get("tokens", ())
        ids = [r["id"] for r in tokens]
        tally.add("app", ids)
        for r in tokens:  # tokens named hook-N stand for webhook receiver N
            if r["token"].startswith("hook-"):
                tally.hooks[r["token"][5:]] = tally.hooks.get(r["token"][5:], 0) + 1
        return results(ids, "ok")

    async def hook(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        n = request.match_info["n"]
        tally.hooks[n] = tally.hooks.get(n, 0) + 1
        tokens = body.get("tokens") if isinstance(body, dict) else None
        if tokens:  # warngate's app adapter posting to one receiver
            ids = [r["id"] for r in tokens]
            tally.add("hook", ids)
            return results(ids, "ok")
        tally.add("hook", [f"{n}:{len(tally.timeline.get('hook', ()))}"])
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(tally.stats()), content_type="application/json")

    async def reset(request: web.Request) -> web.Response:
        tally.__init__()  # type: ignore[misc]
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_post("/send", send)
    app.router.add_post("/send-reference", send_untallied)
    app.router.add_post("/push", push)
    app.router.add_post("/hook/{n}", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


def _fake_main(conn: Connection, port: int) -> None:
    raise_fd_limit()

    async def serve() -> None:
        runner = web.AppRunner(fake_app(_Tally()), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        conn.send(port)
        await asyncio.Event().wait()

    asyncio.run(serve())


class FakeProvider:
    """The fake provider in its own process (so it costs the gateway no event-loop time)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.child = Child(_fake_main, self.port)
        self.child.wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.child.pid

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/stats", timeout=30) as resp:
            data: dict[str, Any] = orjson.loads(resp.read())
        return data

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/reset", method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass

    def stop(self) -> None:
        self.child.stop()

    def __enter__(self) -> FakeProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def timeline_marks(
    timeline: Sequence[tuple[float, int]], total: int, t0: float
) -> dict[str, float | int]:
    """From (time, n) calls: deliveries, seconds from t0 to the first, to 95 %, to the last."""
    done = 0
    marks: dict[str, float | int] = {"count": 0, "first_s": math.nan, "p95_s": math.nan,
                                     "last_s": math.nan}  # fmt: skip
    for t, n in sorted((float(t), int(n)) for t, n in timeline):
        if done == 0:
            marks["first_s"] = t - t0
        done += int(n)
        if math.isnan(float(marks["p95_s"])) and done >= 0.95 * total:
            marks["p95_s"] = t - t0
        marks["last_s"] = t - t0
    marks["count"] = done
    return marks


def new_id(tag: str) -> str:
    """A CAP identifier no other run uses."""
    return f"BENCH-{tag}-{time.time_ns()}-{next(_ids)}"


async def post_alert(port: int, data: dict[str, Any]) -> tuple[float, float, dict[str, Any]]:
    """POST an alert; (time sent, time answered, answer)."""
    async with aiohttp.ClientSession() as http:
        t_post = time.time()
        async with http.post(
            f"http://127.0.0.1:{port}/api/v1/alerts", data=orjson.dumps(data), headers=HEADERS
        ) as resp:
            body: dict[str, Any] = await resp.json()
            assert resp.status == 202, body
        return t_post, time.time(), body


def start_pyspy(pyspy: str | None, pid: int, out: str) -> subprocess.Popen[bytes] | None:
    """py-spy recording a process until sent SIGINT (raw collapsed stacks)."""
    if not pyspy:
        return None
    spy = subprocess.Popen(
        [pyspy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
         "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)
    return spy


def result_doc(
    name: str, argv: Sequence[str], params: dict[str, Any], runs: Any, summary: dict[str, Any]
) -> dict[str, Any]:
    """The JSON written for one benchmark run."""
    return {
        "name": name,
        "command": " ".join(["python", "-m", f"benchmarks.{name}", *argv]),
        "machine": machine_info(),
        "code": code_state(),
        "params": params,
        "summary": summary,
        "runs": runs,
    }


def as_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
