"""422 answers: CAP 1.2 rules and the gateway's own acceptance rules, one case per rule.

Each case mutates a valid JSON alert, posts it, and checks the problem names the field.
A property-based test then throws random mutations at the API: never a 5xx.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests import alerts as A
from tests.test_ingest_api import ALERTS, Client, keys_under, post_json, problem

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def apply(d: dict[str, Any]) -> None:
        target: Any = d
        parts = path.split(".")
        for p in parts[:-1]:
            target = target[int(p)] if p.isdigit() else target[p]
        last = parts[-1]
        if value is _DELETE:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return apply


_DELETE = object()
AREA = "info.0.area.0"

CASES: list[tuple[str, Mutation, str, str]] = [
    # (case, mutation, expected code, expected error loc)
    ("no identifier", _set("identifier", _DELETE), "invalid-cap", "identifier"),
    ("identifier with space", _set("identifier", "a b"), "invalid-cap", "identifier"),
    ("identifier with comma", _set("identifier", "a,b"), "invalid-cap", "identifier"),
    ("sender with <", _set("sender", "x<y"), "invalid-cap", "sender"),
    ("sent without zone", _set("sent", "2026-07-01T12:00:00"), "invalid-cap", "sent"),
    ("sent not a time", _set("sent", "yesterday"), "invalid-cap", "sent"),
    ("status not in list", _set("status", "Real"), "invalid-cap", "status"),
    ("msgType not in list", _set("msgType", "Warning"), "invalid-cap", "msgType"),
    ("scope not in list", _set("scope", "Everyone"), "invalid-cap", "scope"),
    ("restricted without restriction", _set("scope", "Restricted"), "invalid-cap", "alert"),
    ("update without references", _set("msgType", "Update"), "invalid-cap", "alert"),
    ("malformed references", _set("references", "only-two,parts"), "invalid-cap", "references"),
    ("no info", _set("info", []), "invalid-cap", "info"),
    ("unknown element", _set("instructions", "typo"), "invalid-cap", "instructions"),
    ("no category", _set("info.0.category", []), "invalid-cap", "info[0].category"),
    ("bad category", _set("info.0.category", ["Weather"]), "invalid-cap", "info[0].category[0]"),
    ("bad urgency", _set("info.0.urgency", "Now"), "invalid-cap", "info[0].urgency"),
    ("bad severity", _set("info.0.severity", "Huge"), "invalid-cap", "info[0].severity"),
    ("bad certainty", _set("info.0.certainty", "Sure"), "invalid-cap", "info[0].certainty"),
    ("no event", _set("info.0.event", _DELETE), "invalid-cap", "info[0].event"),
    ("bad language", _set("info.0.language", "中文"), "invalid-cap", "info[0].language"),
    (
        "expires before sent",
        _set("info.0.expires", "2001-01-01T00:00:00+08:00"),
        "invalid-cap",
        "alert",
    ),
    ("no area", _set("info.0.area", []), "invalid-cap", "info[0].area"),
    (
        "area without desc",
        _set(f"{AREA}.areaDesc", _DELETE),
        "invalid-cap",
        "info[0].area[0].areaDesc",
    ),
    (
        "polygon not closed",
        _set(f"{AREA}.polygon", ["44.0,87.2 44.1,87.2 44.1,87.3 44.0,87.3"]),
        "invalid-cap",
        "info[0].area[0].polygon[0]",
    ),
    (
        "polygon too short",
        _set(f"{AREA}.polygon", ["44.0,87.2 44.1,87.2 44.0,87.2"]),
        "invalid-cap",
        "info[0].area[0].polygon[0]",
    ),
    (
        "polygon latitude out of range",
        _set(f"{AREA}.polygon", ["94.0,87.2 44.1,87.2 44.1,87.3 94.0,87.2"]),
        "invalid-cap",
        "info[0].area[0].polygon[0]",
    ),
    (
        "circle with negative radius",
        _set(f"{AREA}.circle", ["44.0,87.3 -1"]),
        "invalid-cap",
        "info[0].area[0].circle[0]",
    ),
    (
        "circle without radius",
        _set(f"{AREA}.circle", ["44.0,87.3"]),
        "invalid-cap",
        "info[0].area[0].circle[0]",
    ),
    ("ceiling without altitude", _set(f"{AREA}.ceiling", 3.0), "invalid-cap", "info[0].area[0]"),
    # Lax parsing, refused (issue 10, item 10).
    ("sent as a JSON number", _set("sent", 1782907200), "invalid-cap", "sent"),
    ("sent as digits", _set("sent", "1782907200"), "invalid-cap", "sent"),
    ("sent without seconds", _set("sent", "2026-07-01T12:00+08:00"), "invalid-cap", "sent"),
    ("NUL in identifier", _set("identifier", "ab\x00c"), "invalid-cap", "identifier"),
    ("escape in sender", _set("sender", "met\x1b[31m"), "invalid-cap", "sender"),
    (
        "NUL in a description",
        _set("info.0.description", "雨\x00"),
        "invalid-cap",
        "info[0].description",
    ),
    (
        "Unicode digits in a polygon",
        _set(f"{AREA}.polygon", ["４4.0,87.2 44.1,87.2 44.1,87.3 ４4.0,87.2"]),
        "invalid-cap",
        "info[0].area[0].polygon[0]",
    ),
    (
        "Arabic-Indic digits in a polygon",
        _set(f"{AREA}.polygon", ["٤٤.0,87.2 44.1,87.2 44.1,87.3 ٤٤.0,87.2"]),
        "invalid-cap",
        "info[0].area[0].polygon[0]",
    ),
    (
        "ideographic spaces in a polygon",
        _set(f"{AREA}.polygon", ["44.0,87.2\u300044.1,87.2\u300044.1,87.3\u300044.0,87.2"]),
        "invalid-cap",
        "info[0].area[0].polygon[0]",
    ),
    (
        "circle of 1e308 km",
        _set(f"{AREA}.circle", ["44.0,87.3 1e308"]),
        "invalid-cap",
        "info[0].area[0].circle[0]",
    ),
    (
        "circle radius nan",
        _set(f"{AREA}.circle", ["44.0,87.3 nan"]),
        "invalid-cap",
        "info[0].area[0].circle[0]",
    ),
    ("altitude nan", _set(f"{AREA}.altitude", "nan"), "invalid-cap", "info[0].area[0].altitude"),
    (
        "resource size true",
        lambda d: d["info"][0].update(
            resource=[{"resourceDesc": "map", "mimeType": "image/png", "size": True}]
        ),
        "invalid-cap",
        "info[0].resource[0].size",
    ),
    # 500s before (issue 10, item 9): far dates and huge circles.
    (
        "circle radius 1.797e308",
        _set(f"{AREA}.circle", ["44.0,87.3 1.797e308"]),
        "invalid-cap",
        "info[0].area[0].circle[0]",
    ),
    (
        "expires 9999-12-31",
        _set("info.0.expires", "9999-12-31T23:59:59+00:00"),
        "invalid-cap",
        "info[0].expires",
    ),
    ("sent 0001-01-01T23:59", _set("sent", "0001-01-01T23:59:00+00:00"), "invalid-cap", "sent"),
    (
        "sent 0001-01-01 east of Greenwich",
        _set("sent", "0001-01-01T00:00:00+05:00"),
        "invalid-cap",
        "sent",
    ),
    (
        "sent 9999 without expires",
        lambda d: (d.update(sent="9999-12-31T23:59:59+00:00"), d["info"][0].pop("expires")),
        "invalid-cap",
        "sent",
    ),
    # The gateway's own rules on top of CAP.
    ("draft status", _set("status", "Draft"), "unacceptable-alert", "status"),
    ("system status", _set("status", "System"), "unacceptable-alert", "status"),
    (
        "unknown hazard",
        lambda d: d["info"][0].update(eventCode=[], event="Alien invasion"),
        "unacceptable-alert",
        "info[0].event",
    ),
    (
        "severity unknown and no level",
        lambda d: d["info"][0].update(severity="Unknown", parameter=[]),
        "unacceptable-alert",
        "info[0].severity",
    ),
    (
        "unknown level word",
        _set("info.0.parameter", [{"valueName": "level", "value": "purple"}]),
        "unacceptable-alert",
        "info[0].parameter",
    ),
    (
        "area without anything to target",
        _set(f"{AREA}.geocode", [{"valueName": "FIPS6", "value": "006113"}]),
        "unacceptable-alert",
        "info[0].area[0]",
    ),
    (
        "geocode not a division code",
        _set(f"{AREA}.geocode", [{"valueName": "CPEAS Geographic Code", "value": "65230"}]),
        "unacceptable-alert",
        "info[0].area[0].geocode[0]",
    ),
    (
        "sent far ahead of the gateway's clock",
        lambda d: (d.update(sent="2999-01-01T00:00:00+00:00"), d["info"][0].pop("expires")),
        "unacceptable-alert",
        "sent",
    ),
    (
        "circle over the gateway's limit",
        _set(f"{AREA}.circle", ["44.0,87.3 501"]),
        "unacceptable-alert",
        "info[0].area[0].circle[0]",
    ),
    (
        "already expired",
        lambda d: d.update(
            sent=A.cap_time(datetime.now(UTC) - timedelta(hours=3)),
            info=[A.info(expires=datetime.now(UTC) - timedelta(hours=1))],
        ),
        "unacceptable-alert",
        "info.expires",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "code", "loc"), CASES, ids=[c[0] for c in CASES])
async def test_invalid_alert_is_422_naming_the_field(
    client: Client,
    redis: Redis,
    prefix: str,
    case: str,
    mutate: Mutation,
    code: str,
    loc: str,
) -> None:
    data = A.alert()
    mutate(data)
    body = await problem(await post_json(client, data), 422, code)
    locs = [e["loc"] for e in body["errors"]]
    assert loc in locs, (case, body["errors"])
    assert all(e["msg"] for e in body["errors"])
    assert await keys_under(redis, prefix) == []


async def test_numbers_beyond_64_bits_are_a_clean_error(client: Client) -> None:
    body = orjson.dumps(A.alert()).replace(b'"Public"', b"123456789012345678901234567890")
    resp = await client.post(ALERTS, data=body, headers=A.json_headers())
    assert resp.status in (400, 422)


async def test_same_rules_apply_to_xml(client: Client) -> None:
    xml = A.to_xml(A.alert()).replace(b"<urgency>Immediate</urgency>", b"<urgency>Now</urgency>")
    resp = await client.post(ALERTS, data=xml, headers=A.xml_headers())
    body = await problem(resp, 422, "invalid-cap")
    assert [e["loc"] for e in body["errors"]] == ["info[0].urgency"]


@pytest.mark.parametrize(
    ("level", "severity", "expected"),
    [
        (None, "Extreme", "red"),
        (None, "Severe", "orange"),
        (None, "Moderate", "yellow"),
        (None, "Minor", "blue"),
        ("橙色", "Extreme", "orange"),
        ("Ⅲ", "Extreme", "yellow"),
        ("Blue", "Unknown", "blue"),
        ("红色预警", "Minor", "red"),
    ],
)
async def test_level_from_parameter_or_severity(
    client: Client, level: str | None, severity: str, expected: str
) -> None:
    resp = await post_json(client, A.alert(level=level, severity=severity))
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["level"] == expected


async def test_hazard_from_event_text_when_no_event_code(client: Client) -> None:
    data = A.alert()
    data["info"][0].update(eventCode=[], event="暴雨红色预警信号")
    resp = await post_json(client, data)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["hazards"] == ["rainstorm"]


async def test_several_languages_in_one_alert(client: Client) -> None:
    data = A.alert(infos=[A.info(), A.info(language="ug-CN", headline="قاتتىق يامغۇر")])
    resp = await post_json(client, data)
    assert resp.status == 202, await resp.text()
    got = await (await client.get((await resp.json())["links"]["self"], headers=A.auth())).json()
    assert [i["language"] for i in got["alert"]["info"]] == ["zh-CN", "ug-CN"]


async def test_default_language_is_en_us(client: Client) -> None:
    data = A.alert()
    del data["info"][0]["language"]
    resp = await post_json(client, data)
    got = await (await client.get((await resp.json())["links"]["self"], headers=A.auth())).json()
    assert got["alert"]["info"][0]["language"] == "en-US"


# -- property: random mutations never produce a 5xx ----------------------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


BASE = A.alert(identifier="PROPERTY-BASE")
PATHS = _paths(BASE)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["identifier"] = draw(st.sampled_from(["PROP-1", "PROP-2", "PROP-3"]))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        target: Any = data
        try:
            for p in path[:-1]:
                target = target[p]
            if draw(st.booleans()) and isinstance(target, dict):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = draw(JUNK)
        except (KeyError, IndexError, TypeError):
            continue
    return data


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=mutated())
async def test_random_mutations_never_cause_a_5xx(client: Client, data: dict[str, Any]) -> None:
    # A mutation can put a dict where a list was, and a later one an int key into it.
    body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    resp = await client.post(ALERTS, data=body, headers=A.json_headers())
    assert resp.status < 500, await resp.text()
    if resp.status >= 400:
        assert resp.headers["Content-Type"].startswith("application/problem+json")
    xml_resp = await client.post(ALERTS, data=body.replace(b"{", b"<", 1), headers=A.xml_headers())
    assert xml_resp.status == 400


async def test_unknown_population_groups_are_refused(client: Client) -> None:
    data = A.alert()
    data["info"][0]["parameter"].append({"valueName": "groups", "value": "schools, unicorns"})
    body = await problem(await post_json(client, data), 422, "unacceptable-alert")
    assert any("unicorns" in e["msg"] for e in body["errors"])
    assert body["title"] == "Invalid alert"
    ok = A.alert()
    ok["info"][0]["parameter"].append({"valueName": "groups", "value": "schools herders"})
    assert (await post_json(client, ok)).status == 202


async def test_a_circle_of_radius_zero_is_a_point_and_is_accepted(client: Client) -> None:
    # CAP 1.2's own example A.3 gives an earthquake's epicentre as "lat,lon 0".
    data = A.alert(circle="44.16181,86.93216 0")  # the centre of Jijiqu community
    resp = await post_json(client, data)
    assert resp.status == 202, await resp.text()
    got = await (await client.get((await resp.json())["links"]["self"], headers=A.auth())).json()
    assert got["alert"]["info"][0]["area"][0]["circle"] == ["44.16181,86.93216 0"]


async def test_an_alert_that_reaches_no_known_unit_is_refused(
    client: Client, redis: Redis, prefix: str
) -> None:
    """Inside the jurisdiction, but no village the directory knows: a 202 here would
    reach nobody, silently."""
    for codes in (["652301999999"], ["652399"], ["652301099", "652301999999001"]):
        body = await problem(await post_json(client, A.alert(geocodes=codes)), 422, "unknown-area")
        assert body["title"] == "Alert would reach nobody"
    assert await keys_under(redis, prefix) == []
    # One known code among unknown ones: accepted; the others are listed later.
    resp = await post_json(client, A.alert(geocodes=["652301999999", "652301001001"]))
    assert resp.status == 202, await resp.text()
    # An unknown code beside a shape that covers a known village: the shape reaches it.
    both = A.alert(geocodes=["652301999999"], circle="44.16181,86.93216 0")
    assert (await post_json(client, both)).status == 202


async def test_an_update_to_an_unknown_area_needs_a_known_reference(
    client: Client, redis: Redis, prefix: str
) -> None:
    # Its own area reaches nobody; its reference's recipients hear of it: accepted.
    first = A.alert()
    assert (await post_json(client, first)).status == 202
    moved = A.alert(msg_type="Update", references=[first], geocodes=["652301999999"])
    resp = await post_json(client, moved)
    assert resp.status == 202, await resp.text()
    # Nobody had the earlier version either: refused, nothing stored.
    before = await keys_under(redis, prefix)
    lost = A.alert(msg_type="Update", references=[A.alert()], geocodes=["652301999999"])
    body = await problem(await post_json(client, lost), 422, "unknown-area")
    assert len(body["unknown_references"]) == 1
    assert await keys_under(redis, prefix) == before


async def test_duplicate_json_keys_are_refused(client: Client) -> None:
    data = A.alert()
    raw = orjson.dumps(data).replace(b"{", b'{"identifier":"OTHER",', 1)
    body = await problem(await client.post(ALERTS, data=raw, headers=A.json_headers()), 422)
    assert body["code"] == "invalid-cap"
    assert "identifier" in body["errors"][0]["msg"]
