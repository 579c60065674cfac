"""The hostile-input corpus and a property test: no input answers 5xx or stores anything.

`tests/hostile.py` generates well over 1,000 requests to the alert API (bombs, external
entities, encodings, broken UTF-8, content types, sizes, nesting, replays, areas,
keys, references across statuses, every CAP field wrong). Each one must answer a 4xx
`application/problem+json` with a `code`, its answer must stay small, the gateway must
stay healthy, the watched loopback URL must never be fetched, the secret file never
shown, and every key under the test's prefix must hold exactly what it held before.

The property test draws structurally plausible alerts whose leaves are hostile, posts
each as JSON and as XML, and finds no 5xx.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from redis.asyncio import Redis

from gateway.store import alert_id
from tests import alerts as A
from tests.hostile import XML_TYPES, Case, Context, corpus, dumps, raw_xml

Client = TestClient[Any, Any]
ALERTS = "/api/v1/alerts"
MAX_ANSWER = 32 * 1024  # no refusal may be larger than this


@pytest.fixture
async def watched(aiohttp_server: Any) -> Any:
    """A loopback server that records every request: hostile XML must never reach it."""
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path_qs}")
        return web.Response(text='<!ENTITY x "pwned">')

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server: TestServer = await aiohttp_server(app)
    server.hits = hits  # type: ignore[attr-defined]
    return server


async def snapshot(redis_url: str, prefix: str) -> dict[str, Any]:
    """Every key under the prefix with its whole content (hash fields sorted: a hash's
    own order, and so its DUMP, may change when Redis resizes it, without any write)."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        out: dict[str, Any] = {}
        async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
            kind = await redis.type(key)
            if kind == "hash":
                value: Any = sorted((await redis.hgetall(key)).items())
            elif kind == "stream":
                value = await redis.xrange(key)
            elif kind == "zset":
                value = await redis.zrange(key, 0, -1, withscores=True)
            elif kind == "set":
                value = sorted(await redis.smembers(key))
            elif kind == "list":
                value = await redis.lrange(key, 0, -1)
            else:
                value = await redis.get(key)
            out[key] = (kind, value)
        return out
    finally:
        await redis.aclose()


async def send(client: Client, case: Case) -> tuple[int, str, bytes]:
    if case.raw_headers is not None:
        return await asyncio.wait_for(send_raw(client, case), 30)
    # Large bodies as a stream (aiohttp warns about large bytes bodies).
    body = io.BytesIO(case.body) if len(case.body) > 256 * 1024 else case.body or None
    resp = await client.request(
        case.method,
        case.path,
        data=body,
        headers=CIMultiDict(case.headers),
        skip_auto_headers=("Content-Type",),
    )
    return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def send_raw(client: Client, case: Case) -> tuple[int, str, bytes]:
    """The request written on a socket: header bytes aiohttp's client will not send."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        head = [f"{case.method} {case.path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        head += [f"{k}: {v}" for k, v in case.headers]
        head.append(f"Content-Length: {len(case.body)}")
        writer.write("\r\n".join(head).encode() + b"\r\n" + (case.raw_headers or b""))
        writer.write(b"\r\n" + case.body)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    head_b, _, body = data.partition(b"\r\n\r\n")
    lines = head_b.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return status, fields.get("Content-Type", ""), body


def judge(case: Case, status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with the answer to a hostile case, or None."""
    if not 400 <= status < 500:
        return f"{case.name}: {status} {body[:300]!r}"
    if not content_type.startswith("application/problem+json"):
        return f"{case.name}: {status} answered as {content_type!r}: {body[:200]!r}"
    if len(body) > MAX_ANSWER:
        return f"{case.name}: answer of {len(body)} bytes"
    problem = json.loads(body)
    if not isinstance(problem.get("code"), str) or problem.get("status") != status:
        return f"{case.name}: problem without code/status: {problem}"
    if case.codes is not None and problem["code"] not in case.codes:
        return f"{case.name}: code {problem['code']!r}, expected one of {sorted(case.codes)}"
    return None


