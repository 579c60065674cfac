"""Simulator: everything a county has around the gateway, on loopback, with ground truth.

`Simulation` starts the fake SMS gateways and push service (at the ports the gateway's
configuration names, or free ones), the fleet of loudspeakers and screens, and the
messengers; it keeps the truth and compares it with the gateway's own figures per
alert. Given a world (`SimSettings.world`, `warngate simulate --world FILE`) and a
directory with households, the truth is the world's (gateway.sim.truth): true radii,
lying devices, people away, hearing, reading, telling — what definition v2 is judged
against. Otherwise it is the older span model of gateway.sim.population (v1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gateway.config import Config
from gateway.coverage import DEFINITION
from gateway.endpoints.keyring import device_keys
from gateway.samplegen import device_token
from gateway.sim.fleet import DeviceBehaviour, EndpointClient, Fleet
from gateway.sim.population import Population, Truth
from gateway.sim.providers import MessengerBehaviour, ProviderBehaviour, SimProvider
from gateway.sim.truth import LiveTruth
from gateway.sim.worldgen import from_registry
from gateway.sim.worldspec import WorldSpec

__all__ = [
    "DeviceBehaviour",
    "EndpointClient",
    "MessengerBehaviour",
    "ProviderBehaviour",
    "SimSettings",
    "Simulation",
]

log = logging.getLogger("warngate.sim")


@dataclass(frozen=True)
class SimSettings:
    seed: int = 7
    correlation: float = 0.5  # phones cluster near loudspeakers (0: independent)
    time_scale: float = 1.0  # multiplies every simulated delay (the demo compresses time)
    sms: ProviderBehaviour = field(default_factory=ProviderBehaviour)
    app: ProviderBehaviour = field(
        default_factory=lambda: ProviderBehaviour(undelivered=0.2, receipt_loss=0.1)
    )
    devices: DeviceBehaviour = field(default_factory=DeviceBehaviour)
    messengers: MessengerBehaviour = field(default_factory=MessengerBehaviour)
    # Endpoint ids to simulate (None: all of the directory).
    only_endpoints: frozenset[str] | None = None
    # The world whose people and devices are the truth (needs households).
    world: WorldSpec | None = None


@dataclass
class Simulation:
    config: Config
    settings: SimSettings = field(default_factory=SimSettings)
    providers: dict[str, SimProvider] = field(default_factory=dict)
    fleet: Fleet | None = None
    session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        s = self.settings
        directory = self.config.directory
        self.population = Population(
            directory, s.seed, s.correlation, self.config.settings.dispatch.household_size
        )
        self.truth = Truth(directory)
        self.live: LiveTruth | None = None
        if s.world is not None and directory.households is not None:
            self.live = LiveTruth(from_registry(s.world, directory), s.seed)

    def point_at(self, gateway: str) -> None:
        """Where receipts and relay acknowledgements go (the gateway's base URL)."""
        for provider in self.providers.values():
            provider.gateway = gateway.rstrip("/")

    async def start_providers(
        self, gateway: str = "", *, fixed_ports: bool = False
    ) -> dict[str, str]:
        """Start one fake per configured provider; their URLs by provider name.

        `fixed_ports`: listen where the configuration says (for `warngate simulate` next
        to a `warngate serve` using the same configuration); else on free ports.
        """
        self.session = self.session or aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0)
        )
        s = self.settings
        for i, (name, cfg) in enumerate(sorted(self.config.settings.providers.items())):
            kind = "app" if cfg.kind == "app_http" else "sms"
            token = cfg.callback_token.get_secret_value() if cfg.callback_token else ""
            provider = SimProvider(
                name,
                kind,
                s.app if kind == "app" else s.sms,
                directory=self.config.directory,
                population=self.population,
                truth=self.truth,
                callback_token=token,
                messengers=s.messengers if kind == "sms" else None,
                time_scale=s.time_scale,
                seed=s.seed + 100 + i,
                live=self.live,
            )
            port = (urlsplit(cfg.url).port or 0) if fixed_ports else 0
            await provider.start(self.session, gateway, port)
            self.providers[name] = provider
        return {name: p.url for name, p in self.providers.items()}

    def configure(self, config: Config) -> Config:
        """The same configuration with every provider pointing at this simulation."""
        s = config.settings
        providers = {
            name: p.model_copy(update={"url": self.providers[name].url})
            for name, p in s.providers.items()
        }
        settings = s.model_copy(update={"providers": providers})
        return Config(settings, config.registry, config.hazards, config.directory, config.policy)

    async def start_fleet(self, gateway: str) -> Fleet:
        assert self.session is not None, "start the providers first"
        s = self.settings
        self.fleet = Fleet(
            self.config.directory,
            self.population,
            self.truth,
            s.devices,
            device_token,
            time_scale=s.time_scale,
            seed=s.seed + 200,
            only=set(s.only_endpoints) if s.only_endpoints is not None else None,
            trusted=device_keys(self.config.settings),
            live=self.live,
        )
        await self.fleet.start(self.session, gateway)
        return self.fleet

    async def close(self) -> None:
        if self.fleet is not None:
            await self.fleet.close()
        for provider in self.providers.values():
            await provider.close()
        if self.session is not None:
            await self.session.close()

    def compare(self, report: dict[str, Any]) -> dict[str, Any]:
        """The gateway's coverage report of an alert beside the ground truth."""
        units = [u["unit"] for u in report.get("units", [])]
        if self.live is not None and report.get("definition") == "warngate-coverage-v2":
            delivered, informed = self.live.shares(report["alert"], units)
            return {
                "alert": report["alert"],
                "definition": report["definition"],
                "delivered": report["delivered"],
                "informed": report["informed"],
                "informed_interval": report["informed_interval"],
                "truth_delivered": round(delivered, 4),
                "truth_informed": round(informed, 4),
                # For the older callers: the gateway's D against the delivered truth.
                "gateway": report["delivered"],
                "truth": round(delivered, 4),
                "error": round(report["delivered"] - delivered, 4),
            }
        truth = self.truth.coverage(report["alert"], units)
        gateway = float(report.get("coverage", 0.0))
        per_unit = []
        for u in report.get("units", []):
            pop = u["population"]
            true_share = self.truth.persons(report["alert"], u["unit"]) / pop if pop else 0.0
            per_unit.append(
                {"unit": u["unit"], "gateway": u["coverage"], "truth": round(true_share, 4)}
            )
        return {
            "alert": report["alert"],
            "definition": report.get("definition", DEFINITION),
            "gateway": round(gateway, 4),
            "lower": report.get("lower"),
            "upper": report.get("upper"),
            "truth": round(truth, 4),
            "error": round(gateway - truth, 4),
            "units": per_unit,
        }

    def stats(self) -> dict[str, Any]:
        fleet = self.fleet
        return {
            "providers": {
                n: {"calls": p.calls, "accepted": p.accepted} for n, p in self.providers.items()
            },
            "devices": len(fleet.clients) if fleet else 0,
            "offline_devices": len(fleet.offline) if fleet else 0,
            "plays": sum(len(c.played) for c in fleet.clients) if fleet else 0,
        }
