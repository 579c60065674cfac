"""Definition v2 end to end over HTTP: a township of the sample run through the real
gateway and its background workers, with a world's people and devices as the truth
(gateway.sim.truth). Where the registry is right, no device lies and no receipt is lost,
D on confirmed receipts is not an estimate: it must equal the share of residents whose
household something really reached — exactly."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import Config
from gateway.sim import (
    DeviceBehaviour,
    MessengerBehaviour,
    ProviderBehaviour,
    SimSettings,
    Simulation,
)
from gateway.sim.worldspec import WorldSpec
from tests import alerts as A
from tests.test_crash import until
from tests.test_simulation import post, report

TOWNSHIP = "652301001"


async def test_delivered_equals_the_truth_where_the_registry_is_right(
    redis: Any, aiohttp_server: Any, aiohttp_client: Any, config: Config
) -> None:
    world = WorldSpec.model_validate(
        {
            "name": "honest-township",
            "county": TOWNSHIP,
            "registered_radius_is_true": True,
            "lying_devices": 0.0,
            "broken_devices": 0.0,
            "offline_devices": 0.1,
        }
    )
    endpoints = frozenset(
        e.id for e in config.directory.endpoints.values() if e.unit.startswith(TOWNSHIP)
    )
    sim = Simulation(
        config,
        SimSettings(
            time_scale=0.002,
            sms=ProviderBehaviour(receipt_loss=0.0, undelivered=0.05, receipt_delay_s=(1, 5)),
            app=ProviderBehaviour(receipt_loss=0.0, undelivered=0.2, receipt_delay_s=(1, 5)),
            devices=DeviceBehaviour(flaky=0.0, slow=0.3, wait_s=5),
            messengers=MessengerBehaviour(responsive=1.0),
            only_endpoints=endpoints,
            world=world,
        ),
    )
    await sim.start_providers()
    cfg = sim.configure(config)
    d = cfg.settings.dispatch.model_copy(update={"block_ms": 50, "claim_idle_s": 2.0})
    cfg = Config(cfg.settings.model_copy(update={"dispatch": d}), cfg.registry, cfg.hazards,
                 cfg.directory, cfg.policy)  # fmt: skip
    server = await aiohttp_server(create_app(cfg))
    base = str(server.make_url("/")).rstrip("/")
    sim.point_at(base)
    fleet = await sim.start_fleet(base)
    client = await aiohttp_client(server)
    try:
        body = await post(client, A.alert(geocodes=[TOWNSHIP]))

        async def settled() -> bool:
            pending = sum(len(p._tasks) + len(p._receipts) for p in sim.providers.values())
            got = await (
                await client.get(
                    f"/api/v1/alerts/{body['id']}/deliveries", headers=A.auth(A.OPERATOR)
                )
            ).json()
            queued = sum(c.get("queued", 0) for ch, c in got["counts"].items()
                         if ch in ("sms", "app", "messenger"))  # fmt: skip
            played = all(any(m["id"] == body["id"] for m in c.played) for c in fleet.clients)
            relayed = got["counts"].get("messenger", {})
            messengers_done = relayed.get("acknowledged", 0) + relayed.get("failed", 0) == sum(
                relayed.values()
            )
            return (
                got["planning_done"]
                and queued == 0
                and pending == 0
                and played
                and (messengers_done)
            )

        await until(settled, 60)
        rep = await report(client, body["id"])
        assert rep["definition"] == "warngate-coverage-v2"
        cmp = sim.compare(rep)
        assert cmp["truth_delivered"] > 0.3
        assert rep["delivered"] == pytest.approx(cmp["truth_delivered"], abs=2e-4)
        for u in rep["units"]:
            truth, _ = sim.live.shares(body["id"], [u["unit"]]) if sim.live else (0.0, 0.0)
            assert u["delivered"] == pytest.approx(truth, abs=2e-4), u["unit"]
        # Every unconfirmed send failed (no receipt lost): the estimate adds nothing.
        assert rep["delivered_estimate"] == pytest.approx(rep["delivered"], abs=2e-4)
    finally:
        await sim.close()
