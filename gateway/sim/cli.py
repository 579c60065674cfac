"""Simulator: the `warngate simulate` and `warngate endpoint-sim` commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

import aiohttp
import orjson

from gateway.config import Config
from gateway.endpoints.keyring import device_keys, trusted_keys
from gateway.endpoints.mqtt import broker_address
from gateway.endpoints.signing import Verifier
from gateway.samplegen import device_token
from gateway.settings import MqttSettings
from gateway.sim import DeviceBehaviour, ProviderBehaviour, SimSettings, Simulation
from gateway.sim.fleet import EndpointClient
from gateway.sim.mqttdevice import MqttDevice
from gateway.sim.worldspec import load_worlds

__all__ = ["run_endpoint", "run_simulate"]


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_simulate(config: Config, args: argparse.Namespace) -> int:
    """Providers at the ports the configuration names, devices polling the gateway, and
    every so often each live alert's coverage beside the ground truth."""
    world = None
    if getattr(args, "world", None) is not None:
        worlds = load_worlds(args.world)
        name = getattr(args, "world_name", None)
        world = next((w for w in worlds if w.name == name), None) if name else worlds[0]
        if world is None:
            print(f"no world {name!r} in {args.world}")
            return 2
        if config.directory.households is None:
            print("a world needs a directory with households (households.csv)")
            return 2
        print(f"world {world.name}: its people, radii and device fates are the truth")
    settings = SimSettings(
        time_scale=args.time_scale,
        correlation=args.correlation,
        sms=ProviderBehaviour(failure_rate=args.sms_failure, receipt_loss=args.receipt_loss),
        devices=DeviceBehaviour(offline=args.offline, flaky=args.flaky),
        world=world,
    )
    sim = Simulation(config, settings)
    urls = await sim.start_providers(args.gateway, fixed_ports=True)
    for name, url in urls.items():
        print(f"provider {name}: {url}")
    fleet = await sim.start_fleet(args.gateway)
    print(f"{len(fleet.clients)} devices polling {args.gateway} ({len(fleet.offline)} offline)")
    stop = _stop_on_signals()
    headers = {"Authorization": f"Bearer {args.operator_key}"}
    try:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.report_every)
                await _report(http, args.gateway, headers, sim)
    finally:
        await sim.close()
    return 0


async def _report(
    http: aiohttp.ClientSession, base: str, headers: dict[str, str], sim: Simulation
) -> None:
    try:
        async with http.get(f"{base}/api/v1/alerts?limit=20", headers=headers) as resp:
            alerts = (await resp.json())["alerts"]
        for a in alerts:
            if a["msgType"] == "Cancel":
                continue
            async with http.get(f"{base}/api/v1/alerts/{a['id']}/coverage", headers=headers) as r:
                report: dict[str, Any] = await r.json()
            if not report.get("planned"):
                continue
            cmp = sim.compare(report)
            if "truth_informed" in cmp:
                low, high = cmp["informed_interval"]
                print(
                    f"{a['id']} {a['level']:<6} {a['state']:<9}"
                    f" D {cmp['delivered'] * 100:5.1f}%"
                    f" (truth {cmp['truth_delivered'] * 100:5.1f}%)"
                    f"  C {cmp['informed'] * 100:5.1f}% [{low * 100:.1f}, {high * 100:.1f}]"
                    f" (truth {cmp['truth_informed'] * 100:5.1f}%)"
                )
                continue
            print(
                f"{a['id']} {a['level']:<6} {a['state']:<9} gateway {cmp['gateway'] * 100:5.1f}%"
                f"  truth {cmp['truth'] * 100:5.1f}%  error {cmp['error'] * 100:+5.1f} points"
            )
    except (aiohttp.ClientError, KeyError) as exc:
        print(f"cannot read coverage from {base}: {exc}")


async def run_endpoint(config: Config, args: argparse.Namespace) -> int:
    """One device: print what it plays (the reference client of the endpoint protocol)."""
    endpoint = config.directory.endpoints.get(args.id)
    if endpoint is None:
        print(f"no endpoint {args.id!r} in the configuration")
        return 2

    async def show(client: Any, message: dict[str, Any]) -> None:
        again = f" (repeat {message['repeat']})" if message.get("repeat") else ""
        print(
            f"[{message['action']}] {message['id']} {message.get('level')}"
            f" seq {message['seq']}{again}"
        )
        for part in message.get("content", []):
            if "pages" in part:
                for page in part["pages"]:
                    print(f"   ({part['language']}) " + " / ".join(page))
            else:
                print(f"   ({part['language']}, {part.get('seconds')} s) {part['text']}")

    stop = _stop_on_signals()
    if args.keys is not None:
        trusted = trusted_keys(orjson.loads(args.keys.read_bytes())["signing"]["keys"])
    else:
        trusted = device_keys(config.settings)
    if args.mqtt:
        host, port, _, _, _ = broker_address(MqttSettings(url=args.mqtt))
        device = MqttDevice(host, port, endpoint, password=args.token or device_token(endpoint.id),
                            prefix=config.settings.endpoints.mqtt.prefix,
                            verifier=Verifier(trusted), on_play=show)  # fmt: skip
        print(f"{endpoint.kind.value} {endpoint.id} of unit {endpoint.unit} on {args.mqtt}")
        await device.run(stop)
        return 0
    async with aiohttp.ClientSession() as http:
        client = EndpointClient(
            session=http,
            base=args.gateway,
            endpoint=endpoint,
            token=args.token or device_token(endpoint.id),
            on_play=show,
            wait_s=args.wait,
            verifier=Verifier(trusted),
        )
        print(f"{endpoint.kind.value} {endpoint.id} of unit {endpoint.unit} polling {args.gateway}")
        await client.run(stop)
    return 0
