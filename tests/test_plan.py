"""Planning: who an alert reaches, through which channel, with which message kind.

Most tests plan against a small hand-made directory so that every expectation can be
worked out by hand from the tables below; a few run on the generated sample directory.

The hand-made map (lat, lon; squares are 0.1° wide):

    county A 652301                                         county B 652328
      township 652301001                                      township 652328100
        U1 652301001001  square 44.00–44.10 × 87.00–87.10       U4 652328100201 square
        U2 652301001002  square 44.00–44.10 × 87.10–87.20          44.00–44.10 × 87.30–87.40
      township 652301002                                        U5 652328100202 centroid
        U3 652301002001  centroid only (44.05, 87.25)              only (45.00, 88.00)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gateway import codes
from gateway.auth import Agency
from gateway.codes import Tier
from gateway.config import load_directory
from gateway.directory import (
    KM_PER_DEGREE,
    Directory,
    Display,
    Division,
    Endpoint,
    EndpointKind,
    RecipientColumns,
)
from gateway.models import Alert, AlertRecord, AlertState, Channel, Level
from gateway.plan import (
    Kind,
    Plan,
    PushGroup,
    delivery_id,
    plan_alert,
    requested_groups,
    target_units,
)
from gateway.policy import Policy, QuietHours, Rule
from gateway.settings import IngestSettings, read_yaml
from tests import alerts as A

ROOT = Path(__file__).resolve().parent.parent
GEOCODE_NAMES = IngestSettings().geocode_names
CST = timezone(timedelta(hours=8))
NOON = datetime(2025, 6, 2, 12, 0, tzinfo=CST)
RECEIVED = datetime(2025, 6, 2, 4, 0, tzinfo=UTC)

SMS, APP, MESSENGER = Channel.SMS, Channel.APP, Channel.MESSENGER
LOUDSPEAKER, DISPLAY = Channel.LOUDSPEAKER, Channel.DISPLAY

COUNTY_A, TOWN_A1, TOWN_A2 = "652301", "652301001", "652301002"
COUNTY_B, TOWN_B = "652328", "652328100"
U1, U2, U3 = "652301001001", "652301001002", "652301002001"
U4, U5 = "652328100201", "652328100202"


# --- the hand-made directory ---------------------------------------------------------


def square(lat: float, lon: float, size: float = 0.1) -> list[tuple[float, float]]:
    """A closed square outline in CAP order (lat, lon), south-west corner first."""
    return [
        (lat, lon),
        (lat, lon + size),
        (lat + size, lon + size),
        (lat + size, lon),
        (lat, lon),
    ]


def cap_box(south: float, west: float, north: float, east: float) -> str:
    """A CAP polygon text for a lat/lon box."""
    pts = [(south, west), (south, east), (north, east), (north, west), (south, west)]
    return " ".join(f"{lat},{lon}" for lat, lon in pts)


def division(code: str, population: int = 0, languages: list[str] | None = None, **kw: Any):
    return Division(
        code=code,
        tier=codes.tier(code),
        name={"zh": code},
        parent=codes.parent(code),
        population=population,
        languages=languages or [],
        **kw,
    )


DIVISIONS = [
    division(COUNTY_A),
    division(TOWN_A1),
    division(U1, 3000, ["zh", "ug"], polygon=square(44.0, 87.0)),
    division(U2, 2000, ["zh"], polygon=square(44.0, 87.1)),
    division(TOWN_A2),
    division(U3, 1000, [], centroid=(44.05, 87.25)),  # no languages: planned as zh
    division(COUNTY_B),
    division(TOWN_B),
    division(U4, 1500, ["kk", "zh"], polygon=square(44.0, 87.3)),
    division(U5, 500, ["kk"], centroid=(45.0, 88.0)),
]

# id, channel, unit, language, persons, groups, exercise, households
RECIPIENTS = [
    ("s1", SMS, U1, "zh", 1, "", False, 0),
    ("s2", SMS, U1, "ug", 3, "schools", True, 0),
    ("s3", SMS, U1, "zh", 2, "care_homes schools", False, 0),
    ("a1", APP, U1, "zh", 4, "", False, 0),
    ("m1", MESSENGER, U1, "zh", 1, "herders", False, 30),
    ("s4", SMS, U2, "zh", 5, "care_homes", True, 0),
    ("s5", SMS, U2, "zh", 1, "", False, 0),
    ("s6", SMS, U3, "zh", 2, "", False, 0),
    ("s7", SMS, U4, "kk", 1, "", False, 0),
]

# id, kind, unit, covers_population, groups, exercise
ENDPOINTS = [
    ("ls1", EndpointKind.LOUDSPEAKER, U1, 1000, [], True),
    ("ls2", EndpointKind.LOUDSPEAKER, U1, 500, ["schools"], False),
    ("ds1", EndpointKind.DISPLAY, U1, 200, [], False),
    ("ls3", EndpointKind.LOUDSPEAKER, U2, 800, [], False),
    ("ds2", EndpointKind.DISPLAY, U2, 300, ["care_homes"], True),
    ("ls4", EndpointKind.LOUDSPEAKER, U4, 700, [], False),
]

# Everyone in township 652301001 (U1 + U2), every channel, no filter.
EVERYONE_A1 = {
    "sms:s1",
    "sms:s2",
    "sms:s3",
    "sms:s4",
    "sms:s5",
    "app:a1",
    "messenger:m1",
    "loudspeaker:ls1",
    "loudspeaker:ls2",
    "loudspeaker:ls3",
    "display:ds1",
    "display:ds2",
}


def build_directory() -> Directory:
    by_code = {d.code: d for d in DIVISIONS}
    recipients: dict[tuple[str, Channel], RecipientColumns] = {}
    for rid, channel, unit, lang, persons, groups, exercise, households in RECIPIENTS:
        cols = recipients.setdefault((unit, channel), RecipientColumns())
        cols.append(rid, f"addr-{rid}", lang, persons, groups, exercise, households)
    endpoints = [
        Endpoint(
            id=eid,
            kind=kind,
            unit=unit,
            languages=by_code[unit].languages or ["zh"],
            covers_population=covers,
            token_hash="sha256:" + "0" * 64,
            groups=groups,
            exercise=exercise,
            display=Display(chars_per_line=20, lines=4) if kind is EndpointKind.DISPLAY else None,
        )
        for eid, kind, unit, covers, groups, exercise in ENDPOINTS
    ]
    return Directory(DIVISIONS, endpoints, recipients)


DIRX = build_directory()


def agency(*jurisdiction: str) -> Agency:
    return Agency(
        id="test-met",
        name="Test Met",
        api_keys=["sha256:" + "1" * 64],
        jurisdiction=list(jurisdiction),
        senders=[A.MET_SENDER],
        hazards=["*"],
        statuses=["Actual", "Exercise", "Test"],
    )


PREFECTURE = agency("652300")


def record(
    data: dict[str, Any], level: Level = Level.RED, rid: str = "ALERT-1", agency_id: str = "m"
) -> AlertRecord:
    return AlertRecord(
        id=rid,
        agency=agency_id,
        received=RECEIVED,
        level=level,
        hazards=["rainstorm"],
        state=AlertState.ACTIVE,
        content_hash="x",
        alert=Alert.model_validate(data),
        expires=RECEIVED + timedelta(hours=6),
    )


def area(*geocodes: str, polygon: str | None = None, value_name: str | None = None) -> dict:
    name = value_name or "CPEAS Geographic Code"
    out: dict[str, Any] = {"areaDesc": "test area"}
    if geocodes:
        out["geocode"] = [{"valueName": name, "value": g} for g in geocodes]
    if polygon:
        out["polygon"] = [polygon]
    return out


def params(level: str = "red", groups: str | None = None) -> list[dict[str, str]]:
    out = [{"valueName": "level", "value": level}]
    if groups is not None:
        out.append({"valueName": "groups", "value": groups})
    return out


def plan_of(
    rec: AlertRecord,
    *,
    policy: Policy | None = None,
    by: Agency = PREFECTURE,
    now: datetime = NOON,
    reached: Mapping[Channel, frozenset[str]] | None = None,
    directory: Directory = DIRX,
) -> Plan:
    return plan_alert(
        rec,
        directory,
        policy or Policy(),
        by,
        now=now,
        geocode_names=GEOCODE_NAMES,
        reached=reached,
    )


def short_ids(plan: Plan) -> set[str]:
    """`channel:target` of every planned delivery (the alert id prefix left out)."""
    prefix = plan.alert + ":"
    out = set()
    for full in plan.delivery_ids():
        assert full.startswith(prefix)
        out.add(full.removeprefix(prefix))
    return out


def kinds(plan: Plan) -> dict[str, Kind]:
    out: dict[str, Kind] = {}
    for g in plan.push:
        for rid in g.ids():
            out[f"{g.channel}:{rid}"] = g.kind
    for e in plan.endpoints:
        out[f"{e.channel}:{e.endpoint.id}"] = e.kind
    return out


def unit_codes(plan: Plan) -> list[str]:
    return [u.code for u in plan.units]


# --- 1. targeting by geocode ---------------------------------------------------------


@pytest.mark.parametrize(
    ("geocodes", "units", "unresolved"),
    [
        pytest.param(["652301"], [U1, U2, U3], [], id="county-selects-all-its-units"),
        pytest.param(["652301000000"], [U1, U2, U3], [], id="county-12-digit-padded"),
        pytest.param(["652328"], [U4, U5], [], id="other-county"),
        pytest.param(["652300"], [U1, U2, U3, U4, U5], [], id="prefecture"),
        pytest.param(["652300000000"], [U1, U2, U3, U4, U5], [], id="prefecture-12-digit"),
        pytest.param(["650000000000"], [U1, U2, U3, U4, U5], [], id="province-12-digit"),
        pytest.param(["652301001"], [U1, U2], [], id="township-selects-its-villages"),
        pytest.param(["652301001000"], [U1, U2], [], id="township-12-digit-padded"),
        pytest.param(["652301002"], [U3], [], id="township-of-a-centroid-unit"),
        pytest.param([U1], [U1], [], id="village-selects-itself"),
        pytest.param(["652301001002007"], [U2], [], id="grid-selects-its-village"),
        pytest.param(["652302"], [], ["652302"], id="unknown-county"),
        pytest.param(["652301001009"], [], ["652301001009"], id="unknown-village"),
        pytest.param(["652301001009001"], [], ["652301001009001"], id="grid-of-unknown-village"),
        pytest.param([U1, "652302", "652302000000"], [U1], ["652302"], id="unknown-reported-once"),
    ],
)
def test_geocode_targeting(geocodes: list[str], units: list[str], unresolved: list[str]) -> None:
    rec = record(A.alert(geocodes=geocodes))
    assert target_units(rec, DIRX, GEOCODE_NAMES) == (units, unresolved)
    plan = plan_of(rec)
    assert unit_codes(plan) == units
    assert plan.unresolved == unresolved
    assert plan.outside == []


@pytest.mark.parametrize(
    ("value_name", "names", "units"),
    [
        pytest.param("CPEAS Geographic Code", GEOCODE_NAMES, [U1], id="listed-name"),
        pytest.param("cpeas GEOGRAPHIC code", GEOCODE_NAMES, [U1], id="case-insensitive"),
        pytest.param("FIPS6", GEOCODE_NAMES, [], id="unlisted-name-ignored"),
        pytest.param("CPEAS Geographic Code", ["adcode"], [], id="only-configured-names"),
        pytest.param("adcode", ["adcode"], [U1], id="configured-name"),
    ],
)
def test_geocode_value_names(value_name: str, names: list[str], units: list[str]) -> None:
    rec = record(A.alert(area=[area(U1, value_name=value_name)]))
    assert target_units(rec, DIRX, names) == (units, [])


def test_unlisted_value_names_are_not_read_as_codes() -> None:
    # A foreign geocode (not a division code at all) next to a real one: ignored, not
    # reported as unresolved, and it does not break planning.
    foreign = {"valueName": "SAME", "value": "not-a-code"}
    ours = {"valueName": "CPEAS Geographic Code", "value": U2}
    rec = record(A.alert(area=[{"areaDesc": "x", "geocode": [foreign, ours]}]))
    plan = plan_of(rec)
    assert unit_codes(plan) == [U2]
    assert plan.unresolved == []


# --- 2. polygons and circles ---------------------------------------------------------


@pytest.mark.parametrize(
    ("polygon", "units"),
    [
        pytest.param(cap_box(44.04, 87.09, 44.06, 87.11), [U1, U2], id="across-U1-U2-border"),
        pytest.param(cap_box(44.02, 87.02, 44.04, 87.04), [U1], id="inside-U1"),
        pytest.param(cap_box(43.00, 87.00, 43.05, 87.05), [], id="touches-nothing"),
        pytest.param(cap_box(44.04, 87.24, 44.06, 87.26), [U3], id="contains-U3-centroid"),
        pytest.param(cap_box(44.04, 87.26, 44.06, 87.28), [], id="beside-U3-centroid"),
        pytest.param(cap_box(44.04, 87.15, 44.06, 87.35), [U2, U3, U4], id="across-counties"),
    ],
)
def test_polygon_targeting(polygon: str, units: list[str]) -> None:
    rec = record(A.alert(polygon=polygon))
    assert target_units(rec, DIRX, GEOCODE_NAMES) == (units, [])
    assert unit_codes(plan_of(rec)) == units


# U5's centroid is (45.0, 88.0). 10 km is 10 / 111.32 = 0.089831° of latitude, and at
# latitude 45° 10 / (111.32 × cos 45°) = 0.127040° of longitude.
SOUTH_OF_U5 = "44.910169,88.0"  # U5 lies 10 km north of this centre
WEST_OF_U5 = "45.0,87.872960"  # U5 lies 10 km east of this centre


@pytest.mark.parametrize(
    ("circle", "units"),
    [
        pytest.param(f"{SOUTH_OF_U5} 9", [], id="10km-north-radius-9"),
        pytest.param(f"{SOUTH_OF_U5} 11", [U5], id="10km-north-radius-11"),
        pytest.param(f"{WEST_OF_U5} 9", [], id="10km-east-radius-9"),
        pytest.param(f"{WEST_OF_U5} 11", [U5], id="10km-east-radius-11"),
        pytest.param("44.05,87.05 1", [U1], id="inside-U1"),
        pytest.param("44.05,87.1 1", [U1, U2], id="on-U1-U2-border"),
        # 44.03,87.25: U3's centroid 2.2 km north, U2 and U4 4.0 km west and east
        pytest.param("44.03,87.25 3", [U3], id="reaches-U3-centroid"),
        pytest.param("44.03,87.25 2", [], id="short-of-U3-centroid"),
    ],
)
def test_circle_targeting(circle: str, units: list[str]) -> None:
    rec = record(A.alert(circle=circle))
    assert target_units(rec, DIRX, GEOCODE_NAMES) == (units, [])
    assert unit_codes(plan_of(rec)) == units


def test_km_per_degree_is_the_one_the_circle_cases_assume() -> None:
    assert pytest.approx(111.32) == KM_PER_DEGREE


# --- 3. union over areas and info blocks ---------------------------------------------


def test_union_of_areas_in_one_info() -> None:
    rec = record(A.alert(area=[area(U3), area(polygon=cap_box(44.02, 87.02, 44.04, 87.04))]))
    assert unit_codes(plan_of(rec)) == [U1, U3]


def test_union_of_info_blocks() -> None:
    infos = [
        A.info(language="zh-CN", geocodes=[U1]),
        A.info(language="en-US", geocodes=None, polygon=cap_box(44.02, 87.32, 44.04, 87.34)),
    ]
    assert unit_codes(plan_of(record(A.alert(infos=infos)))) == [U1, U4]


def test_same_area_in_two_languages_plans_everyone_once() -> None:
    one = plan_of(record(A.alert(geocodes=[TOWN_A1])))
    infos = [
        A.info(language="zh-CN", geocodes=[TOWN_A1]),
        A.info(language="ug-Arab-CN", geocodes=[TOWN_A1]),
    ]
    two = plan_of(record(A.alert(infos=infos)))
    ids = list(two.delivery_ids())
    assert unit_codes(two) == [U1, U2]
    assert len(ids) == len(set(ids)) == 12
    assert ids == list(one.delivery_ids())
    assert short_ids(two) == EVERYONE_A1


def test_geocode_and_polygon_for_the_same_unit_count_once() -> None:
    rec = record(A.alert(area=[area(U1, polygon=cap_box(44.02, 87.02, 44.04, 87.04))]))
    plan = plan_of(rec)
    assert unit_codes(plan) == [U1]
    ids = list(plan.delivery_ids())
    assert len(ids) == len(set(ids))


# --- 4. clipping to the agency's jurisdiction ----------------------------------------


ACROSS_COUNTIES = cap_box(44.04, 87.15, 44.06, 87.35)  # U2, U3 (county A) and U4 (B)


@pytest.mark.parametrize(
    ("jurisdiction", "info_kw", "inside", "outside", "planned"),
    [
        pytest.param(
            ["652301"],
            {"polygon": ACROSS_COUNTIES},
            [U2, U3],
            [U4],
            {"sms:s4", "sms:s5", "loudspeaker:ls3", "display:ds2", "sms:s6"},
            id="county-A-polygon-over-A-and-B",
        ),
        pytest.param(
            ["652301001"],
            {"geocodes": ["652301"]},
            [U1, U2],
            [U3],
            EVERYONE_A1,
            id="township-agency-county-geocode",
        ),
        pytest.param(
            ["652301002", "652328"],
            {"polygon": ACROSS_COUNTIES},
            [U3, U4],
            [U2],
            {"sms:s6", "sms:s7", "loudspeaker:ls4"},
            id="two-jurisdictions",
        ),
        pytest.param(
            ["652328"],
            {"geocodes": ["652301"]},
            [],
            [U1, U2, U3],
            set(),
            id="all-outside",
        ),
    ],
)
def test_clipped_to_jurisdiction(
    jurisdiction: list[str],
    info_kw: dict[str, Any],
    inside: list[str],
    outside: list[str],
    planned: set[str],
) -> None:
    plan = plan_of(record(A.alert(**info_kw)), by=agency(*jurisdiction))
    assert unit_codes(plan) == inside
    assert plan.outside == outside
    assert short_ids(plan) == planned
    assert {g.unit for g in plan.push} | {e.endpoint.unit for e in plan.endpoints} <= set(inside)


# --- 5. population groups ------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "parsed", "planned"),
    [
        pytest.param(None, [], EVERYONE_A1, id="no-groups-everyone"),
        pytest.param("schools", ["schools"], {"sms:s2", "sms:s3", "loudspeaker:ls2"}, id="schools"),
        pytest.param(
            "care_homes", ["care_homes"], {"sms:s3", "sms:s4", "display:ds2"}, id="care-homes"
        ),
        pytest.param(
            "schools care_homes",
            ["schools", "care_homes"],
            {"sms:s2", "sms:s3", "sms:s4", "loudspeaker:ls2", "display:ds2"},
            id="space-separated",
        ),
        pytest.param(
            "schools,care_homes",
            ["schools", "care_homes"],
            {"sms:s2", "sms:s3", "sms:s4", "loudspeaker:ls2", "display:ds2"},
            id="comma-separated",
        ),
        pytest.param(
            "schools，care_homes",
            ["schools", "care_homes"],
            {"sms:s2", "sms:s3", "sms:s4", "loudspeaker:ls2", "display:ds2"},
            id="fullwidth-comma",
        ),
        pytest.param("herders", ["herders"], {"messenger:m1"}, id="herders-messenger-only"),
        pytest.param("hospitals", ["hospitals"], set(), id="nobody-in-group"),
    ],
)
def test_population_groups(groups: str | None, parsed: list[str], planned: set[str]) -> None:
    rec = record(A.alert(geocodes=[TOWN_A1], parameter=params(groups=groups)))
    assert requested_groups(rec) == parsed
    plan = plan_of(rec)
    assert plan.groups == parsed
    assert short_ids(plan) == planned


def test_groups_of_all_info_blocks_count() -> None:
    infos = [
        A.info(language="zh-CN", geocodes=[TOWN_A1], parameter=params(groups="schools")),
        A.info(language="ug", geocodes=[TOWN_A1], parameter=params(groups="care_homes schools")),
    ]
    plan = plan_of(record(A.alert(infos=infos)))
    assert plan.groups == ["schools", "care_homes"]
    assert short_ids(plan) == {"sms:s2", "sms:s3", "sms:s4", "loudspeaker:ls2", "display:ds2"}


# --- 6. channel policy by level ------------------------------------------------------

EVERY_CHANNEL = [SMS, APP, LOUDSPEAKER, DISPLAY, MESSENGER]
LEVEL_POLICY = Policy(
    [
        Rule(
            area="652301",
            channels={
                Level.RED: EVERY_CHANNEL,
                Level.ORANGE: EVERY_CHANNEL,
                Level.YELLOW: [SMS, APP, LOUDSPEAKER, DISPLAY],
                Level.BLUE: [SMS, DISPLAY],
            },
        )
    ]
)


@pytest.mark.parametrize(
    ("level", "channels", "planned"),
    [
        pytest.param(Level.RED, EVERY_CHANNEL, EVERYONE_A1, id="red-everywhere"),
        pytest.param(Level.ORANGE, EVERY_CHANNEL, EVERYONE_A1, id="orange-everywhere"),
        pytest.param(
            Level.YELLOW,
            [SMS, APP, LOUDSPEAKER, DISPLAY],
            EVERYONE_A1 - {"messenger:m1"},
            id="yellow-no-messenger",
        ),
        pytest.param(
            Level.BLUE,
            [SMS, DISPLAY],
            {"sms:s1", "sms:s2", "sms:s3", "sms:s4", "sms:s5", "display:ds1", "display:ds2"},
            id="blue-sms-and-display",
        ),
    ],
)
def test_channels_by_level(level: Level, channels: list[Channel], planned: set[str]) -> None:
    plan = plan_of(record(A.alert(geocodes=[TOWN_A1]), level=level), policy=LEVEL_POLICY)
    assert short_ids(plan) == planned
    assert [u.channels for u in plan.units] == [tuple(channels)] * 2
    used = {g.channel for g in plan.push} | {e.channel for e in plan.endpoints}
    assert used == set(channels)


@pytest.mark.parametrize("reverse", [False, True], ids=["general-first", "specific-first"])
def test_most_specific_rule_wins(reverse: bool) -> None:
    rules = [
        Rule(area="652300", channels={Level.BLUE: [APP]}),
        Rule(area="652301", channels={Level.BLUE: [SMS, DISPLAY]}),
        Rule(area=U2, channels={Level.BLUE: [LOUDSPEAKER]}),
    ]
    policy = Policy(rules[::-1] if reverse else rules)
    plan = plan_of(record(A.alert(geocodes=[TOWN_A1]), level=Level.BLUE), policy=policy)
    assert [(u.code, u.channels) for u in plan.units] == [
        (U1, (SMS, DISPLAY)),
        (U2, (LOUDSPEAKER,)),
    ]
    assert short_ids(plan) == {"sms:s1", "sms:s2", "sms:s3", "display:ds1", "loudspeaker:ls3"}


# --- 7. quiet hours ------------------------------------------------------------------


def quiet_policy(start: time, end: time, tz: str = "+08:00") -> Policy:
    quiet = QuietHours(start=start, end=end, skip={Level.BLUE: [LOUDSPEAKER]})
    return Policy([Rule(area="652301", timezone=tz, quiet_hours=quiet)])


NIGHT = quiet_policy(time(22, 30), time(7, 30))
MIDDAY = quiet_policy(time(12, 0), time(14, 0))
ALL_LOUDSPEAKERS = {"loudspeaker:ls1", "loudspeaker:ls2", "loudspeaker:ls3"}


def local(hour: int, minute: int) -> datetime:
    return datetime(2025, 6, 2, hour, minute, tzinfo=CST)


@pytest.mark.parametrize(
    ("policy", "level", "now", "loudspeakers"),
    [
        pytest.param(NIGHT, Level.BLUE, local(23, 0), False, id="night-blue-23:00"),
        pytest.param(NIGHT, Level.BLUE, local(12, 0), True, id="night-blue-12:00"),
        pytest.param(NIGHT, Level.BLUE, local(22, 29), True, id="night-blue-22:29"),
        pytest.param(NIGHT, Level.BLUE, local(22, 30), False, id="night-blue-22:30"),
        pytest.param(NIGHT, Level.BLUE, local(0, 0), False, id="night-blue-00:00"),
        pytest.param(NIGHT, Level.BLUE, local(7, 29), False, id="night-blue-07:29"),
        pytest.param(NIGHT, Level.BLUE, local(7, 30), True, id="night-blue-07:30"),
        pytest.param(NIGHT, Level.RED, local(23, 0), True, id="night-red-not-skipped"),
        pytest.param(
            NIGHT, Level.BLUE, datetime(2025, 6, 2, 15, 0, tzinfo=UTC), False, id="utc-15:00"
        ),
        pytest.param(
            NIGHT, Level.BLUE, datetime(2025, 6, 2, 4, 0, tzinfo=UTC), True, id="utc-04:00"
        ),
        pytest.param(
            quiet_policy(time(22, 30), time(7, 30), "+06:00"),
            Level.BLUE,
            local(23, 0),  # 21:00 at +06:00
            True,
            id="rule-timezone-applies",
        ),
        pytest.param(MIDDAY, Level.BLUE, local(11, 59), True, id="midday-blue-11:59"),
        pytest.param(MIDDAY, Level.BLUE, local(12, 0), False, id="midday-blue-12:00"),
        pytest.param(MIDDAY, Level.BLUE, local(13, 59), False, id="midday-blue-13:59"),
        pytest.param(MIDDAY, Level.BLUE, local(14, 0), True, id="midday-blue-14:00"),
        pytest.param(MIDDAY, Level.BLUE, local(23, 0), True, id="midday-blue-23:00"),
    ],
)
def test_quiet_hours(policy: Policy, level: Level, now: datetime, loudspeakers: bool) -> None:
    plan = plan_of(record(A.alert(geocodes=[TOWN_A1]), level=level), policy=policy, now=now)
    expected = EVERYONE_A1 if loudspeakers else EVERYONE_A1 - ALL_LOUDSPEAKERS
    assert short_ids(plan) == expected
    assert all((LOUDSPEAKER in u.channels) is loudspeakers for u in plan.units)


# --- 8. exercises and tests ----------------------------------------------------------

MARKED_A1 = {"sms:s2", "sms:s4", "loudspeaker:ls1", "display:ds2"}


@pytest.mark.parametrize(
    ("status", "only_marked", "planned"),
    [
        pytest.param("Exercise", None, MARKED_A1, id="exercise-default-only-marked"),
        pytest.param("Exercise", True, MARKED_A1, id="exercise-only-marked"),
        pytest.param("Test", True, MARKED_A1, id="test-only-marked"),
        pytest.param("Test", None, MARKED_A1, id="test-default-only-marked"),
        pytest.param("Exercise", False, EVERYONE_A1, id="exercise-everyone"),
        pytest.param("Test", False, EVERYONE_A1, id="test-everyone"),
        pytest.param("Actual", True, EVERYONE_A1, id="actual-everyone"),
    ],
)
def test_exercise_routing(status: str, only_marked: bool | None, planned: set[str]) -> None:
    policy = Policy([Rule(area="652301", exercise_only_marked=only_marked)])
    plan = plan_of(record(A.alert(geocodes=[TOWN_A1], status=status)), policy=policy)
    assert plan.exercise is (status != "Actual")
    assert short_ids(plan) == planned


def test_exercise_flag_is_inherited_and_overridden_per_unit() -> None:
    policy = Policy(
        [
            Rule(area="652300", exercise_only_marked=True),
            Rule(area=U2, exercise_only_marked=False),
        ]
    )
    plan = plan_of(record(A.alert(geocodes=[TOWN_A1], status="Exercise")), policy=policy)
    assert short_ids(plan) == {
        "sms:s2",
        "loudspeaker:ls1",  # U1: marked only
        "sms:s4",
        "sms:s5",
        "loudspeaker:ls3",
        "display:ds2",  # U2: everyone
    }


# --- 9. deterministic ids ------------------------------------------------------------


def test_delivery_id_form() -> None:
    assert delivery_id("A-1", Channel.SMS, "r1") == "A-1:sms:r1"
    assert delivery_id("A-1", "loudspeaker", "ls-9") == "A-1:loudspeaker:ls-9"


def test_planning_twice_gives_the_same_ids() -> None:
    data = A.alert(geocodes=[COUNTY_A])
    first = list(plan_of(record(data)).delivery_ids())
    again = list(plan_of(record(data)).delivery_ids())
    assert first == again
    assert len(first) == 13  # the 12 of township 652301001 and s6 in U3


def test_ids_are_alert_channel_target_and_unique() -> None:
    plan = plan_of(record(A.alert(geocodes=[TOWN_A1]), rid="W-2025-0001"))
    ids = list(plan.delivery_ids())
    assert sorted(ids) == sorted(f"W-2025-0001:{x}" for x in EVERYONE_A1)
    assert len(ids) == len(set(ids)) == plan.count() == 12
    form = re.compile(r"^W-2025-0001:(sms|app|messenger|loudspeaker|display):[a-z]{1,2}\d$")
    assert all(form.match(i) for i in ids)


# --- 10. grouping and targeted persons -----------------------------------------------


def group_rows(plan: Plan) -> set[tuple[Channel, str, str, Kind, tuple[str, ...], int]]:
    return {(g.channel, g.unit, g.language, g.kind, tuple(g.ids()), g.persons) for g in plan.push}


def test_push_groups_by_unit_channel_language_kind() -> None:
    plan = plan_of(record(A.alert(geocodes=[TOWN_A1])))
    assert group_rows(plan) == {
        (SMS, U1, "ug", Kind.ALERT, ("s2",), 3),
        (SMS, U1, "zh", Kind.ALERT, ("s1", "s3"), 3),
        (APP, U1, "zh", Kind.ALERT, ("a1",), 4),
        (MESSENGER, U1, "zh", Kind.ALERT, ("m1",), 1),
        (SMS, U2, "zh", Kind.ALERT, ("s4", "s5"), 6),
    }
    assert len(plan.push) == 5
    assert all(isinstance(g, PushGroup) and len(g) == len(g.rows) for g in plan.push)


def test_endpoint_deliveries() -> None:
    plan = plan_of(record(A.alert(geocodes=[TOWN_A1])))
    assert sorted((e.endpoint.id, e.channel, e.kind) for e in plan.endpoints) == [
        ("ds1", DISPLAY, Kind.ALERT),
        ("ds2", DISPLAY, Kind.ALERT),
        ("ls1", LOUDSPEAKER, Kind.ALERT),
        ("ls2", LOUDSPEAKER, Kind.ALERT),
        ("ls3", LOUDSPEAKER, Kind.ALERT),
    ]


def test_targeted_persons_per_unit_and_channel() -> None:
    plan = plan_of(record(A.alert(geocodes=[TOWN_A1])))
    assert plan.targeted() == {
        (U1, SMS): 1 + 3 + 2,
        (U1, APP): 4,
        (U1, LOUDSPEAKER): 1000 + 500,
        (U1, DISPLAY): 200,
        (U2, SMS): 5 + 1,
        (U2, LOUDSPEAKER): 800,
        (U2, DISPLAY): 300,
    }  # messengers are not counted before they report


def test_target_units_carry_population_channels_and_languages() -> None:
    plan = plan_of(record(A.alert(geocodes=[COUNTY_A]), level=Level.BLUE), policy=LEVEL_POLICY)
    assert [(u.code, u.population, u.channels, u.languages) for u in plan.units] == [
        (U1, 3000, (SMS, DISPLAY), ("zh", "ug")),
        (U2, 2000, (SMS, DISPLAY), ("zh",)),
        (U3, 1000, (SMS, DISPLAY), ("zh",)),  # no languages listed: zh
    ]


# --- 11. updates and cancellations ---------------------------------------------------

EARLIER = A.alert(identifier="W-1", geocodes=[TOWN_A1])
# The earlier version (township 652301001) reached these.
REACHED = {
    SMS: frozenset({"s1", "s2", "s4"}),
    APP: frozenset({"a1"}),
    LOUDSPEAKER: frozenset({U1, U2}),
    DISPLAY: frozenset({U2}),
}


def test_update_narrowed_to_one_village() -> None:
    update = A.alert(identifier="W-2", msg_type="Update", references=[EARLIER], geocodes=[U1])
    plan = plan_of(record(update, rid="W-2"), reached=REACHED)
    assert kinds(plan) == {
        # U1, still targeted: who had it gets the update, the others the alert
        "sms:s1": Kind.UPDATE,
        "sms:s2": Kind.UPDATE,
        "sms:s3": Kind.ALERT,
        "app:a1": Kind.UPDATE,
        "messenger:m1": Kind.ALERT,
        "loudspeaker:ls1": Kind.UPDATE,
        "loudspeaker:ls2": Kind.UPDATE,
        "display:ds1": Kind.ALERT,  # U1's screens did not show the earlier version
        # U2, no longer targeted: whoever had it is told it no longer applies
        "sms:s4": Kind.CANCEL,
        "loudspeaker:ls3": Kind.CANCEL,
        "display:ds2": Kind.CANCEL,
    }
    ids = list(plan.delivery_ids())
    assert len(ids) == len(set(ids)) == 11
    assert group_rows(plan) >= {
        (SMS, U1, "ug", Kind.UPDATE, ("s2",), 3),
        (SMS, U1, "zh", Kind.UPDATE, ("s1",), 1),
        (SMS, U1, "zh", Kind.ALERT, ("s3",), 2),
        (SMS, U2, "zh", Kind.CANCEL, ("s4",), 5),
    }


def test_update_widened_keeps_everyone_and_adds_new_units() -> None:
    update = A.alert(identifier="W-2", msg_type="Update", references=[EARLIER], geocodes=[COUNTY_A])
    plan = plan_of(record(update, rid="W-2"), reached=REACHED)
    assert unit_codes(plan) == [U1, U2, U3]
    assert kinds(plan) == {
        "sms:s1": Kind.UPDATE,
        "sms:s2": Kind.UPDATE,
        "sms:s3": Kind.ALERT,
        "app:a1": Kind.UPDATE,
        "messenger:m1": Kind.ALERT,
        "loudspeaker:ls1": Kind.UPDATE,
        "loudspeaker:ls2": Kind.UPDATE,
        "display:ds1": Kind.ALERT,
        "sms:s4": Kind.UPDATE,
        "sms:s5": Kind.ALERT,
        "loudspeaker:ls3": Kind.UPDATE,
        "display:ds2": Kind.UPDATE,
        "sms:s6": Kind.ALERT,
    }


def test_update_without_reached_is_planned_as_new() -> None:
    update = A.alert(identifier="W-2", msg_type="Update", references=[EARLIER], geocodes=[TOWN_A1])
    plan = plan_of(record(update, rid="W-2"), reached={})
    assert short_ids(plan) == EVERYONE_A1
    assert set(kinds(plan).values()) == {Kind.ALERT}


def test_cancel_goes_exactly_to_who_was_reached() -> None:
    cancel = A.alert(identifier="W-3", msg_type="Cancel", references=[EARLIER], geocodes=[U1])
    plan = plan_of(record(cancel, rid="W-3"), reached=REACHED)
    assert kinds(plan) == {
        "sms:s1": Kind.CANCEL,
        "sms:s2": Kind.CANCEL,
        "sms:s4": Kind.CANCEL,
        "app:a1": Kind.CANCEL,
        "loudspeaker:ls1": Kind.CANCEL,
        "loudspeaker:ls2": Kind.CANCEL,
        "loudspeaker:ls3": Kind.CANCEL,
        "display:ds2": Kind.CANCEL,
    }
    # in each recipient's own language
    assert group_rows(plan) == {
        (SMS, U1, "ug", Kind.CANCEL, ("s2",), 3),
        (SMS, U1, "zh", Kind.CANCEL, ("s1",), 1),
        (SMS, U2, "zh", Kind.CANCEL, ("s4",), 5),
        (APP, U1, "zh", Kind.CANCEL, ("a1",), 4),
    }
    assert unit_codes(plan) == [U1, U2]
    assert all(u.channels == () for u in plan.units)


def test_cancel_ignores_its_own_area_groups_and_exercise_marks() -> None:
    # A cancellation of an exercise naming a group and another county: still exactly
    # the earlier version's audience.
    cancel = A.alert(
        identifier="W-3",
        msg_type="Cancel",
        status="Exercise",
        references=[EARLIER],
        geocodes=[COUNTY_B],
        parameter=params(groups="hospitals"),
    )
    plan = plan_of(record(cancel, rid="W-3"), reached={SMS: frozenset({"s1", "s5"})})
    assert kinds(plan) == {"sms:s1": Kind.CANCEL, "sms:s5": Kind.CANCEL}


def test_cancel_with_nobody_reached_plans_nothing() -> None:
    cancel = A.alert(identifier="W-3", msg_type="Cancel", references=[EARLIER], geocodes=[U1])
    plan = plan_of(record(cancel, rid="W-3"), reached={})
    assert plan.count() == 0
    assert list(plan.delivery_ids()) == []
    assert plan.units == []


# --- the generated sample directory --------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> Directory:
    return load_directory(ROOT / "config")


@pytest.fixture(scope="module")
def sample_agencies() -> dict[str, Agency]:
    rows = read_yaml(ROOT / "config" / "agencies.yaml")["agencies"]
    return {a.id: a for a in (Agency.model_validate(r) for r in rows)}


@pytest.fixture(scope="module")
def sample_policy(sample: Directory) -> Policy:
    problems: list[tuple[str, str, str]] = []
    policy = Policy.load(ROOT / "config", sample, lambda *p: problems.append(p))
    assert problems == []
    return policy


def villages_under(directory: Directory, prefix: str) -> list[str]:
    return sorted(
        c for c, d in directory.divisions.items() if d.tier is Tier.VILLAGE and c.startswith(prefix)
    )


@pytest.mark.parametrize(
    ("geocode", "prefix"),
    [
        pytest.param("652301", "652301", id="county"),
        pytest.param("652301000000", "652301", id="county-12-digit"),
        pytest.param("652301001", "652301001", id="township"),
        pytest.param("652301001000", "652301001", id="township-12-digit"),
        pytest.param("652328", "652328", id="other-county"),
    ],
)
def test_sample_geocode_selects_units_under_it(
    sample: Directory, sample_agencies: dict[str, Agency], geocode: str, prefix: str
) -> None:
    expected = villages_under(sample, prefix)
    assert expected  # the sample has villages there
    rec = record(A.alert(geocodes=[geocode]))
    plan = plan_of(rec, by=sample_agencies["changji-met"], directory=sample)
    assert unit_codes(plan) == expected
    assert plan.outside == []
    assert plan.unresolved == []
    assert {g.unit for g in plan.push} <= set(expected)


def test_sample_county_agency_cannot_warn_the_neighbour(
    sample: Directory, sample_agencies: dict[str, Agency]
) -> None:
    rec = record(A.alert(geocodes=["652301"]))
    plan = plan_of(rec, by=sample_agencies["mori-met"], directory=sample)
    assert plan.units == []
    assert plan.outside == villages_under(sample, "652301")
    assert plan.count() == 0


def test_sample_small_polygon_selects_one_unit(sample: Directory) -> None:
    unit = "652301001001"
    lat, lon = sample.divisions[unit].centroid or (0.0, 0.0)
    box = cap_box(lat - 0.001, lon - 0.001, lat + 0.001, lon + 0.001)
    assert target_units(record(A.alert(polygon=box)), sample, GEOCODE_NAMES) == ([unit], [])


@pytest.mark.parametrize(
    ("now", "channels"),
    [
        pytest.param(local(23, 0), {APP, DISPLAY}, id="night-no-sms-no-loudspeaker"),
        pytest.param(local(12, 0), {SMS, APP, DISPLAY}, id="day"),
    ],
)
def test_sample_policy_for_blue(
    sample: Directory,
    sample_agencies: dict[str, Agency],
    sample_policy: Policy,
    now: datetime,
    channels: set[Channel],
) -> None:
    rec = record(A.alert(geocodes=["652301001"]), level=Level.BLUE)
    plan = plan_of(
        rec, policy=sample_policy, by=sample_agencies["changji-met"], now=now, directory=sample
    )
    assert {c for u in plan.units for c in u.channels} == channels
    used = {g.channel for g in plan.push} | {e.channel for e in plan.endpoints}
    assert used == channels


# --- follow-ups and inheritance (found while reviewing these tests) ---------------------


def test_policy_rule_for_one_level_inherits_the_other_levels() -> None:
    policy = Policy(
        [
            Rule(area="652300", channels={lvl: list(Channel) for lvl in Level}),
            Rule(area=COUNTY_A, channels={Level.BLUE: [SMS]}),
        ]
    )
    unit = policy.for_unit(U1)
    assert unit.channels_for(Level.RED, NOON) == list(Channel)
    assert unit.channels_for(Level.BLUE, NOON) == [SMS]
    assert policy.for_unit(U4).channels_for(Level.BLUE, NOON) == list(Channel)


def test_update_reaches_those_its_own_rules_would_leave_out() -> None:
    """A blue update at night skips loudspeakers and SMS by policy, and names a group;
    the people and loudspeakers that had the red version still hear of the change."""
    night = datetime(2025, 6, 2, 23, 0, tzinfo=CST)
    policy = Policy(
        [
            Rule(
                area="652300",
                quiet_hours=QuietHours(
                    start=time(22, 30), end=time(7, 30), skip={Level.BLUE: [LOUDSPEAKER, SMS]}
                ),
            )
        ]
    )
    update = A.alert(
        identifier="W-2",
        msg_type="Update",
        references=[EARLIER],
        geocodes=[TOWN_A1],
        level="blue",
        severity="Minor",
    )
    update["info"][0]["parameter"].append({"valueName": "groups", "value": "schools"})
    plan = plan_of(record(update, level=Level.BLUE, rid="W-2"), policy=policy, now=night,
                   reached=REACHED)  # fmt: skip
    got = kinds(plan)
    for key in ("sms:s1", "sms:s2", "sms:s4", "loudspeaker:ls1", "loudspeaker:ls3"):
        assert got[key] is Kind.UPDATE, key
    assert "sms:s5" not in got  # never had it, and this version does not go to them
    assert "loudspeaker:ls2" in got  # a school loudspeaker of a unit that had it


def test_escalation_steps_add_channels_officials_and_repeats() -> None:
    policy = Policy([Rule(area="652300", channels={Level.BLUE: [DISPLAY]})])
    rec = record(A.alert(geocodes=[TOWN_A1], level="blue", severity="Minor"), level=Level.BLUE)
    plain = plan_of(rec, policy=policy)
    assert {k.split(":")[0] for k in short_ids(plain)} == {"display"}
    stepped = plan_alert(
        rec,
        DIRX,
        policy,
        PREFECTURE,
        now=NOON,
        geocode_names=GEOCODE_NAMES,
        extra_steps={U1: ["messenger", "sms_officials", "loudspeaker_repeat"]},
    )
    ids = short_ids(stepped) - short_ids(plain)
    assert "messenger:m1" in ids
    assert not any(i.startswith("sms:") for i in ids)  # U1 has no officials in this table
    assert stepped.repeats == {U1: 1}
    assert [u.steps for u in stepped.units if u.code == U1] == [
        ("messenger", "sms_officials", "loudspeaker_repeat")
    ]
    only = plan_alert(
        rec,
        DIRX,
        policy,
        PREFECTURE,
        now=NOON,
        geocode_names=GEOCODE_NAMES,
        extra_steps={U1: ["messenger"]},
        only_units={U1},
        only_channels={MESSENGER},
    )
    assert short_ids(only) == {"messenger:m1"}
