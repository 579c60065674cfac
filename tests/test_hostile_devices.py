"""Hostile input on the routes of devices, providers and duty desks: a generated corpus
(wrong, missing and non-ASCII tokens, nested JSON, huge numbers, NaN and Infinity
literals, invalid UTF-8, wrong content types and encodings, oversized bodies, unknown
ids, out-of-range query parameters) over the device routes, provider callbacks, relay
acknowledgements, /coverage, /deliveries and /dead-letters. Every case answers 4xx
problem+json and none 5xx; afterwards the gateway is healthy and nothing it keeps in
Redis has changed (receipts, health records, every key of the test's prefix).
Replays and receipts a provider may not give are answered 200 and change nothing.

Requests go out as raw bytes over a socket, so that the corpus can send what a client
library would refuse to (a byte above 0x7f in a header, a broken gzip body).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from redis.asyncio import Redis

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


async def snapshot(redis_url: str, prefix: str) -> dict[bytes, bytes | None]:
    """Every key of the test's prefix, serialized by Redis itself."""
    raw = Redis.from_url(redis_url)
    try:
        return {k: await raw.dump(k) async for k in raw.scan_iter(match=f"{prefix}:*")}
    finally:
        await raw.aclose()


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


# -- the corpus ------------------------------------------------------------------------

H = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    headers: H = ()
    body: bytes = b""
    status: int = 400
    code: str | None = None
    chunked: bool = False


def bearer(token: str | bytes) -> H:
    value = token if isinstance(token, bytes) else token.encode()
    return ((b"Authorization", b"Bearer " + value),)


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b'{"x": ' * depth + leaf + b"}" * depth


JSON_JUNK: list[tuple[str, bytes, int, str | None]] = [
    ("empty", b"", 400, "malformed-json"),
    ("truncated", b'{"alert": ', 400, "malformed-json"),
    ("not-json", b"played", 400, "malformed-json"),
    ("invalid-utf8", b"\xff\xfe\xfa", 400, "malformed-json"),
    ("invalid-utf8-in-string", b'{"alert": "\xc3\x28"}', 400, "malformed-json"),
    ("lone-surrogate-escape", b'{"alert": "\\ud800"}', 400, "malformed-json"),
    ("nan", b'{"volume": NaN}', 400, "malformed-json"),
    ("infinity", b'{"volume": Infinity}', 400, "malformed-json"),
    ("minus-infinity", b'{"volume": -Infinity}', 400, "malformed-json"),
    ("huge-float", b'{"volume": 1e309}', 400, "malformed-json"),
    ("bom", b'\xef\xbb\xbf{"status": "ok"}', 400, "malformed-json"),
    ("trailing", b'{"status": "ok"} {}', 400, "malformed-json"),
    ("single-quotes", b"{'status': 'ok'}", 400, "malformed-json"),
    ("xml", b'<?xml version="1.0"?><receipt status="played"/>', 400, "malformed-json"),
    ("form", b"alert=a&status=played", 400, "malformed-json"),
    ("nested-2000", b"[" * 2000 + b"]" * 2000, 400, "malformed-json"),
]
DEPTHS = [17, 64, 254, 255, 300, 1000]
CONTENT_TYPES = [
    b"application/xml",
    b"text/plain",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=x",
    b"application/json; charset=latin-1",
]


def token_variants(endpoint: str) -> list[tuple[str, H]]:
    good = device_token(endpoint)
    return [
        ("no-authorization", ()),
        ("empty", ((b"Authorization", b""),)),
        ("scheme-only", ((b"Authorization", b"Bearer"),)),
        ("scheme-and-space", ((b"Authorization", b"Bearer "),)),
        ("basic", ((b"Authorization", b"Basic " + good.encode()),)),
        ("no-scheme", ((b"Authorization", good.encode()),)),
        ("wrong", bearer("wgdev-wrong")),
        ("another-devices", bearer(device_token("ls-652301001002-1"))),
        ("truncated", bearer(good[:-1])),
        ("extended", bearer(good + "x")),
        ("utf8-non-ascii", bearer(good.replace("-", "é", 1))),
        ("raw-byte-ff", bearer(good.encode() + b"\xff")),
        ("raw-latin1", bearer(b"\xe9" + good.encode())),
        ("long", bearer("x" * 6000)),
        ("operator-key", bearer(A.OPERATOR)),
    ]


