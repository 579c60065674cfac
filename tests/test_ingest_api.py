"""POST /api/v1/alerts against a real Redis: every answer, each content type, idempotency."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway.store import alert_id
from tests import alerts as A

ALERTS = "/api/v1/alerts"
Client = TestClient[Any, Any]


async def keys_under(redis: Redis, prefix: str) -> list[str]:
    return sorted([k async for k in redis.scan_iter(match=f"{prefix}:*")])


async def post_json(client: Client, data: dict[str, Any], key: str = A.MET) -> Any:
    return await client.post(ALERTS, data=orjson.dumps(data), headers=A.json_headers(key))


async def problem(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = await resp.json(content_type=None)
    assert body["status"] == status
    assert body["type"].startswith("https://warngate.org/problems/")
    if code:
        assert body["code"] == code, body
    return body


async def test_json_alert_is_accepted_stored_and_queued(
    client: Client, redis: Redis, prefix: str
) -> None:
    data = A.alert()
    resp = await post_json(client, data)
    assert resp.status == 202, await resp.text()
    body = await resp.json()
    assert body["id"] == alert_id(A.MET_SENDER, data["identifier"])
    assert body["status"] == "accepted"
    assert body["level"] == "red"
    assert body["hazards"] == ["rainstorm"]
    assert resp.headers["Location"] == f"/api/v1/alerts/{body['id']}"
    assert body["links"]["self"] == resp.headers["Location"]

    got = await client.get(body["links"]["self"], headers=A.auth())
    assert got.status == 200
    stored = await got.json()
    assert stored["state"] == "active"
    assert stored["agency"] == "changji-met"
    assert stored["alert"]["identifier"] == data["identifier"]
    assert stored["alert"]["info"][0]["area"][0]["geocode"][0]["value"] == "652301"
    # Queued for planning in the fast lane (red), and audited.
    queued = await redis.xrange(f"{prefix}:q:plan:hi")
    assert [f["id"] for _, f in queued] == [body["id"]]
    assert await redis.xlen(f"{prefix}:q:plan:lo") == 0
    audit = await redis.xrange(f"{prefix}:audit")
    assert audit[-1][1]["agency"] == "changji-met"
    assert audit[-1][1]["id"] == body["id"]


async def test_blue_alert_goes_to_the_slow_lane(client: Client, redis: Redis, prefix: str) -> None:
    resp = await post_json(client, A.alert(level="blue", severity="Minor"))
    assert resp.status == 202
    assert await redis.xlen(f"{prefix}:q:plan:lo") == 1
    assert await redis.xlen(f"{prefix}:q:plan:hi") == 0


@pytest.mark.parametrize("content_type", ["application/cap+xml", "application/xml", "text/xml"])
async def test_xml_alert_is_accepted(client: Client, content_type: str) -> None:
    resp = await client.post(
        ALERTS, data=A.to_xml(A.alert()), headers=A.xml_headers(kind=content_type)
    )
    assert resp.status == 202, await resp.text()
    assert "warnings" not in await resp.json()


async def test_signed_national_style_feed_is_accepted(client: Client) -> None:
    from tests.conftest import ROOT

    body = (ROOT / "tests/data/rainstorm_red_signed.xml").read_bytes()
    resp = await client.post(ALERTS, data=body, headers=A.xml_headers())
    assert resp.status == 202, await resp.text()
    data = await resp.json()
    assert data["level"] == "red"
    assert "warnings" not in data  # ds:Signature is where the schema allows it
    got = await (await client.get(data["links"]["self"], headers=A.auth())).json()
    assert got["identifier"] == "65230041600000_20260701120000"
    assert [i["language"] for i in got["alert"]["info"]] == ["zh-CN", "ug-CN"]


async def test_out_of_order_elements_are_accepted_with_warnings(client: Client) -> None:
    xml = A.to_xml(A.alert()).replace(b"<scope>Public</scope>", b"")
    xml = xml.replace(b"</info>", b"</info><scope>Public</scope>", 1)
    resp = await client.post(ALERTS, data=xml, headers=A.xml_headers())
    assert resp.status == 202, await resp.text()
    warnings = (await resp.json())["warnings"]
    assert any(w["loc"] == "alert.scope" and "order" in w["msg"] for w in warnings)


async def test_same_alert_again_answers_200_with_same_id_in_any_format(
    client: Client, redis: Redis, prefix: str
) -> None:
    data = A.alert()
    first = await post_json(client, data)
    assert first.status == 202
    again = await post_json(client, data)
    as_xml = await client.post(ALERTS, data=A.to_xml(data), headers=A.xml_headers())
    for resp in (again, as_xml):
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["id"] == (await first.json())["id"]
        assert body["status"] == "duplicate"
    assert await redis.xlen(f"{prefix}:q:plan:hi") == 1


async def test_concurrent_duplicates_store_and_queue_once(
    client: Client, redis: Redis, prefix: str
) -> None:
    data = A.alert()
    resps = await asyncio.gather(*(post_json(client, data) for _ in range(25)))
    statuses = sorted(r.status for r in resps)
    assert statuses == [200] * 24 + [202]
    ids = {(await r.json())["id"] for r in resps}
    assert len(ids) == 1
    assert await redis.xlen(f"{prefix}:q:plan:hi") == 1
    assert await redis.zcard(f"{prefix}:alerts") == 1


async def test_same_identifier_with_other_content_is_409_and_changes_nothing(
    client: Client, redis: Redis, prefix: str
) -> None:
    data = A.alert()
    assert (await post_json(client, data)).status == 202
    before = await redis.hgetall(f"{prefix}:alert:{alert_id(A.MET_SENDER, data['identifier'])}")
    changed = {**data, "info": [A.info(level="orange", severity="Severe")]}
    body = await problem(await post_json(client, changed), 409, "identifier-reused")
    assert body["id"] == alert_id(A.MET_SENDER, data["identifier"])
    after = await redis.hgetall(f"{prefix}:alert:{body['id']}")
    assert after == before
    assert await redis.xlen(f"{prefix}:q:plan:hi") == 1


# -- refusals: each names the problem and changes nothing ------------------------------


async def test_missing_and_unknown_keys_are_401(client: Client, redis: Redis, prefix: str) -> None:
    body = orjson.dumps(A.alert())
    no_key = await client.post(ALERTS, data=body, headers={"Content-Type": "application/json"})
    p = await problem(no_key, 401, "missing-key")
    assert no_key.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization" in p["detail"]
    wrong = await client.post(ALERTS, data=body, headers=A.json_headers("not-a-key"))
    await problem(wrong, 401, "unknown-key")
    basic = await client.post(
        ALERTS,
        data=body,
        headers={"Authorization": "Basic abc", "Content-Type": "application/json"},
    )
    await problem(basic, 401, "bad-key")
    assert await keys_under(redis, prefix) == []


async def test_hazard_outside_rights_is_403_naming_it(
    client: Client, redis: Redis, prefix: str
) -> None:
    data = A.alert(sender=A.WATER_SENDER)  # the water bureau may not warn of rainstorms
    body = await problem(await post_json(client, data, A.WATER), 403, "hazard-not-allowed")
    assert body["hazards"] == ["rainstorm"]
    assert "rainstorm" in body["detail"]
    assert await keys_under(redis, prefix) == []


async def test_area_outside_jurisdiction_is_403_naming_the_codes(
    client: Client, redis: Redis, prefix: str
) -> None:
    # Mori's county bureau warning Changji City and Kangbashi: both outside its county.
    data = A.alert(sender=A.MORI_SENDER, geocodes=[A.MORI_COUNTY, "652301000000", "150603"])
    body = await problem(await post_json(client, data, A.MORI), 403, "area-not-allowed")
    assert body["codes"] == ["652301", "150603"]
    assert body["jurisdiction"] == ["652328"]
    assert {e["loc"] for e in body["errors"]} == {"info[0].area[0]"}
    assert await keys_under(redis, prefix) == []


async def test_sender_of_another_agency_is_403(client: Client, redis: Redis, prefix: str) -> None:
    data = A.alert(sender=A.WATER_SENDER)
    await problem(await post_json(client, data, A.MET), 403, "sender-not-allowed")
    assert await keys_under(redis, prefix) == []


async def test_operators_cannot_post(client: Client) -> None:
    await problem(await post_json(client, A.alert(), A.OPERATOR), 403, "not-an-agency")


async def test_status_not_allowed_for_agency_is_403(
    aiohttp_client: Any, config: Any, redis: Redis, prefix: str
) -> None:
    from gateway.app import create_app
    from gateway.auth import Registry
    from gateway.config import Config
    from gateway.models import Status

    agencies = [
        a.model_copy(update={"statuses": [Status.ACTUAL]})
        for a in config.registry.agencies.values()
    ]
    strict = Config(
        config.settings, Registry(agencies), config.hazards, config.directory, config.policy
    )
    client = await aiohttp_client(create_app(strict, background=False))
    resp = await post_json(client, A.alert(status="Exercise"))
    await problem(resp, 403, "status-not-allowed")
    assert (await post_json(client, A.alert(status="Actual"))).status == 202


async def test_oversize_body_is_413(client: Client, redis: Redis, prefix: str) -> None:
    data = A.alert()
    data["info"][0]["description"] = "雨" * (1024 * 1024)
    big = io.BytesIO(orjson.dumps(data))
    body = await problem(
        await client.post(ALERTS, data=big, headers=A.json_headers()), 413, "too-large"
    )
    assert body["limit"] == 1024 * 1024

    async def chunks() -> Any:  # no Content-Length: the limit holds while streaming too
        for _ in range(40):
            yield b"x" * 65536

    resp = await client.post(ALERTS, data=chunks(), headers=A.json_headers())
    await problem(resp, 413, "too-large")
    assert await keys_under(redis, prefix) == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_other_content_types_are_415(client: Client, content_type: str) -> None:
    headers = {**A.auth(), "Content-Type": content_type} if content_type else A.auth()
    resp = await client.post(ALERTS, data=orjson.dumps(A.alert()), headers=headers)
    body = await problem(resp, 415, "unsupported-media-type")
    assert "application/cap+xml" in body["accepted"]


@pytest.mark.parametrize(
    ("body", "kind", "code"),
    [
        (b"{not json", "application/json", "malformed-json"),
        (b'{"identifier": "\xff\xfe"}', "application/json", "malformed-json"),
        (b"[1, 2]", "application/json", "malformed-json"),
        (b"<alert><identifier>x</alert>", "application/xml", "malformed-xml"),
        (
            b'<?xml version="1.0" encoding="UTF-8"?>'
            b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>\xff</identifier>'
            b"</alert>",
            "application/xml",
            "malformed-xml",
        ),
        (b"", "application/xml", "malformed-xml"),
    ],
)
async def test_unreadable_bodies_are_400(
    client: Client, redis: Redis, prefix: str, body: bytes, kind: str, code: str
) -> None:
    resp = await client.post(ALERTS, data=body, headers={**A.auth(), "Content-Type": kind})
    await problem(resp, 400, code)
    assert await keys_under(redis, prefix) == []


@pytest.fixture
async def canary(aiohttp_server: Any) -> Any:
    """A loopback server that counts every request: hostile XML must never reach it."""
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text='<!ENTITY x "pwned">')

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server: TestServer = await aiohttp_server(app)
    server.hits = hits  # type: ignore[attr-defined]
    return server


async def test_hostile_xml_is_refused_without_network_access(
    client: Client, redis: Redis, prefix: str, canary: Any
) -> None:
    url = f"http://127.0.0.1:{canary.port}/evil.dtd"
    cap = 'xmlns="urn:oasis:names:tc:emergency:cap:1.2"'
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        f"<alert {cap}><identifier>&lol3;</identifier></alert>"
    )
    external = (
        f'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY xxe SYSTEM "{url}">]>'
        f"<alert {cap}><identifier>&xxe;</identifier></alert>"
    )
    local_file = (
        '<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        f"<alert {cap}><identifier>&xxe;</identifier></alert>"
    )
    dtd_only = f'<?xml version="1.0"?><!DOCTYPE alert SYSTEM "{url}"><alert {cap}/>'
    parameter = (
        f'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY % p SYSTEM "{url}"> %p;]><alert {cap}/>'
    )
    for doc in (laughs, external, local_file, dtd_only, parameter):
        resp = await client.post(ALERTS, data=doc.encode(), headers=A.xml_headers())
        body = await problem(resp, 400, "hostile-xml")
        assert "passwd" not in body["detail"]
    assert canary.hits == []
    assert await keys_under(redis, prefix) == []


async def test_wrong_root_or_namespace_is_422(client: Client) -> None:
    for doc in (
        b"<alert><identifier>x</identifier></alert>",
        b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"/>',
        b'<feed xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>',
    ):
        resp = await client.post(ALERTS, data=doc, headers=A.xml_headers())
        await problem(resp, 422, "not-cap")


async def test_every_refusal_increments_rejected_metric(client: Client) -> None:
    await post_json(client, A.alert(sender=A.WATER_SENDER), A.WATER)
    await client.post(ALERTS, data=b"{", headers=A.json_headers())
    text = await (await client.get("/metrics")).text()
    assert (
        'warngate_alerts_rejected_total{agency="changji-water",reason="hazard-not-allowed"} 1.0'
        in text
    )
    assert (
        'warngate_alerts_rejected_total{agency="changji-met",reason="malformed-json"} 1.0' in text
    )


@pytest.mark.parametrize("encoding", ["GB2312", "GBK", "GB18030", "Big5", "x-nonsense", "UTF-7"])
async def test_xml_in_an_encoding_expat_cannot_read_is_415(
    client: Client, redis: Redis, prefix: str, encoding: str
) -> None:
    xml = A.to_xml(A.alert()).decode().replace('encoding="UTF-8"', f'encoding="{encoding}"')
    try:
        body = xml.encode(encoding)
    except (LookupError, UnicodeError):  # no such codec, or Big5 without 发
        body = xml.encode()
    resp = await client.post(ALERTS, data=body, headers=A.xml_headers())
    problem_body = await problem(resp, 415, "unsupported-encoding")
    assert "UTF-8" in problem_body["detail"]
    assert "utf-8" in problem_body["accepted_encodings"]
    assert await keys_under(redis, prefix) == []


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=gbk", "application/cap+xml; charset=GB2312"]
)
async def test_a_charset_other_than_utf8_is_415(client: Client, content_type: str) -> None:
    data = A.alert()
    raw = orjson.dumps(data) if "json" in content_type else A.to_xml(data)
    resp = await client.post(ALERTS, data=raw, headers={**A.auth(), "Content-Type": content_type})
    await problem(resp, 415, "unsupported-encoding")


async def test_latin1_and_utf16_xml_are_still_read(client: Client) -> None:
    data = A.alert(headline="Heavy rain", description="Rain", instruction="Stay in")
    data["info"][0].update(senderName="Met office", event="Heavy rain, Müller's farm")
    data["info"][0]["area"][0]["areaDesc"] = "Changji"
    xml = A.to_xml(data).decode()
    latin1 = xml.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1")
    assert (await client.post(ALERTS, data=latin1, headers=A.xml_headers())).status == 202
    data["identifier"] += "-16"
    utf16 = A.to_xml(data).decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    resp = await client.post(ALERTS, data=utf16.encode("utf-16"), headers=A.xml_headers())
    assert resp.status == 202, await resp.text()


async def raw_request(client: Client, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """A request written on a socket: aiohttp's client never sends these bytes."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
    writer.write(body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "value",
    [b"Bearer wgdemo-changji-met\xe9", b"Bearer \xff\xfe", b"Bearer \xe6\x98\x8c\xe5\x90\x89"],
)
async def test_a_non_ascii_byte_in_authorization_is_401(
    client: Client, redis: Redis, prefix: str, value: bytes
) -> None:
    body = orjson.dumps(A.alert())
    for head in (
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
        b"GET /api/v1/alerts HTTP/1.1\r\nHost: x\r\n",
    ):
        status, answer = await raw_request(
            client, head + b"Authorization: " + value + b"\r\n", body if b"POST" in head else b""
        )
        assert status == 401, answer
        assert orjson.loads(answer)["code"] == "bad-key"
    assert await keys_under(redis, prefix) == []