async def test_hostile_corpus_is_refused_and_changes_nothing(
    client: Client, redis_url: str, prefix: str, watched: Any, tmp_path: Path
) -> None:
    stored = {}
    for status in ("Actual", "Exercise", "Test"):
        data = A.alert(identifier=f"STORED-{status}", status=status)
        resp = await client.post(ALERTS, data=orjson.dumps(data), headers=A.json_headers())
        assert resp.status == 202, await resp.text()
        stored[status] = data
    secret = tmp_path / "secret.txt"
    marker = f"WARNGATE-SECRET-{uuid.uuid4().hex}"
    secret.write_text(marker)
    ctx = Context(
        live=stored["Actual"],
        exercise=stored["Exercise"],
        test=stored["Test"],
        live_id=alert_id(A.MET_SENDER, "STORED-Actual"),
        canary_url=f"http://127.0.0.1:{watched.port}/evil",
        secret_path=str(secret),
    )
    cases = corpus(ctx)
    assert len(cases) >= 1000, len(cases)
    assert len({c.name for c in cases}) == len(cases), "case names must be unique"
    before = await snapshot(redis_url, prefix)

    failures: list[str] = []
    for i, case in enumerate(cases):
        status, content_type, body = await send(client, case)
        if problem := judge(case, status, content_type, body):
            failures.append(problem)
        if marker.encode() in body or b"root:x:" in body:
            failures.append(f"{case.name}: the answer shows a local file")
        if i % 100 == 0:
            assert (await client.get("/healthz")).status == 200, f"unhealthy after {case.name}"
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:40])

    after = await snapshot(redis_url, prefix)
    if after != before:
        names = {
            alert_id(A.MET_SENDER, c.identifier): c.name for c in cases if c.identifier is not None
        }
        changed = sorted(k for k in after.keys() | before.keys() if after.get(k) != before.get(k))
        stored_by = [names.get(k.rsplit(":", 1)[-1], "?") for k in changed]
        pytest.fail(f"keys changed: {changed[:20]}; stored by: {stored_by[:20]}")
    assert watched.hits == []

    # Still healthy: it answers, and a valid alert is still accepted.
    assert (await client.get("/healthz")).status == 200
    resp = await client.post(ALERTS, data=orjson.dumps(A.alert()), headers=A.json_headers())
    assert resp.status == 202, await resp.text()