def device_cases(w: World) -> Iterator[Case]:
    routes = [
        ("GET", f"/api/v1/endpoints/{DEVICE}/messages"),
        ("GET", f"/api/v1/endpoints/{DEVICE}/stream"),
        ("POST", f"/api/v1/endpoints/{DEVICE}/receipts"),
        ("POST", f"/api/v1/endpoints/{DEVICE}/heartbeat"),
    ]
    receipt = orjson.dumps({"alert": w.alert, "status": "played"})
    for method, path in routes:
        body = receipt if path.endswith("/receipts") else b""
        for name, headers in token_variants(DEVICE):
            yield Case(f"{path}:token:{name}", method, path, headers, body, 401, "bad-device-token")
        for unknown in ("nope", "ls-652301001001-9", "%00", "%ff%fe", "x" * 300):
            p = path.replace(DEVICE, unknown)
            yield Case(
                f"{p}:unknown-device",
                method,
                p,
                bearer(device_token(unknown)),
                body,
                401,
                "bad-device-token",
            )
        other = "DELETE" if method == "POST" else "PUT"
        yield Case(
            f"{path}:method:{other}",
            other,
            path,
            bearer(device_token(DEVICE)),
            b"",
            405,
            "method-not-allowed",
        )

    auth = bearer(device_token(DEVICE))
    poll = f"/api/v1/endpoints/{DEVICE}/messages"
    waits = [
        "nan",
        "NaN",
        "-nan",
        "inf",
        "-inf",
        "Infinity",
        "-1",
        "-0.5",
        "1e309",
        "1e3",
        "1e20",
        "9" * 30,
        str(2**63),
        str(2**64),
        "3600.5",
        "0x10",
        "1_0",
        "٣",
        "١٠",
        "%201",
        "1%20",
        "%2B1",
        "",
        "1,5",
        "%ff",
        "1.123456789012345678901",
    ]
    for wait in waits:
        yield Case(
            f"messages:wait={wait}",
            "GET",
            f"{poll}?wait={wait}",
            auth,
            status=400,
            code="bad-query",
        )
    yield Case("messages:wait-twice", "GET", f"{poll}?wait=1&wait=nan", auth, code="bad-query")

    for route in ("receipts", "heartbeat"):
        path = f"/api/v1/endpoints/{DEVICE}/{route}"
        invalid = f"invalid-{'receipt' if route == 'receipts' else 'heartbeat'}"
        for name, junk, status, code in JSON_JUNK:
            if route == "heartbeat" and name == "empty":
                continue  # an empty heartbeat is {"status": "ok"}
            yield Case(f"{route}:{name}", "POST", path, auth, junk, status, code)
        for depth in DEPTHS:
            yield Case(
                f"{route}:nested-{depth}",
                "POST",
                path,
                auth,
                b'{"status": "ok", "x": ' + nested(depth - 1) + b"}",
                422,
                invalid,
            )
        for ctype in CONTENT_TYPES:
            yield Case(
                f"{route}:content-type:{ctype.decode()}",
                "POST",
                path,
                (*auth, (b"Content-Type", ctype)),
                b"<status>ok</status>",
                400,
                "malformed-json",
            )
        big = b'{"status": "ok", "x": "' + b"a" * (64 * 1024) + b'"}'
        yield Case(f"{route}:oversized", "POST", path, auth, big, 413, "too-large")
        yield Case(
            f"{route}:oversized-chunked", "POST", path, auth, big, 413, "too-large", chunked=True
        )
        bomb = gzip.compress(b'{"x": "' + b"a" * (8 * 1024 * 1024) + b'"}')
        yield Case(
            f"{route}:gzip-bomb",
            "POST",
            path,
            (*auth, (b"Content-Encoding", b"gzip")),
            bomb,
            413,
            "too-large",
        )
        yield Case(
            f"{route}:broken-gzip",
            "POST",
            path,
            (*auth, (b"Content-Encoding", b"gzip")),
            b"\x1f\x8b not gzip",
            400,
            "malformed-body",
        )

    path = f"/api/v1/endpoints/{DEVICE}/receipts"
    a = w.alert
    receipts: list[tuple[str, Any, int, str]] = [
        ("object-without-fields", {}, 422, "invalid-receipt"),
        ("empty-list", {"receipts": []}, 422, "invalid-receipt"),
        (
            "too-many",
            {"receipts": [{"alert": a, "status": "played"}] * 101},
            422,
            "invalid-receipt",
        ),
        ("receipts-object", {"receipts": {}}, 422, "invalid-receipt"),
        ("receipts-null", {"receipts": None}, 422, "invalid-receipt"),
        ("a-list", [{"alert": a, "status": "played"}], 422, "invalid-receipt"),
        ("a-string", "played", 422, "invalid-receipt"),
        ("a-number", 18446744073709551615, 422, "invalid-receipt"),
        ("null", None, 422, "invalid-receipt"),
        (
            "extra-top-level",
            {"receipts": [{"alert": a, "status": "played"}], "x": 1},
            422,
            "invalid-receipt",
        ),
        ("displayed-by-a-loudspeaker", {"alert": a, "status": "displayed"}, 422, "invalid-receipt"),
        ("acknowledged", {"alert": a, "status": "acknowledged"}, 422, "invalid-receipt"),
        ("delivered", {"alert": a, "status": "delivered"}, 422, "invalid-receipt"),
        ("status-number", {"alert": a, "status": 1}, 422, "invalid-receipt"),
        ("status-case", {"alert": a, "status": "PLAYED"}, 422, "invalid-receipt"),
        ("status-padded", {"alert": a, "status": " played"}, 422, "invalid-receipt"),
        ("alert-empty", {"alert": "", "status": "played"}, 422, "invalid-receipt"),
        ("alert-long", {"alert": "a" * 65, "status": "played"}, 422, "invalid-receipt"),
        ("alert-number", {"alert": 1, "status": "played"}, 422, "invalid-receipt"),
        ("alert-list", {"alert": [a], "status": "played"}, 422, "invalid-receipt"),
        (
            "reason-long",
            {"alert": a, "status": "failed", "reason": "x" * 201},
            422,
            "invalid-receipt",
        ),
        ("reason-object", {"alert": a, "status": "failed", "reason": {}}, 422, "invalid-receipt"),
        ("at-2^64", {"alert": a, "status": "played", "at": 2**64 - 1}, 422, "invalid-receipt"),
        ("at-negative", {"alert": a, "status": "played", "at": -1}, 422, "invalid-receipt"),
        ("at-string", {"alert": a, "status": "played", "at": "now"}, 422, "invalid-receipt"),
        ("unknown-alert", {"alert": "a" * 25, "status": "played"}, 404, "alert-not-found"),
        ("unknown-alert-nul", {"alert": "a\x00b", "status": "played"}, 404, "alert-not-found"),
        (
            "other-units-alert",
            {"alert": w.elsewhere, "status": "played"},
            422,
            "not-sent-to-device",
        ),
        (
            "other-districts-alert",
            {"alert": w.kangbashi, "status": "played"},
            422,
            "not-sent-to-device",
        ),
        (
            "good-then-unknown",
            {
                "receipts": [
                    {"alert": a, "status": "played"},
                    {"alert": "a" * 25, "status": "played"},
                ]
            },
            404,
            "alert-not-found",
        ),
        (
            "good-then-invalid",
            {"receipts": [{"alert": a, "status": "played"}, {"alert": a, "status": "displayed"}]},
            422,
            "invalid-receipt",
        ),
        (
            "good-then-foreign",
            {
                "receipts": [
                    {"alert": a, "status": "played"},
                    {"alert": w.elsewhere, "status": "played"},
                ]
            },
            422,
            "not-sent-to-device",
        ),
    ]
    for name, data, status, code in receipts:
        yield Case(f"receipts:{name}", "POST", path, auth, orjson.dumps(data), status, code)
    yield Case(
        "receipts:at-2^64-literal",
        "POST",
        path,
        auth,
        b'{"alert": "%s", "status": "played", "at": 18446744073709551616}' % a.encode(),
        422,
        "invalid-receipt",
    )

    path = f"/api/v1/endpoints/{DEVICE}/heartbeat"
    beats: list[tuple[str, Any]] = [
        ("a-list", []),
        ("a-string", "ok"),
        ("a-number", 1),
        ("null", None),
        ("status-unknown", {"status": "dead"}),
        ("status-number", {"status": 1}),
        ("volume-300", {"volume": 300}),
        ("volume-negative", {"volume": -1}),
        ("volume-2^64", {"volume": 2**64 - 1}),
        ("volume-text", {"volume": "loud"}),
        ("volume-fraction", {"volume": 50.5}),
        ("battery-101", {"battery": 101}),
        ("signal-huge", {"signal": 1e308}),
        ("signal-tiny", {"signal": -1e308}),
        ("power-long", {"power": "x" * 21}),
        ("power-object", {"power": {"a": 1}}),
    ]
    for name, data in beats:
        yield Case(
            f"heartbeat:{name}", "POST", path, auth, orjson.dumps(data), 422, "invalid-heartbeat"
        )


