"""The simulator checked on a tiny known population, then a small simulated county run
through issue → update → cancel against the real gateway and its background workers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.app import create_app
from gateway.codes import Tier
from gateway.config import Config
from gateway.directory import Directory, Division, Endpoint, EndpointKind, RecipientColumns
from gateway.models import Channel
from gateway.sim import DeviceBehaviour, ProviderBehaviour, SimSettings, Simulation
from gateway.sim.population import Population, Span, Truth
from tests import alerts as A
from tests.conftest import without_households
from tests.test_crash import until


@pytest.fixture
def config(config: Config) -> Config:
    """Definition v1 end to end: the sample directory without its households."""
    return without_households(config)


UNIT = "652301001001"


def tiny() -> Directory:
    divs = [Division(code=UNIT, tier=Tier.VILLAGE, name={"zh": "x"}, population=10)]
    eps = [
        Endpoint(id="ls-1", kind=EndpointKind.LOUDSPEAKER, unit=UNIT, languages=["zh"],
                 covers_population=4, token_hash="sha256:" + "0" * 64),
        Endpoint(id="ls-2", kind=EndpointKind.LOUDSPEAKER, unit=UNIT, languages=["zh"],
                 covers_population=15, token_hash="sha256:" + "0" * 64),
    ]  # fmt: skip
    sms = RecipientColumns()
    sms.append("r1", "13900000001", "zh", 3, "", False, 0)
    msg = RecipientColumns()
    msg.append("m1", "13900000002", "zh", 1, "", False, 2)
    return Directory(divs, eps, {(UNIT, Channel.SMS): sms, (UNIT, Channel.MESSENGER): msg})


def test_population_spans_stay_inside_their_unit() -> None:
    pop = Population(tiny(), seed=1, correlation=0.0, household_size=2.0)
    s1 = pop.span(Channel.LOUDSPEAKER, "ls-1")
    s2 = pop.span(Channel.LOUDSPEAKER, "ls-2")
    r1 = pop.span(Channel.SMS, "r1")
    assert s1 is not None
    assert s2 is not None
    assert r1 is not None
    assert (s1.length, s2.length, r1.length) == (4, 10, 3)  # capped at the population
    assert 0 <= s1.start <= 6
    assert s2.start == 0
    assert 0 <= r1.start <= 7
    # Messengers tell the most remote households first, walking inwards.
    assert pop.relay_span(UNIT, 2) == Span(UNIT, 6, 4)
    assert pop.relay_span(UNIT, 1) == Span(UNIT, 4, 2)
    assert pop.relay_span(UNIT, 5) == Span(UNIT, 0, 4)  # nobody left beyond the centre


def test_truth_counts_each_person_once() -> None:
    truth = Truth(tiny())
    truth.add("a", Span(UNIT, 0, 4))
    truth.add("a", Span(UNIT, 2, 4))  # overlaps two persons
    truth.add("b", Span(UNIT, 9, 1))
    assert truth.persons("a", UNIT) == 6
    assert truth.coverage("a", [UNIT]) == 0.6
    assert truth.coverage("b", [UNIT]) == 0.1
    assert truth.coverage("c", [UNIT]) == 0.0


def test_correlation_pulls_households_to_the_centre() -> None:
    d = tiny()
    centre = [Population(d, seed=s, correlation=1.0).span(Channel.SMS, "r1") for s in range(200)]
    spread = [Population(d, seed=s, correlation=0.0).span(Channel.SMS, "r1") for s in range(200)]
    mean = lambda spans: sum(s.start for s in spans if s) / len(spans)  # noqa: E731
    assert mean(centre) < mean(spread)


# -- the whole county loop -------------------------------------------------------------


async def report(client: Any, alert: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/alerts/{alert}/coverage", headers=A.auth(A.OPERATOR))
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def test_simulated_county_issue_update_cancel(
    redis: Any, aiohttp_server: Any, aiohttp_client: Any, config: Config
) -> None:
    township = "652301001"
    endpoints = frozenset(
        e.id for e in config.directory.endpoints.values() if e.unit.startswith(township)
    )
    sim = Simulation(
        config,
        SimSettings(
            time_scale=0.002,
            sms=ProviderBehaviour(receipt_loss=0.0, undelivered=0.05, receipt_delay_s=(1, 5)),
            app=ProviderBehaviour(receipt_loss=0.0, undelivered=0.2, receipt_delay_s=(1, 5)),
            devices=DeviceBehaviour(offline=0.1, flaky=0.0, slow=0.3, broken=0.05, wait_s=5),
            only_endpoints=endpoints,
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
        original = A.alert(geocodes=[township])
        first = await post(client, original)

        async def settled(alert: str) -> bool:
            """Every send finished, every simulated receipt and device act arrived."""
            pending = sum(len(p._tasks) + len(p._receipts) for p in sim.providers.values())
            d = await (
                await client.get(f"/api/v1/alerts/{alert}/deliveries", headers=A.auth(A.OPERATOR))
            ).json()
            push = ("sms", "app", "messenger")  # offline loudspeakers stay queued for ever
            queued = sum(c.get("queued", 0) for ch, c in d["counts"].items() if ch in push)
            online = [c for c in fleet.clients]
            devices_done = (
                all(any(m["id"] == alert for m in c.played) or c.broken for c in online)
                if d["planned"].get("loudspeaker")
                else True
            )
            return d["planning_done"] and queued == 0 and pending == 0 and devices_done

        await until(lambda: settled(first["id"]), 60)
        rep = await report(client, first["id"])
        cmp = sim.compare(rep)
        assert cmp["truth"] > 0.3
        assert abs(cmp["error"]) <= 0.10, cmp  # the tolerance stated in docs/coverage.md
        assert rep["lower"] - 0.10 <= cmp["truth"] <= rep["upper"] + 1e-9

        update = A.alert(msg_type="Update", references=[original], geocodes=[township],
                         level="orange", severity="Severe")  # fmt: skip
        second = await post(client, update)
        await until(lambda: settled(second["id"]), 60)
        cancel = A.alert(msg_type="Cancel", references=[original, update], geocodes=[township])
        third = await post(client, cancel)

        async def all_told() -> bool:
            return all(
                any(m["id"] == third["id"] and m["action"] == "cancel" for m in c.played)
                or c.broken
                for c in fleet.clients
            )

        await until(all_told, 60)
        assert fleet.played_after_cancel() == []
        # Nobody plays the warning again: a device polling now sees only the cancellation.
        for c in fleet.clients[:5]:
            messages = await c.poll(0)
            assert all(m["action"] == "cancel" for m in messages)
        d = await (
            await client.get(f"/api/v1/alerts/{third['id']}/deliveries", headers=A.auth(A.OPERATOR))
        ).json()
        assert d["counts"]["sms"].get("sent", 0) + d["counts"]["sms"].get("delivered", 0) > 0
    finally:
        await sim.close()


async def post(client: Any, data: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/api/v1/alerts", data=orjson.dumps(data), headers=A.json_headers())
    assert resp.status == 202, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body