# -- property: plausible alerts with hostile leaves --------------------------------------

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x01b",
        "\ud800",
        "\ufffe",
        "٣",
        "４４",
        "NaN",
        "inf",
        "-0",
        "1e308",
        "1.797e308",
        "9999-12-31T23:59:59+00:00",
        "0001-01-01T00:00:00+05:00",
        "<&>",
        "]]>",
        "&amp;",
        "a,b",
        "x" * 600,
        "\u202e",
        "\u3000",
    ]
)
LEAF = st.one_of(
    HOSTILE_TEXT,
    st.text(max_size=12),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def maybe(valid: Any) -> st.SearchStrategy[Any]:
    """Mostly the valid value, one time in twelve a hostile leaf in its place (so that
    some examples get past CAP validation to the gateway's rules and the store)."""
    return st.integers(0, 11).flatmap(lambda n: LEAF if n == 7 else st.just(valid))


def mostly(*valid: Any) -> st.SearchStrategy[Any]:
    return st.integers(0, 11).flatmap(lambda n: LEAF if n == 7 else st.sampled_from(valid))


def repeated(element: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One value, a list of them, or a hostile leaf."""
    return st.integers(0, 11).flatmap(
        lambda n: LEAF if n == 7 else element if n < 6 else st.lists(element, max_size=3)
    )


NOW = A.cap_time(datetime.now(UTC).replace(microsecond=0))
LATER = A.cap_time(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=6))
# Hostile values in the places they are made for: a radius, a coordinate, a time.
NUMBER_TEXT = st.sampled_from(
    ["0", "1.5", "1.797e308", "1e308", "-1", "nan", "inf", "٣", "５", "20038", "501", "1_0"]
)
circle = st.builds(
    "{},{} {}".format,
    st.sampled_from(["44.16181", "44.16181", "91", "nan", "４4"]),
    st.sampled_from(["86.93216", "86.93216", "-181", "1e999"]),
    st.one_of(st.just("1"), NUMBER_TEXT),
)
FAR_TIMES = st.sampled_from(
    [
        "9999-12-31T23:59:59+00:00",
        "0001-01-01T23:59:00+00:00",
        "0001-01-01T00:00:00+05:00",
        "2999-12-31T23:59:59-05:00",
        "1969-12-31T23:59:59Z",
        1782907200,
        "2026-07-01T12:00:00",
    ]
)


def time_or(valid: str) -> st.SearchStrategy[Any]:
    return st.integers(0, 5).flatmap(lambda n: FAR_TIMES if n == 3 else maybe(valid))


named = st.fixed_dictionaries(
    {"valueName": maybe("CPEAS Geographic Code"), "value": maybe("652301001001")}
)
areas = st.fixed_dictionaries(
    {"areaDesc": maybe("昌吉市")},
    optional={
        "geocode": repeated(named),
        "polygon": repeated(maybe("44.157,86.925 44.157,86.938 44.166,86.938 44.157,86.925")),
        "circle": repeated(st.one_of(circle, HOSTILE_TEXT)),
        "altitude": maybe(10.0),
    },
)
infos = st.fixed_dictionaries(
    {
        "language": maybe("zh-CN"),
        "category": repeated(maybe("Met")),
        "event": maybe("暴雨"),
        "urgency": maybe("Immediate"),
        "severity": maybe("Extreme"),
        "certainty": maybe("Likely"),
        "area": repeated(areas),
    },
    optional={
        "eventCode": repeated(
            st.fixed_dictionaries({"valueName": maybe("hazard"), "value": maybe("rainstorm")})
        ),
        "parameter": repeated(
            st.fixed_dictionaries({"valueName": maybe("level"), "value": maybe("red")})
        ),
        "expires": time_or(LATER),
        "effective": time_or(NOW),
        "headline": maybe("暴雨红色预警"),
        "description": maybe("预计降水"),
        "resource": repeated(
            st.fixed_dictionaries(
                {"resourceDesc": maybe("map"), "mimeType": maybe("image/png")},
                optional={"size": maybe(100), "uri": maybe("http://127.0.0.1:9/x")},
            )
        ),
    },
)
alerts_strategy = st.fixed_dictionaries(
    {
        "identifier": mostly("PROP-A", "PROP-B", "PROP-C"),
        "sender": maybe(A.MET_SENDER),
        "sent": time_or(NOW),
        "status": mostly("Exercise", "Test", "Actual"),
        "msgType": mostly("Alert", "Alert", "Update", "Cancel"),
        "scope": maybe("Public"),
        "info": repeated(infos),
        "references": maybe(f"{A.MET_SENDER},PROP-A,{NOW}"),
    },
    optional={
        "note": maybe("note"),
        "code": repeated(maybe("c")),
    },
)


def refused_well(status: int, content_type: str, body: bytes) -> None:
    assert status < 500, body[:500]
    if status >= 400:
        assert content_type.startswith("application/problem+json"), (status, body[:200])
        assert isinstance(json.loads(body)["code"], str)
        assert len(body) <= MAX_ANSWER


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=alerts_strategy,
    encoding=st.sampled_from(["UTF-8"] * 5 + ["GBK", "GB2312", "x-unknown", "UTF-16"]),
)
async def test_plausible_alerts_with_hostile_leaves_never_cause_a_5xx(
    client: Client, data: dict[str, Any], encoding: str
) -> None:
    xml = raw_xml(data).replace(b'encoding="UTF-8"', f'encoding="{encoding}"'.encode(), 1)
    for kind, body, headers in (
        ("json", dumps(data), A.json_headers()),
        ("xml", xml, A.xml_headers(kind=XML_TYPES[0])),
    ):
        resp = await client.post(ALERTS, data=body, headers=headers)
        answer = await resp.read()
        refused_well(resp.status, resp.headers.get("Content-Type", ""), answer)
        problem = json.loads(answer) if resp.status >= 400 else {}
        code = problem.get("code", "ok")
        event(f"{kind} {resp.status} {code}")  # --hypothesis-show-statistics