def operator_cases(w: World) -> Iterator[Case]:
    """/api/v1/endpoints/{id}, /coverage, /deliveries and /dead-letters."""
    duty, kb = bearer(A.OPERATOR), bearer(KANGBASHI_DUTY)
    status = f"/api/v1/endpoints/{SPEAKER}"
    coverage = f"/api/v1/alerts/{w.alert}/coverage"
    deliveries = f"/api/v1/alerts/{w.alert}/deliveries"
    for path in (status, coverage, deliveries, "/api/v1/dead-letters"):
        for name, headers, code in [
            ("no-key", (), "missing-key"),
            ("scheme-only", ((b"Authorization", b"Bearer"),), "bad-key"),
            ("basic", ((b"Authorization", b"Basic " + A.OPERATOR.encode()),), "bad-key"),
            ("unknown-key", bearer("wgdemo-nobody"), "unknown-key"),
            ("device-token", bearer(device_token(SPEAKER)), "unknown-key"),
            ("callback-token", bearer(SMS_TOKEN), "unknown-key"),
            ("utf8-non-ascii", bearer("wgdemo-changji-dütü"), "bad-key"),
        ]:
            yield Case(f"{path}:key:{name}", "GET", path, headers, status=401, code=code)
        yield Case(f"{path}:method:POST", "POST", path, duty, b"{}", 405, "method-not-allowed")
    yield Case(
        "status:other-jurisdiction", "GET", status, kb, status=404, code="endpoint-not-found"
    )
    for unknown in ("nope", "%00", "%ff", "x" * 300):
        yield Case(
            f"status:unknown:{unknown[:8]}",
            "GET",
            f"/api/v1/endpoints/{unknown}",
            duty,
            status=404,
            code="endpoint-not-found",
        )
    for path in (coverage, deliveries):
        yield Case(
            f"{path}:other-jurisdiction", "GET", path, kb, status=404, code="alert-not-found"
        )
        for unknown in ("a" * 25, "%00", "%ff%fe", "x" * 300):
            p = path.replace(w.alert, unknown)
            kind = path.rsplit("/", 1)[1]
            yield Case(
                f"{kind}:unknown-alert:{unknown[:8]}",
                "GET",
                p,
                duty,
                status=404,
                code="alert-not-found",
            )
    numbers = [
        "-1",
        "x",
        "nan",
        "inf",
        "-inf",
        "1e3",
        "1.5",
        "٣",
        "١٠",
        "1_0",
        "%201",
        "",
        "0x1",
        str(2**63),
        str(2**64),
        str(10**30),
        "9" * 400,
        "%ff",
    ]
    for at in [*numbers, "527041"]:
        yield Case(f"coverage:at={at[:24]}", "GET", f"{coverage}?at={at}", duty, code="bad-query")
    yield Case("coverage:at-twice", "GET", f"{coverage}?at=1&at=2", duty, code="bad-query")
    for cursor in numbers:
        if cursor not in (str(2**63 - 1),):
            yield Case(
                f"deliveries:cursor={cursor[:24]}",
                "GET",
                f"{deliveries}?channel=sms&cursor={cursor}",
                duty,
                code="bad-query",
            )
    for count in [*numbers, "0", "1001"]:
        yield Case(
            f"deliveries:count={count[:24]}",
            "GET",
            f"{deliveries}?count={count}",
            duty,
            code="bad-query",
        )
    for channel in ("pigeon", "SMS", "%ff", "sms%00"):
        yield Case(
            f"deliveries:channel={channel}",
            "GET",
            f"{deliveries}?channel={channel}",
            duty,
            code="bad-query",
        )
    dead = "/api/v1/dead-letters"
    yield Case("dead-letters:agency-without-alert", "GET", dead, bearer(A.MET), code="bad-query")
    for name, query, headers in [
        ("unknown-alert", "a" * 25, duty),
        ("unknown-alert-ff", "%ff", duty),
        ("other-desks-alert", w.kangbashi, duty),
        ("other-desks-alert-kb", w.alert, kb),
        ("other-agencys-alert", w.kangbashi, bearer(A.MET)),
        ("other-agencys-alert-kb", w.alert, bearer(KANGBASHI_MET)),
    ]:
        yield Case(
            f"dead-letters:{name}",
            "GET",
            f"{dead}?alert={query}",
            headers,
            status=404,
            code="alert-not-found",
        )


