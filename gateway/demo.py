"""Demo: the sample county at work — issue, downgrade and lift a red rainstorm warning.

Starts the embedded Redis, the gateway with its workers on 127.0.0.1:8080, and the
simulated county around it (SMS gateway, push service, loudspeakers and screens,
messengers, and the people of a world: config/worlds/demo.yaml), posts a red
rainstorm warning for Changji City in Chinese and Uyghur from the sample
meteorological bureau and follows it past its deadline: D (delivered) and C (persons
informed, with its 90 % interval) beside the world's truth, villages below target
escalated at half their deadline and their coverage rising, time to target. Then an
update to orange and a cancellation, and the messages as rendered. It says on screen
that the clock is compressed: the plan's deadlines run five times faster (a red
warning's 10 minutes are 2), and so do the simulated delays. Then it keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config
from gateway.models import format_cap_time
from gateway.policy import Policy, Targets
from gateway.sim import DeviceBehaviour, MessengerBehaviour, SimSettings, Simulation
from gateway.sim.worldspec import WorldSpec, load_worlds

__all__ = ["run_demo"]

MET_KEY = "wgdemo-changji-met"
MET_SENDER = "met.changji@warngate.example"
DUTY_KEY = "wgdemo-changji-duty"
AREA = "652301"  # Changji City
SHOW_UNIT = "652301001001"
CHANNELS = ("sms", "app", "loudspeaker", "display", "messenger")
COMPRESSION = 5  # the plan's deadlines and the simulated delays run this much faster
WORLD = Path(__file__).resolve().parent.parent / "config" / "worlds" / "demo.yaml"


def compressed(policy: Policy, factor: int = COMPRESSION) -> Policy:
    """The same policy with every deadline `factor` times shorter (at least a minute)."""
    rules = []
    for r in policy.rules:
        targets = r.targets or Targets()
        minutes = {lvl: max(1, m // factor) for lvl, m in targets.deadline_minutes.items()}
        rules.append(
            r.model_copy(
                update={"targets": targets.model_copy(update={"deadline_minutes": minutes})}
            )
        )
    return Policy(rules)


def demo_alert(
    identifier: str, msg_type: str, level: str, references: str | None = None
) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    severity = {"red": "Extreme", "orange": "Severe", "yellow": "Moderate", "blue": "Minor"}[level]
    area = {
        "areaDesc": "昌吉市",
        "geocode": [{"valueName": "CPEAS Geographic Code", "value": "652301000000"}],
    }
    common = {
        "category": ["Met"],
        "event": "暴雨",
        "urgency": "Immediate",
        "severity": severity,
        "certainty": "Likely",
        "eventCode": [{"valueName": "hazard", "value": "rainstorm"}],
        "expires": format_cap_time(now + timedelta(hours=6)),
        "parameter": [{"valueName": "level", "value": level}],
        "area": [area],
    }
    data: dict[str, Any] = {
        "identifier": identifier,
        "sender": MET_SENDER,
        "sent": format_cap_time(now),
        "status": "Actual",
        "msgType": msg_type,
        "scope": "Public",
        "info": [
            {**common, "language": "zh-CN", "senderName": "昌吉回族自治州气象局"},
            {**common, "language": "ug-CN", "senderName": "سانجى ئوبلاستلىق ھاۋارايى ئىدارىسى"},
        ],
    }
    if references:
        data["references"] = references
    return data


class Demo:
    def __init__(self, http: aiohttp.ClientSession, base: str, sim: Simulation) -> None:
        self.http = http
        self.base = base
        self.sim = sim

    async def get(self, path: str, key: str = DUTY_KEY) -> dict[str, Any]:
        async with self.http.get(
            self.base + path, headers={"Authorization": f"Bearer {key}"}
        ) as resp:
            body: dict[str, Any] = await resp.json(content_type=None)
            return body

    async def post(self, data: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(
            self.base + "/api/v1/alerts",
            data=orjson.dumps(data),
            headers={"Authorization": f"Bearer {MET_KEY}", "Content-Type": "application/json"},
        ) as resp:
            body: dict[str, Any] = await resp.json(content_type=None)
            print(f"  POST /api/v1/alerts -> HTTP {resp.status}  id {body.get('id')}")
            return body

    async def follow(self, alert: str, seconds: float = 25.0) -> dict[str, Any]:
        """Print deliveries and coverage every second until things settle."""
        started = time.monotonic()
        last = ""
        report: dict[str, Any] = {}
        while time.monotonic() - started < seconds:
            await asyncio.sleep(1.0)
            d = await self.get(f"/api/v1/alerts/{alert}/deliveries")
            report = await self.get(f"/api/v1/alerts/{alert}/coverage")
            parts = []
            for ch in CHANNELS:
                counts = d.get("counts", {}).get(ch)
                if counts:
                    parts.append(f"{ch} " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
            cov = report.get("delivered", report.get("coverage", 0.0))
            truth = self.sim.compare(report)["truth"] if report.get("planned") else 0.0
            line = " | ".join(parts)
            line += f"\n          delivered {cov * 100:5.1f}% (ground truth {truth * 100:5.1f}%)"
            line += f", target {report.get('target', {}).get('binding', 0.95) * 100:.0f}%"
            if line != last:
                print(f"  t+{time.monotonic() - started:3.0f}s  {line}", flush=True)
                last = line
            push = ("sms", "app", "messenger")  # offline devices stay queued: not waited for
            waiting = sum(c.get("queued", 0) for k, c in d.get("counts", {}).items() if k in push)
            busy = sum(len(p._tasks) for p in self.sim.providers.values())
            if d.get("planning_done") and waiting == 0 and busy == 0:
                break
        return report

    async def show_messages(self, alert: str, kind: str) -> None:
        """The rendered texts of one village, per channel and language."""
        body = await self.get(f"/api/v1/alerts/{alert}/messages?unit={SHOW_UNIT}")
        for m in body.get("messages", []):
            if m["kind"] != kind:
                continue
            text = m["text"].replace("\n", " ")
            if m.get("title"):
                text = f"{m['title']} | {text}"
            print(f"  [{m['channel']}/{m['language']}] {text[:200]}")


def _pct(x: float) -> str:
    return f"{x * 100:5.1f}%"


async def _follow_v2(demo: Demo, alert: str, seconds: float) -> dict[str, Any]:
    """D and C beside the truth every few seconds; escalations as they are taken."""
    started = time.monotonic()
    seen: set[tuple[str, str]] = set()
    before: dict[str, float] = {}
    report: dict[str, Any] = {}
    previous: dict[str, dict[str, Any]] = {}  # units as the last round saw them
    while time.monotonic() - started < seconds:
        await asyncio.sleep(6.0)
        report = await demo.get(f"/api/v1/alerts/{alert}/coverage")
        if not report.get("planned"):
            continue
        cmp = demo.sim.compare(report)
        low, high = report["informed_interval"]
        below = report["units_below_target"]
        elapsed = time.monotonic() - started
        print(
            f"  t+{elapsed:3.0f}s (plan clock T+{elapsed * COMPRESSION / 60:4.1f} min)"
            f"  D {_pct(report['delivered'])} (truth {_pct(cmp.get('truth_delivered', 0.0))}),"
            f" with unconfirmed {_pct(report['delivered_estimate'])}"
            f" | C {_pct(report['informed'])} [{_pct(low)} – {_pct(high)}]"
            f" (truth {_pct(cmp.get('truth_informed', 0.0))})"
            f" | {below} of {len(report['units'])} villages below"
            f" {report['target']['binding'] * 100:.0f}%",
            flush=True,
        )
        units = {u["unit"]: u for u in report["units"]}
        for e in report.get("escalations", []):
            key = (e["unit"], str(e.get("checkpoint")))
            if key in seen or not e.get("step"):
                continue
            seen.add(key)
            before[e["unit"]] = previous.get(e["unit"], units.get(e["unit"], {})).get(
                "informed", 0.0
            )
            div = demo.sim.config.directory.divisions.get(e["unit"])
            name = div.label("zh") if div else ""
            print(
                f"      escalated {e['unit']} {name} at {e.get('checkpoint', 1):g} of its"
                f" deadline (D {_pct(e['coverage'])}, heading for"
                f" {_pct(e.get('projected', e['coverage']))}): {e['step']}"
            )
        previous = units
    if before and report.get("units"):
        units = {u["unit"]: u for u in report["units"]}
        rose = [units[u]["informed"] - c for u, c in before.items() if u in units]
        print(
            f"  {len(before)} villages escalated; their persons informed (C) rose by"
            f" {sum(rose) / len(rose) * 100:+.1f} points on average since the step"
            f" (a repeat is another chance to hear: it adds to C, not to D)"
        )
    return report


async def _scenario(demo: Demo) -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    refs: list[str] = []
    steps = [
        ("Alert", "red", "1. A red rainstorm warning for Changji City (zh + ug)", 180.0),
        ("Update", "orange", "2. Downgraded to orange", 25.0),
        ("Cancel", "orange", "3. Lifted (解除)", 25.0),
    ]
    print(
        f"\nCompressed clock: the plan's deadlines run {COMPRESSION}x faster here (a red"
        f" warning's 10 minutes are {10 // COMPRESSION}, each village is checked at half of"
        f" it), and so do the simulated delays. Times on the gateway's own minutes."
    )
    for n, (msg_type, level, title, follow) in enumerate(steps, start=1):
        print(f"\n{title}")
        data = demo_alert(f"DEMO-{stamp}-{n}", msg_type, level, " ".join(refs) or None)
        body = await demo.post(data)
        refs.append(f"{data['sender']},{data['identifier']},{data['sent']}")
        if msg_type == "Cancel":
            await demo.follow(body["id"], seconds=follow)
        else:
            report = await _follow_v2(demo, body["id"], follow)
            if report.get("planned"):
                t = report["target"]
                ttt = report["time_to_target"]

                def by(m: int | None) -> str:
                    return f"by T+{m} min" if m is not None else "not reached"

                print(
                    f"  => at the deadline ({t['deadline_minutes']} min): D"
                    f" {_pct(t['delivered_at_deadline'])} ({t['verdict']}), C"
                    f" {_pct(t['informed_at_deadline'])} ({t['informed_verdict']});"
                    f" time to the {t['binding'] * 100:.0f}% target: D"
                    f" {by(ttt['delivered']['binding'])}, C {by(ttt['informed']['binding'])}"
                )
        print(f"  messages as rendered for village {SHOW_UNIT}:")
        await demo.show_messages(
            body["id"], {"Alert": "alert", "Update": "update"}.get(msg_type, "cancel")
        )
    fleet = demo.sim.fleet
    if fleet is not None:
        print(f"\n  devices that played a warning after it was lifted: "
              f"{len(fleet.played_after_cancel())}")  # fmt: skip


def run_demo(config: Config) -> int:
    s = config.settings
    # The demo prints its own account; the gateway's routine log lines would drown it.
    logging.getLogger("warngate").setLevel(logging.WARNING)

    world = load_worlds(WORLD)[0] if WORLD.exists() else WorldSpec(name="demo")
    coverage = config.settings.coverage.model_copy(update={"interval_s": 2.0})
    config = Config(
        config.settings.model_copy(update={"coverage": coverage}),
        config.registry,
        config.hazards,
        config.directory,
        compressed(config.policy),
    )

    async def main() -> None:
        sim = Simulation(
            config,
            SimSettings(
                time_scale=1 / COMPRESSION,
                devices=DeviceBehaviour(wait_s=20),
                messengers=MessengerBehaviour(relay_delay_s=(60.0, 240.0)),
                world=world,
            ),
        )
        await sim.start_providers()
        app = create_app(sim.configure(config))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, s.host, s.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            await sim.close()
            raise SystemExit(f"cannot listen on {s.host}:{s.port}: {exc}") from None
        base = f"http://{s.host}:{s.port}"
        sim.point_at(base)
        fleet = await sim.start_fleet(base)
        print(
            f"warngate is serving the sample configuration at {base}\n"
            f"simulated county: {len(fleet.clients)} loudspeakers and screens online"
            f" ({len(fleet.offline)} offline), SMS/app providers and messengers on loopback"
        )
        try:
            async with aiohttp.ClientSession() as http:
                await _scenario(Demo(http, base, sim))
            print(
                f"\nWhere to look:\n"
                f"  {base}/metrics                              Prometheus metrics\n"
                f"  {base}/api/v1/alerts   (Bearer {DUTY_KEY})  alerts and their state\n"
                f"  warngate report <alert-id> --config config  coverage table\n"
                f"Post your own alert (README, 'Post your own alert'). Stop with Ctrl-C."
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await sim.close()
            await runner.cleanup()

    asyncio.run(main())
    return 0
