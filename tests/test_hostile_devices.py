"""Hostile input on the routes of devices, providers and duty desks: dead letters
scoped to the reader's jurisdiction (two desks of the sample configuration), numeric
query parameters in range, bodies that cannot be decoded. Requests go out as raw bytes
over a socket, so that a test can send what a client library would refuse to."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from gateway.callbacks import relay_code
from gateway.keys import DESK, HUB
from gateway.models import Channel
from gateway.samplegen import device_token
from tests import alerts as A
from tests.conftest import Gateway
from tests.test_dispatch import UNIT
from tests.test_ingest_api import problem

SPEAKER = "ls-652301001001-1"  # fetched, played and sent a heartbeat
DEVICE = "ls-652301001001-2"  # fetched only: any receipt that slipped through would show
OTHER_UNIT = "652301001002"
KANGBASHI_UNIT = "150603001001"
KANGBASHI_MET = "wgdemo-kangbashi-met"
KANGBASHI_DUTY = "wgdemo-kangbashi-duty"
SMS_TOKEN = b"demo-callback-sms-main"


# -- raw HTTP --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def send(
    gw: Gateway,
    method: str,
    path: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    body: bytes = b"",
    *,
    chunked: bool = False,
) -> Answer:
    target = quote(path, safe="/?&=%:+,-._~!$'()*;@")  # non-ASCII as UTF-8 escapes
    head = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    head += [name + b": " + value for name, value in headers]
    if chunked:
        head.append(b"Transfer-Encoding: chunked")
        step = 32 * 1024
        payload = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + step]), body[i : i + step])
            for i in range(0, len(body), step)
        )
        payload += b"0\r\n\r\n"
    else:
        head.append(b"Content-Length: %d" % len(body))
        payload = body
    reader, writer = await asyncio.open_connection(gw.client.host, gw.client.port)
    try:
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + payload)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 20)
    except ConnectionResetError:  # answered (413) before the whole body was taken
        raw = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await writer.wait_closed()
    top, _, rest = raw.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    if fields.get("Transfer-Encoding") == "chunked":
        rest = _unchunk(rest)
    return Answer(int(lines[0].split(" ", 2)[1]), fields, rest)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, data = out + data[:n], data[n + 2 :]
    return out


# -- what the gateway keeps ----------------------------------------------------------


@dataclass
class World:
    """A gateway with one alert sent, fetched, played and partly confirmed, relay tasks,
    heartbeats, and dead letters in two jurisdictions."""

    gw: Gateway
    alert: str  # Changji, sent through sms-main
    elsewhere: str  # Changji, another village: its SMS dead-lettered
    kangbashi: str  # Kangbashi district: its SMS dead-lettered
    sms_ids: list[str]
    code: str
    messenger: str
    extra: dict[str, Any] = field(default_factory=dict)


async def build_world(gw: Gateway) -> World:
    gw.app[DESK].verify_wait_s = 0.05
    body = await gw.post(A.alert(geocodes=[UNIT]))
    await gw.run()
    sms_ids = [i for i in gw.sms.accepted_ids if ":sms:" in i]
    gw.sms.default = gw.backup.default = "400"  # permanent: straight to dead letters
    elsewhere = await gw.post(A.alert(geocodes=[OTHER_UNIT]))
    kangbashi = await gw.post(
        A.alert(sender="met.kangbashi@warngate.example", geocodes=[KANGBASHI_UNIT]),
        key=KANGBASHI_MET,
    )
    await gw.run()
    gw.sms.default = gw.backup.default = "ok"
    for endpoint in (SPEAKER, DEVICE):
        resp = await gw.client.get(
            f"/api/v1/endpoints/{endpoint}/messages", headers=device_auth(endpoint)
        )
        assert resp.status == 200
        beat = await gw.client.post(
            f"/api/v1/endpoints/{endpoint}/heartbeat",
            data=b'{"status": "ok", "volume": 70}',
            headers=device_auth(endpoint),
        )
        assert beat.status == 200
    played = await gw.client.post(
        f"/api/v1/endpoints/{SPEAKER}/receipts",
        data=orjson.dumps({"alert": body["id"], "status": "played"}),
        headers=device_auth(SPEAKER),
    )
    assert played.status == 200
    dlr = await gw.client.post(
        "/api/v1/callbacks/sms/sms-main",
        data=orjson.dumps([{"id": i, "status": "DELIVRD"} for i in sms_ids[:3]]),
        headers={"X-Callback-Token": SMS_TOKEN.decode()},
    )
    assert (await dlr.json())["changed"] == 3
    code = relay_code(gw.config.settings.secret.get_secret_value(), body["id"], UNIT)
    cols = gw.config.directory.recipients_of(UNIT, Channel.MESSENGER)
    assert cols is not None
    ack = await gw.client.post(
        f"/api/v1/relay/{code}",
        data=orjson.dumps({"phone": cols.addresses[0], "status": "received"}),
    )
    assert ack.status == 200
    await gw.app[HUB].flush()
    dead = await gw.client.get("/api/v1/dead-letters", headers=A.auth(A.OPERATOR))
    assert (await dead.json())["dead_letters"]
    return World(gw, body["id"], elsewhere["id"], kangbashi["id"], sms_ids, code, cols.addresses[0])


def device_auth(endpoint: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {device_token(endpoint)}"}


# -- the tests -----------------------------------------------------------------------


@pytest.fixture
async def world(gateway: Gateway) -> World:
    return await build_world(gateway)


async def test_dead_letters_are_scoped_to_the_readers_jurisdiction(world: World) -> None:
    """Any duty desk read every dead letter, another province's included, and could ask
    for any alert's with ?alert=. A desk now sees the batches of its own villages, and
    an alert it may not read is 404 as everywhere else."""
    w = world

    async def listed(key: str, alert: str | None = None) -> list[dict[str, Any]]:
        resp = await w.gw.client.get(
            "/api/v1/dead-letters", params={"alert": alert} if alert else {}, headers=A.auth(key)
        )
        assert resp.status == 200, await resp.text()
        rows: list[dict[str, Any]] = (await resp.json())["dead_letters"]
        return rows

    changji = await listed(A.OPERATOR)
    kangbashi = await listed(KANGBASHI_DUTY)
    assert {r["alert"] for r in changji} == {w.elsewhere}
    assert {r["unit"] for r in changji} == {OTHER_UNIT}
    assert {r["alert"] for r in kangbashi} == {w.kangbashi}
    assert {r["unit"] for r in kangbashi} == {KANGBASHI_UNIT}
    assert await listed(KANGBASHI_DUTY, w.kangbashi) == kangbashi
    assert await listed(KANGBASHI_MET, w.kangbashi) == kangbashi
    assert await listed(A.OPERATOR, w.elsewhere) == changji
    for key, alert in (
        (KANGBASHI_DUTY, w.elsewhere),
        (A.OPERATOR, w.kangbashi),
        (A.MET, w.kangbashi),
        (KANGBASHI_MET, w.elsewhere),
    ):
        resp = await w.gw.client.get(
            "/api/v1/dead-letters", params={"alert": alert}, headers=A.auth(key)
        )
        await problem(resp, 404, "alert-not-found")


async def test_dead_letters_of_a_jurisdiction_are_found_behind_other_ones(
    world: World,
) -> None:
    """The list reads back through the stream page by page: a desk whose dead letters
    lie behind many of another jurisdiction's still gets them."""
    w = world
    store = w.gw.store
    [row] = await store.dead_letters(alert=w.kangbashi, count=1)
    for _ in range(1200):  # newer than Kangbashi's, all in Changji
        await store.redis.xadd(
            store.keys.dead, {"a": w.elsewhere, "c": "sms", "u": OTHER_UNIT, "r": "", "at": "0"}
        )
    found = await store.dead_letters(units=lambda u: u.startswith("150603"), count=5)
    assert [r["entry"] for r in found][:1] == [row["entry"]]
    assert {r["alert"] for r in found} == {w.kangbashi}