def callback_cases(w: World) -> Iterator[Case]:
    token = ((b"X-Callback-Token", SMS_TOKEN),)
    dlr = orjson.dumps([{"id": w.sms_ids[5], "status": "DELIVRD"}])
    inbound = orjson.dumps({"from": w.messenger, "text": f"{w.code} 2 5"})
    routes = [
        ("/api/v1/callbacks/sms/sms-main", dlr),
        ("/api/v1/callbacks/app/push", dlr),
        ("/api/v1/callbacks/sms/sms-main/inbound", inbound),
    ]
    for path, body in routes:
        for name, headers in [
            ("none", ()),
            ("empty", ((b"X-Callback-Token", b""),)),
            ("wrong", ((b"X-Callback-Token", b"nope"),)),
            ("other-providers", ((b"X-Callback-Token", b"demo-callback-sms-backup"),)),
            ("as-bearer", bearer(SMS_TOKEN)),
            ("truncated", ((b"X-Callback-Token", SMS_TOKEN[:-1]),)),
            ("utf8-non-ascii", ((b"X-Callback-Token", "démo-callback".encode()),)),
            ("raw-byte-ff", ((b"X-Callback-Token", SMS_TOKEN + b"\xff"),)),
            ("raw-latin1", ((b"X-Callback-Token", b"\xe9\xe8"),)),
            ("long", ((b"X-Callback-Token", b"x" * 6000),)),
        ]:
            if "push" in path and name == "other-providers":
                continue
            yield Case(
                f"{path}:token:{name}", "POST", path, headers, body, 401, "bad-callback-token"
            )
        for provider in ("nobody", "%00", "%ff"):
            p = path.replace("sms-main", provider).replace("push", provider)
            yield Case(f"{p}:unknown-provider", "POST", p, token, body, 404, "provider-not-found")
        yield Case(f"{path}:method:GET", "GET", path, token, b"", 405, "method-not-allowed")

    path = "/api/v1/callbacks/sms/sms-main"
    for name, junk, status, code in JSON_JUNK:
        yield Case(f"dlr:{name}", "POST", path, token, junk, status, code)
    for depth in DEPTHS:
        body = b'[{"id": "%s", "status": "DELIVRD", "x": ' % w.sms_ids[5].encode()
        yield Case(
            f"dlr:nested-{depth}",
            "POST",
            path,
            token,
            body + nested(depth - 2) + b"}]",
            422,
            "invalid-receipt",
        )
    for ctype in CONTENT_TYPES:
        yield Case(
            f"dlr:content-type:{ctype.decode()}",
            "POST",
            path,
            (*token, (b"Content-Type", ctype)),
            b"<receipt/>",
            400,
            "malformed-json",
        )
    sid = w.sms_ids[5]
    rows: list[tuple[str, Any]] = [
        ("a-string", "DELIVRD"),
        ("a-number", 1),
        ("null", None),
        ("true", True),
        ("receipts-string", {"receipts": "x"}),
        ("receipts-number", {"receipts": 1}),
        ("too-many", [{"id": sid, "status": "DELIVRD"}] * 10_001),
        ("no-id", [{"status": "DELIVRD"}]),
        ("no-status", [{"id": sid}]),
        ("id-short", [{"id": "ab", "status": "DELIVRD"}]),
        ("id-long", [{"id": "a" * 201, "status": "DELIVRD"}]),
        ("id-number", [{"id": 2**64 - 1, "status": "DELIVRD"}]),
        ("id-list", [{"id": [sid], "status": "DELIVRD"}]),
        ("status-empty", [{"id": sid, "status": ""}]),
        ("status-long", [{"id": sid, "status": "D" * 41}]),
        ("status-number", [{"id": sid, "status": 2}]),
        ("row-a-list", [[sid, "DELIVRD"]]),
        ("good-then-bad", [{"id": sid, "status": "DELIVRD"}, {"id": sid}]),
    ]
    for name, data in rows:
        yield Case(f"dlr:{name}", "POST", path, token, orjson.dumps(data), 422, "invalid-receipt")
    big = b'[{"id": "%s", "status": "DELIVRD", "x": "' % sid.encode() + b"a" * 4 * 1024**2 + b'"}]'
    yield Case("dlr:oversized", "POST", path, token, big, 413, "too-large")
    yield Case(
        "dlr:broken-gzip",
        "POST",
        path,
        (*token, (b"Content-Encoding", b"gzip")),
        b"\x1f\x8bjunk",
        400,
        "malformed-body",
    )

    path = "/api/v1/callbacks/sms/sms-main/inbound"
    for name, junk, status, code in JSON_JUNK:
        yield Case(f"inbound:{name}", "POST", path, token, junk, status, code)
    yield Case("inbound:nested", "POST", path, token, nested(300), 422, "invalid-relay")
    inbound_rows: list[tuple[str, Any, int, str]] = [
        ("no-text", {"from": w.messenger}, 400, "malformed-json"),
        ("no-from", {"text": f"{w.code} 1"}, 400, "malformed-json"),
        ("a-list", [w.messenger, f"{w.code} 1"], 400, "malformed-json"),
        ("a-string", "x", 400, "malformed-json"),
        ("thanks", {"from": w.messenger, "text": "thanks!"}, 422, "invalid-relay"),
        ("step-3", {"from": w.messenger, "text": f"{w.code} 3"}, 422, "invalid-relay"),
        (
            "households-6-digits",
            {"from": w.messenger, "text": f"{w.code} 2 123456"},
            422,
            "invalid-relay",
        ),
        ("devanagari", {"from": w.messenger, "text": f"{w.code} 2 ३"}, 422, "invalid-relay"),
        ("thai-digit", {"from": w.messenger, "text": f"{w.code} ๒ 3"}, 422, "invalid-relay"),
        ("relayed-no-count", {"from": w.messenger, "text": f"{w.code} 2"}, 422, "invalid-relay"),
        ("unknown-code", {"from": w.messenger, "text": "AAAAAAAA 1"}, 404, "relay-not-found"),
        ("not-a-messenger", {"from": "13900000000", "text": f"{w.code} 1"}, 404, "not-messenger"),
        ("from-nested", {"from": {"a": [1]}, "text": f"{w.code} 1"}, 404, "not-messenger"),
    ]
    for name, data, status, code in inbound_rows:
        yield Case(f"inbound:{name}", "POST", path, token, orjson.dumps(data), status, code)


