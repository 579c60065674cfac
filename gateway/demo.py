"""Demo: the sample county at work — issue, downgrade and lift a red rainstorm warning.

Starts the embedded Redis, the gateway with its workers on 127.0.0.1:8080, and the
simulated county around it (SMS gateway, push service, loudspeakers and screens,
messengers; time compressed 20×), posts a red rainstorm warning for Changji City in
Chinese and Uyghur from the sample meteorological bureau, then an update to orange and
a cancellation, printing deliveries, coverage against the 95 % target beside the
simulator's ground truth, and the messages as rendered. Then it keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config
from gateway.models import format_cap_time
from gateway.sim import DeviceBehaviour, SimSettings, Simulation

__all__ = ["run_demo"]

MET_KEY = "wgdemo-changji-met"
MET_SENDER = "met.changji@warngate.example"
DUTY_KEY = "wgdemo-changji-duty"
AREA = "652301"  # Changji City
SHOW_UNIT = "652301001001"
CHANNELS = ("sms", "app", "loudspeaker", "display", "messenger")


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
            cov = report.get("coverage", 0.0)
            truth = self.sim.compare(report)["truth"] if report.get("planned") else 0.0
            line = " | ".join(parts)
            line += f"\n          coverage {cov * 100:5.1f}% (ground truth {truth * 100:5.1f}%)"
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


async def _scenario(demo: Demo) -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    refs: list[str] = []
    steps = [
        ("Alert", "red", "1. A red rainstorm warning for Changji City (zh + ug)"),
        ("Update", "orange", "2. Downgraded to orange"),
        ("Cancel", "orange", "3. Lifted (解除)"),
    ]
    for n, (msg_type, level, title) in enumerate(steps, start=1):
        print(f"\n{title}")
        data = demo_alert(f"DEMO-{stamp}-{n}", msg_type, level, " ".join(refs) or None)
        body = await demo.post(data)
        refs.append(f"{data['sender']},{data['identifier']},{data['sent']}")
        report = await demo.follow(body["id"])
        if report.get("planned"):
            cmp = demo.sim.compare(report)
            target = report["target"]
            print(
                f"  => coverage {cmp['gateway'] * 100:.1f}% (bounds {report['lower'] * 100:.1f}"
                f"–{report['upper'] * 100:.1f}%), ground truth {cmp['truth'] * 100:.1f}%,"
                f" target {target['binding'] * 100:.0f}% within {target['deadline_minutes']} min:"
                f" {target['verdict']}"
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

    async def main() -> None:
        sim = Simulation(config, SimSettings(time_scale=0.05, devices=DeviceBehaviour(wait_s=20)))
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
