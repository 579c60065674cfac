"""Demo: serve the sample county and walk one warning through issue, update and cancel."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config
from gateway.models import format_cap_time

__all__ = ["run_demo"]

log = logging.getLogger("warngate.demo")
MET_KEY = "wgdemo-changji-met"
MET_SENDER = "met.changji@warngate.example"


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
            {**common, "language": "zh-CN", "headline": "昌吉市暴雨预警"},
            {
                **common,
                "language": "ug-CN",
                "headline": "سانجى شەھىرى قاتتىق يامغۇر ئاگاھلاندۇرۇشى",
            },
        ],
    }
    if references:
        data["references"] = references
    return data


async def _walk(base: str) -> None:
    headers = {"Authorization": f"Bearer {MET_KEY}", "Content-Type": "application/json"}
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    async with aiohttp.ClientSession(base) as http:
        refs: list[str] = []
        steps = [("Alert", "red"), ("Update", "orange"), ("Cancel", "orange")]
        for n, (msg_type, level) in enumerate(steps, start=1):
            data = demo_alert(f"DEMO-{stamp}-{n}", msg_type, level, " ".join(refs) or None)
            async with http.post("/api/v1/alerts", json=data, headers=headers) as resp:
                body = await resp.json(content_type=None)
            print(f"\n== {msg_type} ({level}) -> HTTP {resp.status}: id {body.get('id')}")
            for key in ("supersedes", "cancels", "warnings"):
                if key in body:
                    print(f"   {key}: {body[key]}")
            refs.append(f"{data['sender']},{data['identifier']},{data['sent']}")
            async with http.get(f"/api/v1/alerts/{body['id']}", headers=headers) as resp:
                state = (await resp.json())["state"]
            print(f"   state now: {state}")
        async with http.get("/api/v1/alerts", headers=headers) as resp:
            listed = (await resp.json())["alerts"]
        print("\nAlerts and their states:")
        for a in listed[:6]:
            print(f"   {a['id']}  {a['msgType']:<6} {a['level']:<6} {a['state']}")


def run_demo(config: Config) -> int:
    s = config.settings

    async def main() -> None:
        app = create_app(config)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, s.host, s.port)
        await site.start()
        base = f"http://{s.host}:{s.port}"
        print(f"warngate serving the sample configuration at {base}")
        try:
            await _walk(base)
            print(
                f"\nThe gateway keeps serving. Metrics: {base}/metrics"
                f"  Alerts: {base}/api/v1/alerts\n"
                "Post your own alert (see README). Stop with Ctrl-C."
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
    return 0