def relay_cases(w: World) -> Iterator[Case]:
    path = f"/api/v1/relay/{w.code}"
    for name, junk, status, code in JSON_JUNK:
        yield Case(f"relay:{name}", "POST", path, (), junk, status, code)
    for depth in DEPTHS:
        yield Case(f"relay:nested-{depth}", "POST", path, (), nested(depth), 422, "invalid-relay")
    phone = w.messenger
    acks: list[tuple[str, Any, int, str]] = [
        ("empty-object", {}, 422, "invalid-relay"),
        ("a-list", [phone], 422, "invalid-relay"),
        ("status-done", {"phone": phone, "status": "done"}, 422, "invalid-relay"),
        ("status-number", {"phone": phone, "status": 1}, 422, "invalid-relay"),
        ("phone-short", {"phone": "1234", "status": "received"}, 422, "invalid-relay"),
        ("phone-long", {"phone": "1" * 21, "status": "received"}, 422, "invalid-relay"),
        ("phone-number", {"phone": 15400000000, "status": "received"}, 422, "invalid-relay"),
        (
            "households-negative",
            {"phone": phone, "status": "relayed", "households": -1},
            422,
            "invalid-relay",
        ),
        (
            "households-over",
            {"phone": phone, "status": "relayed", "households": 100_001},
            422,
            "invalid-relay",
        ),
        (
            "households-2^64",
            {"phone": phone, "status": "relayed", "households": 2**64 - 1},
            422,
            "invalid-relay",
        ),
        (
            "households-fraction",
            {"phone": phone, "status": "relayed", "households": 1.5},
            422,
            "invalid-relay",
        ),
        ("relayed-without-households", {"phone": phone, "status": "relayed"}, 422, "invalid-relay"),
        (
            "extra-field",
            {"phone": phone, "status": "received", "at": 2**64 - 1},
            422,
            "invalid-relay",
        ),
        ("not-a-messenger", {"phone": "13900000000", "status": "received"}, 404, "not-messenger"),
        (
            "other-units-messenger",
            {"phone": "+8613000000000", "status": "received"},
            404,
            "not-messenger",
        ),
    ]
    for name, data, status, code in acks:
        yield Case(f"relay:{name}", "POST", path, (), orjson.dumps(data), status, code)
    good = orjson.dumps({"phone": phone, "status": "received"})
    for code_ in (
        "AAAAAAAA",
        "aaaaaaaa",
        "ÄÄÄÄÄÄÄÄ",
        "ß" * 4,
        "A" * 9,
        "A",
        "%00" * 8,
        "%ff" * 8,
        w.code[:-1] + "1",
        "x" * 300,
    ):
        yield Case(
            f"relay:code:{code_[:12]}",
            "POST",
            f"/api/v1/relay/{code_}",
            (),
            good,
            404,
            "relay-not-found",
        )
    big = b'{"phone": "' + b"1" * 70_000 + b'"}'
    yield Case("relay:oversized", "POST", path, (), big, 413, "too-large")
    yield Case("relay:method:GET", "GET", path, (), b"", 405, "method-not-allowed")


