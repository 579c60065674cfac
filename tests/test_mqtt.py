"""The MQTT transport against a real Mosquitto started here: retained unit views, signed,
with message expiry; a device connecting late gets the current state (a cancellation,
never the lifted warning); receipts and heartbeats published by devices reach the
receipt state machine and health records; bad payloads are counted and dropped; the
broker going down and coming back."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import Config
from gateway.endpoints.mqtt import MqttBridge, broker_address
from gateway.endpoints.signing import PROPERTY, Signer, Verifier, new_key
from gateway.keys import HUB, METRICS
from gateway.settings import MqttSettings
from gateway.sim.mqttdevice import MqttDevice
from tests import alerts as A
from tests.conftest import Gateway, need_program
from tests.mosquitto import Mosquitto
from tests.test_dispatch import UNIT
from tests.test_endpoints import SPEAKER

ZH = f"warngate/unit/{UNIT}/loudspeaker/zh"
_ids = itertools.count()


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    server = Mosquitto(need_program("mosquitto", "mosquitto"), tmp_path / "mosquitto")
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


@pytest.fixture
def config(config: Config, broker: Mosquitto) -> Config:
    """The suite's configuration with the transport pointed at this test's broker."""
    s = config.settings
    mqtt = s.endpoints.mqtt.model_copy(update={"url": MqttSettings(url=broker.url).url})
    settings = s.model_copy(update={"endpoints": s.endpoints.model_copy(update={"mqtt": mqtt})})
    return Config(settings, config.registry, config.hazards, config.directory, config.policy)


def bridge_of(gw: Gateway) -> MqttBridge:
    hub = gw.app[HUB]
    [bridge] = [listener.__self__ for listener in hub.listeners]  # type: ignore[attr-defined]
    assert isinstance(bridge, MqttBridge)
    return bridge


def device_client(broker: Mosquitto) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", broker.port, identifier=f"test-device-{next(_ids)}",
        protocol=aiomqtt.ProtocolVersion.V5,
    )  # fmt: skip


async def current(
    broker: Mosquitto, topic: str, until: Callable[[dict[str, Any]], bool], within: float = 15.0
) -> tuple[dict[str, Any], aiomqtt.Message]:
    """What a device connecting now gets first on `topic` (the retained message),
    asked again until `until` holds (the gateway publishes a moment after planning)."""
    deadline = asyncio.get_running_loop().time() + within
    last: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        async with device_client(broker) as c:
            await c.subscribe(topic, qos=1)
            try:
                async with asyncio.timeout(0.5):
                    async for m in c.messages:
                        raw = m.payload if isinstance(m.payload, bytes) else b""
                        last = orjson.loads(raw) if raw else {}
                        if until(last):
                            return last, m
                        break
            except TimeoutError:
                last = {}
                if until(last):
                    return last, None  # type: ignore[return-value]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{topic}: never as wanted; last {last}")


async def until(done: Callable[[], bool], within: float = 10.0) -> None:
    for _ in range(int(within / 0.05)):
        if done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within the time")


def signature_of(m: aiomqtt.Message) -> str:
    props = dict(m.properties.UserProperty) if m.properties else {}
    return str(props[PROPERTY])


def ids(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["id"], e["action"]) for e in view.get("messages", [])]


async def test_a_unit_view_is_a_signed_retained_message_with_expiry(
    gateway: Gateway, broker: Mosquitto
) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    view, m = await current(broker, ZH, lambda v: bool(v.get("messages")))
    [entry] = view["messages"]
    assert (entry["id"], entry["action"]) == (body["id"], "play")
    assert [c["language"] for c in entry["content"]] == ["zh"]  # one language per topic
    assert view["cursor"] == entry["seq"]
    assert (view["unit"], view["kind"], view["language"]) == (UNIT, "loudspeaker", "zh")
    assert m.retain
    signer = gateway.app[HUB].signer
    verifier = Verifier({signer.key.kid: signer.key.public()})
    raw = m.payload if isinstance(m.payload, bytes) else b""
    fields = verifier.verify(signature_of(m), raw, {f"unit/{UNIT}/loudspeaker/zh"})
    assert fields.seq == view["cursor"]
    expiry = m.properties.MessageExpiryInterval  # type: ignore[union-attr]
    left = (fields.exp - fields.iat) / 1000
    assert 0 < expiry <= left <= expiry + 2  # the alert's remaining lifetime
    # Screens of the unit get their own view, with pages laid out per screen size.
    screens = {(e.display.chars_per_line, e.display.lines)
               for e in gateway.config.directory.endpoints_by_unit[UNIT] if e.display}  # fmt: skip
    if screens:
        shown, _ = await current(broker, f"warngate/unit/{UNIT}/display/zh",
                                 lambda v: bool(v.get("messages")))  # fmt: skip
        layouts = shown["messages"][0]["content"][0]["layouts"]
        assert set(layouts) == {f"{c}x{n}" for c, n in screens}


async def test_a_device_back_after_cancel_gets_the_cancellation_never_the_warning(
    gateway: Gateway, broker: Mosquitto
) -> None:
    original = A.alert(geocodes=[UNIT])
    first = await gateway.post(original)
    await gateway.plan_all()
    await current(broker, ZH, lambda v: (first["id"], "play") in ids(v))
    # The device is offline now; the warning is updated, then cancelled.
    update = A.alert(msg_type="Update", references=[original], geocodes=[UNIT], level="orange")
    upd = await gateway.post(update)
    await gateway.plan_all()
    cancel = await gateway.post(
        A.alert(msg_type="Cancel", references=[original, update], geocodes=[UNIT])
    )
    await gateway.plan_all()
    view, _ = await current(broker, ZH, lambda v: (cancel["id"], "cancel") in ids(v))
    assert all(action == "cancel" for _, action in ids(view)), ids(view)
    assert not {first["id"], upd["id"]} & {i for i, a in ids(view) if a == "play"}


async def test_receipts_and_heartbeats_over_mqtt_count_like_http(
    gateway: Gateway, broker: Mosquitto
) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    bridge = bridge_of(gateway)
    async with device_client(broker) as dev:
        base = f"warngate/device/{SPEAKER}"
        played = {"alert": body["id"], "status": "played"}
        await dev.publish(f"{base}/receipts", orjson.dumps(played), qos=1)
        await dev.publish(f"{base}/heartbeat", orjson.dumps({"status": "ok", "volume": 70}), qos=1)
        await dev.publish(f"{base}/receipts", b"{not json", qos=1)
        await dev.publish(f"{base}/receipts", orjson.dumps({"alert": body["id"], "status": "x"}),
                          qos=1)  # fmt: skip
        await dev.publish("warngate/device/no-such-device/heartbeat", b"{}", qos=1)
        await until(lambda: sum(bridge.reports.values()) >= 5)
    assert bridge.reports == {"ok": 2, "invalid": 2, "unknown-device": 1, "failed": 0}
    d = await gateway.deliveries(body["id"], channel="loudspeaker")
    assert {x["recipient"]: x["state"] for x in d["deliveries"]}[SPEAKER] == "played"
    health = await gateway.store.endpoint_health(SPEAKER)
    assert health["health"]["volume"] == 70
    metric = gateway.app[METRICS].mqtt_reports.labels("receipts", "invalid")
    assert metric._value.get() == 2


async def test_the_broker_down_and_back_gets_the_current_state(
    gateway: Gateway, broker: Mosquitto
) -> None:
    original = A.alert(geocodes=[UNIT])
    first = await gateway.post(original)
    await gateway.plan_all()
    await current(broker, ZH, lambda v: (first["id"], "play") in ids(v))
    bridge = bridge_of(gateway)
    await asyncio.to_thread(broker.stop)  # not persistent: its retained messages are gone
    await until(lambda: not bridge.connected)
    cancel = await gateway.post(A.alert(msg_type="Cancel", references=[original], geocodes=[UNIT]))
    await gateway.plan_all()
    await asyncio.sleep(0.5)  # the change is seen while the broker is away
    await asyncio.to_thread(broker.start)  # same port, empty
    view, _ = await current(broker, ZH, lambda v: (cancel["id"], "cancel") in ids(v), within=40)
    assert (first["id"], "play") not in ids(view)


def test_the_broker_url_gives_host_port_credentials_and_tls() -> None:
    s = MqttSettings(url="mqtts://gw%40county:p%3Ass@broker.example:8884")
    assert broker_address(s) == ("broker.example", 8884, "gw@county", "p:ss", True)
    assert broker_address(MqttSettings(url="mqtt://127.0.0.1"))[1:] == (1883, None, None, False)
    with pytest.raises(ValueError, match="mqtt://"):
        broker_address(MqttSettings(url="http://127.0.0.1"))


async def test_the_reference_device_plays_over_mqtt_and_refuses_a_forgery(
    gateway: Gateway, broker: Mosquitto
) -> None:
    """The reference client on MQTT: it plays the warning once it has every language,
    publishes its receipt (recorded as played); a forged "all clear" published on its
    topic by someone else is refused and reported in a heartbeat, never acted on."""
    hub = gateway.app[HUB]
    endpoint = gateway.config.directory.endpoints[SPEAKER]
    trusted = Verifier({hub.signer.key.kid: hub.signer.key.public()})
    device = MqttDevice("127.0.0.1", broker.port, endpoint, verifier=trusted)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(device.run(stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        body = await gateway.post(A.alert(geocodes=[UNIT]))
        await gateway.plan_all()
        await until(lambda: bool(device.played))
        [played] = device.played
        assert played["id"] == body["id"]
        assert [c["language"] for c in played["content"]] == endpoint.languages
        forged_view = {
            "unit": UNIT,
            "kind": "loudspeaker",
            "language": "zh",
            "cursor": "9-0",
            "messages": [{**played, "action": "cancel", "seq": "99999999999999-0"}],
        }
        other = Signer(new_key(hub.signer.key.kid), 60_000)  # the right key id, another key
        raw = orjson.dumps(forged_view)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = [(PROPERTY, other.sign(raw, f"unit/{UNIT}/loudspeaker/zh", "9-0"))]
        async with device_client(broker) as attacker:
            await attacker.publish(ZH, raw, qos=1, properties=props)
        await until(lambda: bool(device.refused))
        assert device.refused[0]["reason"] == "bad-signature"
        assert device.played == [played]
        states: dict[str, str] = {}
        health: dict[str, Any] = {}
        for _ in range(100):
            health = await gateway.store.endpoint_health(SPEAKER)
            d = await gateway.deliveries(body["id"], channel="loudspeaker")
            states = {x["recipient"]: x["state"] for x in d["deliveries"]}
            if (health["health"] or {}).get("refused") and states[SPEAKER] == "played":
                break
            await asyncio.sleep(0.05)
        assert states[SPEAKER] == "played"
        assert health["health"]["refused"]["reason"] == "bad-signature"
        assert health["health"]["status"] == "degraded"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