async def test_two_authorization_headers_are_401(client: Client) -> None:
    from multidict import CIMultiDict

    headers = CIMultiDict([("Authorization", f"Bearer {A.MET}"), ("Authorization", "Bearer other")])
    headers["Content-Type"] = "application/json"
    resp = await client.post(ALERTS, data=orjson.dumps(A.alert()), headers=headers)
    await problem(resp, 401, "bad-key")
    await problem(await client.get(ALERTS, headers=headers), 401, "bad-key")


@pytest.mark.parametrize("limit", ["١٠", "1_0", " 5", "5.0", "-1", "", "9" * 20])
async def test_list_limit_is_ascii_digits(client: Client, limit: str) -> None:
    resp = await client.get(ALERTS, params={"limit": limit}, headers=A.auth())
    await problem(resp, 400, "bad-query")


async def test_rendered_messages_take_a_unit_code_and_a_known_channel_only(
    client: TestClient[Any, Any],
) -> None:
    """`unit` went into a Redis pattern unescaped (`*` read every unit's texts, `[`
    reached the pattern matcher) and an unknown `channel` answered an empty list."""
    resp = await client.post(
        "/api/v1/alerts", data=orjson.dumps(A.alert()), headers=A.json_headers()
    )
    alert = (await resp.json())["id"]
    for query in ({"unit": "*"}, {"unit": "6523[0-9]*"}, {"unit": "?"}, {"channel": "pigeon"}):
        got = await client.get(f"/api/v1/alerts/{alert}/messages", params=query,
                               headers=A.auth(A.OPERATOR))  # fmt: skip
        assert got.status == 400, query
        body = await got.json()
        assert (body["code"], body["parameter"]) == ("bad-query", next(iter(query)))
    ok = await client.get(f"/api/v1/alerts/{alert}/messages",
                          params={"unit": "652301001001", "channel": "sms"},
                          headers=A.auth(A.OPERATOR))  # fmt: skip
    assert ok.status == 200