FAMILIES = {
    "devices": device_cases,
    "reading": operator_cases,
    "callbacks": callback_cases,
    "relay": relay_cases,
}


# -- the tests -----------------------------------------------------------------------


@pytest.fixture
async def world(gateway: Gateway) -> World:
    return await build_world(gateway)


async def check(w: World, case: Case) -> str | None:
    """What is wrong with the answer to one case, or None."""
    answer = await send(w.gw, case.method, case.path, case.headers, case.body, chunked=case.chunked)
    if answer.status != case.status:
        return f"{case.name}: {answer.status} (wanted {case.status}) {answer.body[:200]!r}"
    if not answer.headers.get("Content-Type", "").startswith("application/problem+json"):
        return f"{case.name}: Content-Type {answer.headers.get('Content-Type')!r}"
    problem_body = orjson.loads(answer.body)
    if problem_body.get("status") != case.status:
        return f"{case.name}: problem status {problem_body.get('status')}"
    if case.code and problem_body.get("code") != case.code:
        return f"{case.name}: code {problem_body.get('code')!r} (wanted {case.code!r})"
    return None


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_hostile_corpus_answers_4xx_problem_and_changes_nothing(
    world: World, redis_url: str, prefix: str, family: str
) -> None:
    w = world
    cases = list(FAMILIES[family](w))
    assert len({c.name for c in cases}) == len(cases), "case names are unique"
    before = await snapshot(redis_url, prefix)
    wrong = [bad for case in cases if (bad := await check(w, case)) is not None]
    assert wrong == [], f"{len(wrong)} of {len(cases)} cases:\n" + "\n".join(wrong)
    # Healthy after: no timer left without a finite time, health checks and a real
    # device answer, and nothing kept has changed.
    loop = asyncio.get_running_loop()
    assert all(math.isfinite(h.when()) for h in loop._scheduled)  # type: ignore[attr-defined]
    assert (await w.gw.client.get("/healthz")).status == 200
    assert (await w.gw.client.get("/readyz")).status == 200
    await w.gw.app[HUB].flush()
    assert await snapshot(redis_url, prefix) == before
    poll = await w.gw.client.get(
        f"/api/v1/endpoints/{DEVICE}/messages", params={"wait": "0"}, headers=device_auth(DEVICE)
    )
    assert poll.status == 200
    assert [m["id"] for m in (await poll.json())["messages"]] == [w.alert]