async def test_deliveries_cursor_and_count_are_in_range(world: World) -> None:
    """A cursor of 2^64 reached Redis' HSCAN, which answered "invalid cursor": a 500."""
    w = world
    url = f"/api/v1/alerts/{w.alert}/deliveries"
    for name, value in [
        ("cursor", str(2**64)),
        ("cursor", str(2**63)),
        ("cursor", "-1"),
        ("cursor", "٣"),
        ("count", "0"),
        ("count", "1001"),
        ("count", str(2**64)),
    ]:
        resp = await w.gw.client.get(
            url, params={"channel": "sms", name: value}, headers=A.auth(A.OPERATOR)
        )
        assert (await problem(resp, 400, "bad-query"))["parameter"] == name
    for cursor in ("0", str(2**63 - 1)):
        resp = await w.gw.client.get(
            url, params={"channel": "sms", "cursor": cursor}, headers=A.auth(A.OPERATOR)
        )
        assert resp.status == 200, await resp.text()


async def test_a_body_that_cannot_be_decoded_is_a_400(world: World) -> None:
    """`Content-Encoding: gzip` on bytes that are not gzip failed while the body was
    read: a 500."""
    answer = await send(
        world.gw,
        "POST",
        f"/api/v1/endpoints/{DEVICE}/heartbeat",
        (
            (b"Authorization", f"Bearer {device_token(DEVICE)}".encode()),
            (b"Content-Encoding", b"gzip"),
        ),
        b"\x1f\x8bnot gzip",
    )
    assert answer.status == 400
    assert orjson.loads(answer.body)["code"] == "malformed-body"