def test_the_corpus_has_hundreds_of_cases() -> None:
    w = World(None, "a" * 25, "b" * 25, "c" * 25, ["a:sms:r1"] * 10, "AAAAAAAA", "1")  # type: ignore[arg-type]
    sizes = {name: len(list(make(w))) for name, make in FAMILIES.items()}
    assert sum(sizes.values()) >= 500, sizes


async def test_replays_and_receipts_a_provider_may_not_give_change_nothing(
    world: World, redis_url: str, prefix: str
) -> None:
    """Answered 200 by design, and still nothing changes: repeated device, provider and
    messenger receipts, a provider confirming what another provider sent, ids that are
    not deliveries of the channel, and a cursor that is not one."""
    w = world
    sms, backup = (
        ((b"X-Callback-Token", SMS_TOKEN),),
        ((b"X-Callback-Token", b"demo-callback-sms-backup"),),
    )
    harmless: list[tuple[str, str, H, bytes]] = [
        (
            "device-receipt-replay",
            f"/api/v1/endpoints/{SPEAKER}/receipts",
            bearer(device_token(SPEAKER)),
            orjson.dumps({"alert": w.alert, "status": "played"}),
        ),
        (
            "late-failed-after-played",
            f"/api/v1/endpoints/{SPEAKER}/receipts",
            bearer(device_token(SPEAKER)),
            orjson.dumps({"alert": w.alert, "status": "failed", "reason": "x"}),
        ),
        (
            "dlr-replay",
            "/api/v1/callbacks/sms/sms-main",
            sms,
            orjson.dumps([{"id": i, "status": "DELIVRD"} for i in w.sms_ids[:3]]),
        ),
        (
            "dlr-late-sent",
            "/api/v1/callbacks/sms/sms-main",
            sms,
            orjson.dumps([{"id": i, "status": "ACCEPTED"} for i in w.sms_ids[:3]]),
        ),
        (
            "dlr-other-provider",
            "/api/v1/callbacks/sms/sms-backup",
            backup,
            orjson.dumps([{"id": i, "status": "DELIVRD"} for i in w.sms_ids]),
        ),
        (
            "dlr-never-sent",
            "/api/v1/callbacks/sms/sms-main",
            sms,
            orjson.dumps([{"id": f"{w.alert}:sms:r9999999", "status": "DELIVRD"}]),
        ),
        (
            "dlr-foreign-ids",
            "/api/v1/callbacks/sms/sms-main",
            sms,
            orjson.dumps(
                [
                    {"id": f"{w.alert}:app:r1", "status": "DELIVRD"},
                    {"id": f"{w.alert}:sms:r1\x1f\x1f652301001001\x1f999", "status": "DELIVRD"},
                    {"id": f"{w.alert}:sms:", "status": "DELIVRD"},
                    {"id": "a" * 25 + ":sms:r1", "status": "DELIVRD"},
                    {"id": w.sms_ids[6], "status": "MAYBE"},
                ]
            ),
        ),
        (
            "dlr-at-2^64",
            "/api/v1/callbacks/sms/sms-main",
            sms,
            b'[{"id": "%s", "status": "ACCEPTED", "at": 18446744073709551616}]'
            % w.sms_ids[0].encode(),
        ),
        (
            "relay-replay",
            f"/api/v1/relay/{w.code}",
            (),
            orjson.dumps({"phone": w.messenger, "status": "received"}),
        ),
    ]
    before = await snapshot(redis_url, prefix)
    for name, path, headers, body in harmless:
        answer = await send(w.gw, "POST", path, headers, body)
        assert answer.status == 200, (name, answer.body)
        data = orjson.loads(answer.body)
        assert data["changed"] == 0, (name, data)
        if name.startswith("dlr-") and name not in ("dlr-replay", "dlr-late-sent", "dlr-at-2^64"):
            assert data["ignored"], name  # the caller is told
    poll = await send(
        w.gw,
        "GET",
        f"/api/v1/endpoints/{DEVICE}/messages?since={2**64}",
        bearer(device_token(DEVICE)),
    )
    assert poll.status == 200
    assert orjson.loads(poll.body)["cursor"] != str(2**64)
    await w.gw.app[HUB].flush()
    after = await snapshot(redis_url, prefix)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= {w.gw.store.keys.last_requests.encode()}, changed  # the poll above


async def test_operator_keys_with_a_non_ascii_byte_are_refused_keys(world: World) -> None:
    w = world
    for path in (
        f"/api/v1/endpoints/{SPEAKER}",
        f"/api/v1/alerts/{w.alert}/coverage",
        f"/api/v1/alerts/{w.alert}/deliveries",
        "/api/v1/dead-letters",
    ):
        answer = await send(w.gw, "GET", path, bearer(A.OPERATOR.encode() + b"\xff"))
        assert answer.status == 401, (path, answer.body)


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
        (*bearer(device_token(DEVICE)), (b"Content-Encoding", b"gzip")),
        b"\x1f\x8bnot gzip",
    )
    assert answer.status == 400
    assert orjson.loads(answer.body)["code"] == "malformed-body"
