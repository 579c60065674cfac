"""Coverage definition v1 on hand-computed cases, then end to end through the API."""

from __future__ import annotations

import pytest

from gateway.codes import Tier
from gateway.config import Config
from gateway.coverage import (
    alert_coverage,
    broadcast_coverage,
    combine,
    rollup_broadcast,
    verdict,
)
from gateway.directory import Directory, Display, Division, Endpoint, EndpointKind
from gateway.models import Channel
from gateway.policy import Policy, Rule, Targets
from tests import alerts as A
from tests.conftest import Gateway, without_households
from tests.test_dispatch import UNIT


@pytest.fixture
def config(config: Config) -> Config:
    """Definition v1 end to end: the sample directory without its households."""
    return without_households(config)


A_UNIT, B_UNIT, C_UNIT = "652301001001", "652301001002", "652301002001"


def directory() -> Directory:
    divs = [
        Division(code="652301", tier=Tier.COUNTY, name={"zh": "县"}),
        Division(code="652301001", tier=Tier.TOWNSHIP, name={"zh": "甲镇"}),
        Division(code="652301002", tier=Tier.TOWNSHIP, name={"zh": "乙镇"}),
        Division(code=A_UNIT, tier=Tier.VILLAGE, name={"zh": "A"}, population=1000),
        Division(code=B_UNIT, tier=Tier.VILLAGE, name={"zh": "B"}, population=3000),
        Division(code=C_UNIT, tier=Tier.VILLAGE, name={"zh": "C"}, population=500),
    ]
    eps = [
        Endpoint(id="ls-a1", kind=EndpointKind.LOUDSPEAKER, unit=A_UNIT, languages=["zh"],
                 covers_population=600, token_hash="sha256:" + "0" * 64),
        Endpoint(id="ls-a2", kind=EndpointKind.LOUDSPEAKER, unit=A_UNIT, languages=["zh"],
                 covers_population=700, token_hash="sha256:" + "0" * 64),
        Endpoint(id="ls-b1", kind=EndpointKind.LOUDSPEAKER, unit=B_UNIT, languages=["zh"],
                 covers_population=1500, token_hash="sha256:" + "0" * 64),
        Endpoint(id="ds-b1", kind=EndpointKind.DISPLAY, unit=B_UNIT, languages=["zh"],
                 covers_population=900, token_hash="sha256:" + "0" * 64,
                 display=Display(chars_per_line=16, lines=4)),
    ]  # fmt: skip
    return Directory(divs, eps)


POLICY = Policy([Rule(area="652301", targets=Targets(binding=0.9, expected=0.95))])
SUMMARY = {
    "alert": "a1",
    "level": "red",
    "exercise": False,
    "units": {
        A_UNIT: {"population": 1000, "channels": ["sms", "loudspeaker"]},
        B_UNIT: {"population": 3000, "channels": ["sms", "loudspeaker", "display"]},
        C_UNIT: {"population": 500, "channels": ["sms"]},  # nobody reached at all
    },
    "targeted": {f"{A_UNIT}|sms": 300, f"{B_UNIT}|loudspeaker": 1500},
}
AGG = {
    # confirmed reach, by minute after acceptance
    f"r|sms|{A_UNIT}|0": 200,
    f"r|sms|{A_UNIT}|7": 100,
    f"r|loudspeaker|{A_UNIT}|3": 600,
    f"r|loudspeaker|{A_UNIT}|12": 700,  # 1300 > 1000: capped at 100 %
    f"r|loudspeaker|{B_UNIT}|2": 1500,
    f"r|display|{B_UNIT}|20": 900,
    # sent (for comparison)
    f"s|sms|{A_UNIT}|0": 400,
    f"s|sms|{C_UNIT}|0": 100,
    f"L|sms|{A_UNIT}|zh": 250,
    f"L|sms|{A_UNIT}|ug": 50,
    f"G|sms|{A_UNIT}|schools": 40,
    "n|sms|sent": 10,  # counters of other kinds are not reach
}


@pytest.mark.parametrize(
    ("reaches", "expected"),
    [
        ([], (0.0, 0.0, 0.0)),
        ([0.5], (0.5, 0.5, 0.5)),
        ([0.5, 0.5], (0.5, 0.75, 1.0)),
        ([0.2, 0.3], (0.3, 0.44, 0.5)),
        ([0.8, 0.9], (0.9, 0.98, 1.0)),
        ([1.3, 0.1], (1.0, 1.0, 1.0)),  # a reach above 1 is capped first
        ([0.0, 0.0, 0.0], (0.0, 0.0, 0.0)),
    ],
)
def test_unit_coverage_bounds(reaches: list[float], expected: tuple[float, ...]) -> None:
    assert combine(reaches) == pytest.approx(expected)


def test_alert_coverage_by_hand() -> None:
    cov = alert_coverage(SUMMARY, AGG, directory(), POLICY)
    by_unit = {u.unit: u for u in cov.units}
    a, b, c = by_unit[A_UNIT], by_unit[B_UNIT], by_unit[C_UNIT]
    # A: sms 300/1000 = 0.3, loudspeaker min(1, 1300/1000) = 1 → 1 − 0.7·0 = 1
    assert a.reach == {"loudspeaker": 1.0, "sms": 0.3}
    assert (a.lower, a.estimate, a.upper) == pytest.approx((1.0, 1.0, 1.0))
    assert a.persons["loudspeaker"] == 1300  # uncapped persons kept beside the capped share
    # B: loudspeaker 0.5, display 0.3, sms 0 → 1 − 0.5·0.7 = 0.65
    assert (b.lower, b.estimate, b.upper) == pytest.approx((0.5, 0.65, 0.8))
    assert (c.lower, c.estimate, c.upper) == (0.0, 0.0, 0.0)
    # Alert: (1000·1 + 3000·0.65 + 500·0) / 4500
    assert cov.population == 4500
    assert cov.estimate == pytest.approx((1000 + 1950) / 4500)
    assert cov.lower == pytest.approx((1000 + 1500) / 4500)
    assert cov.upper == pytest.approx((1000 + 2400) / 4500)
    assert c.target == 0.9
    assert a.targeted == {"sms": 300}
    assert cov.by_language == {"ug": 50, "zh": 250}
    assert cov.by_group == {"schools": 40}


@pytest.mark.parametrize(
    ("minutes", "a_estimate", "b_estimate"),
    [
        (0, 0.0, 0.0),
        (1, 0.2, 0.0),  # minute 0 only: sms 200
        (3, 0.2, 0.5),  # B's loudspeaker (minute 2) now counts
        (4, 1 - 0.8 * 0.4, 0.5),  # A's first loudspeaker (minute 3): 600
        (10, 1 - 0.7 * 0.4, 0.5),  # A's later sms (minute 7)
        (13, 1.0, 0.5),  # A's second loudspeaker (minute 12)
        (21, 1.0, 0.65),  # B's screen (minute 20)
    ],
)
def test_coverage_over_time(minutes: int, a_estimate: float, b_estimate: float) -> None:
    cov = alert_coverage(SUMMARY, AGG, directory(), POLICY, minutes=minutes)
    by_unit = {u.unit: u.estimate for u in cov.units}
    assert by_unit[A_UNIT] == pytest.approx(a_estimate)
    assert by_unit[B_UNIT] == pytest.approx(b_estimate)
    assert cov.estimate == pytest.approx((1000 * a_estimate + 3000 * b_estimate) / 4500)


def test_sent_reach_is_reported_beside_confirmed() -> None:
    cov = alert_coverage(SUMMARY, AGG, directory(), POLICY)
    # sent: A sms 400/1000, C sms 100/500 → (1000·0.4 + 500·0.2) / 4500
    assert cov.sent_estimate == pytest.approx(500 / 4500)


def test_exercise_alerts_say_so() -> None:
    cov = alert_coverage({**SUMMARY, "exercise": True}, AGG, directory(), POLICY)
    assert cov.exercise is True


def test_rollup_by_township_and_county() -> None:
    cov = alert_coverage(SUMMARY, AGG, directory(), POLICY)
    towns = {r["code"]: r for r in cov.rollup(directory(), Tier.TOWNSHIP)}
    assert towns["652301001"]["coverage"] == pytest.approx((1000 + 1950) / 4000, abs=1e-4)
    assert towns["652301002"]["coverage"] == 0.0
    assert towns["652301001"]["units_below_target"] == 1  # B at 65 % < 90 %
    [county] = cov.rollup(directory(), Tier.COUNTY)
    assert county["code"] == "652301"
    assert county["coverage"] == pytest.approx(cov.estimate, abs=1e-4)


@pytest.mark.parametrize(
    ("value", "target", "passed", "expected"),
    [
        (0.96, 0.95, False, "met"),
        (0.95, 0.95, True, "met"),
        (0.94, 0.95, False, "in progress"),
        (0.94, 0.95, True, "not met"),
    ],
)
def test_verdict(value: float, target: float, passed: bool, expected: str) -> None:
    assert verdict(value, target, deadline_passed=passed) == expected


def test_broadcast_coverage_counts_only_healthy_loudspeakers() -> None:
    now = 10_000_000
    beats = {"ls-a1": now - 60_000, "ls-a2": now - 3_600_000, "ds-b1": now}
    per_unit = broadcast_coverage(directory(), beats, now_ms=now, healthy_within_ms=900_000)
    assert per_unit[A_UNIT] == {
        "population": 1000, "loudspeakers": 2, "healthy": 1, "covered": 600, "coverage": 0.6,
    }  # fmt: skip
    assert per_unit[B_UNIT]["healthy"] == 0  # never heard from: not healthy
    assert per_unit[C_UNIT]["coverage"] == 0.0  # no loudspeaker at all
    [county] = rollup_broadcast(directory(), per_unit, Tier.COUNTY)
    assert county["coverage"] == pytest.approx(600 / 4500, abs=1e-4)
    assert county["loudspeakers"] == 3
    assert county["healthy"] == 1


# -- end to end: a known share delivered, the reported coverage matches ------------------


async def test_reported_coverage_matches_what_was_delivered(gateway: Gateway) -> None:
    import orjson

    from gateway.samplegen import device_token

    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    directory_ = gateway.config.directory
    pop = directory_.divisions[UNIT].population
    cols = directory_.recipients_of(UNIT, Channel.SMS)
    assert cols is not None
    # The provider confirms every other SMS; one of the two loudspeakers plays.
    confirmed = cols.ids[::2]
    receipts = [{"id": f"{body['id']}:sms:{r}", "status": "DELIVRD"} for r in confirmed]
    resp = await gateway.client.post(
        "/api/v1/callbacks/sms/sms-main",
        data=orjson.dumps(receipts),
        headers={"X-Callback-Token": "demo-callback-sms-main"},
    )
    assert resp.status == 200
    speaker = directory_.endpoints_by_unit[UNIT][0]
    await gateway.client.get(
        f"/api/v1/endpoints/{speaker.id}/messages",
        headers={"Authorization": f"Bearer {device_token(speaker.id)}"},
    )
    played = await gateway.client.post(
        f"/api/v1/endpoints/{speaker.id}/receipts",
        data=orjson.dumps({"alert": body["id"], "status": "played"}),
        headers={"Authorization": f"Bearer {device_token(speaker.id)}"},
    )
    assert played.status == 200
    persons = dict(zip(cols.ids, cols.persons, strict=True))
    r_sms = sum(persons[r] for r in confirmed) / pop
    r_ls = speaker.covers_population / pop
    want = 1 - (1 - r_sms) * (1 - r_ls)

    resp = await gateway.client.get(
        f"/api/v1/alerts/{body['id']}/coverage", headers=A.auth(A.OPERATOR)
    )
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["definition"] == "warngate-coverage-v1"
    assert report["coverage"] == pytest.approx(want, abs=1e-4)
    [unit] = report["units"]
    assert unit["reach"]["sms"] == pytest.approx(r_sms, abs=1e-4)
    assert unit["reach"]["loudspeaker"] == pytest.approx(r_ls, abs=1e-4)
    assert report["target"]["binding"] == 0.95  # Changji City's county plan
    assert report["target"]["verdict"] == "in progress"
    assert [p["minutes"] for p in report["series"]] == [1, 5, 10, 15, 30, 60]
    assert report["series"][-1]["coverage"] == pytest.approx(want, abs=1e-4)
    assert report["live"] is True
    zero = await gateway.client.get(
        f"/api/v1/alerts/{body['id']}/coverage", params={"at": "0"}, headers=A.auth(A.OPERATOR)
    )
    assert (await zero.json())["coverage"] == 0.0
    bad = await gateway.client.get(
        f"/api/v1/alerts/{body['id']}/coverage", params={"at": "x"}, headers=A.auth(A.OPERATOR)
    )
    assert bad.status == 400


async def test_broadcast_coverage_api(gateway: Gateway) -> None:
    import orjson

    from gateway.samplegen import device_token

    speaker = gateway.config.directory.endpoints_by_unit[UNIT][0]
    await gateway.client.post(
        f"/api/v1/endpoints/{speaker.id}/heartbeat",
        data=orjson.dumps({"status": "ok"}),
        headers={"Authorization": f"Bearer {device_token(speaker.id)}"},
    )
    resp = await gateway.client.get(
        "/api/v1/coverage/broadcast", params={"unit": "652301001"}, headers=A.auth(A.OPERATOR)
    )
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    rows = {r["unit"]: r for r in report["units"]}
    assert set(rows) == set(gateway.config.directory.units_under("652301001"))
    pop = gateway.config.directory.divisions[UNIT].population
    assert rows[UNIT]["coverage"] == pytest.approx(speaker.covers_population / pop, abs=1e-4)
    assert all(r["healthy"] == 0 for u, r in rows.items() if u != UNIT)
    [township] = report["rollups"]["township"]
    assert township["code"] == "652301001"
    outside = await gateway.client.get(
        "/api/v1/coverage/broadcast", params={"unit": "150603"}, headers=A.auth(A.OPERATOR)
    )
    assert outside.status == 403


async def test_coverage_of_an_alert_that_reached_no_known_unit(gateway: Gateway) -> None:
    """Every geocode unknown to the directory: the plan targets no unit. /coverage
    answered 500 and `warngate report --period` crashed (a policy looked up for the
    non-code '000000'); now the alert is reported as reaching nobody, against the
    target of the area it named."""
    from gateway.reports import alert_report, format_report, period_rows, rows_csv

    body = await gateway.post(A.alert(geocodes=[UNIT]))
    record = await gateway.store.get_alert(body["id"])
    assert record is not None
    # The plan summary as the planner writes it when no area resolves (ingest may let
    # such an alert through, and alerts stored before it refused them have one).
    accepted = int(record.received.timestamp() * 1000)
    summary = {
        "alert": record.id, "msgType": "Alert", "steps": {}, "level": "red",
        "exercise": False, "accepted_ms": accepted, "planned_ms": accepted, "units": {},
        "targeted": {}, "counts": {}, "pull_units": {}, "outside": [],
        "unresolved": ["652301999999"], "groups": [], "render_failures": [],
    }  # fmt: skip
    await gateway.store.save_plan(record.id, summary, {}, {}, accepted_ms=accepted, ttl_s=600)
    resp = await gateway.client.get(
        f"/api/v1/alerts/{record.id}/coverage", headers=A.auth(A.OPERATOR)
    )
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["planned"], report["population"], report["coverage"]) == (True, 0, 0.0)
    assert report["units"] == []
    assert report["unresolved"] == ["652301999999"]
    assert report["target"]["binding"] == 0.95  # Changji City's plan: the area it named
    assert report["target"]["verdict"] == "in progress"
    assert "652301999999" in format_report(report, gateway.config.directory)
    later = await alert_report(gateway.config, gateway.store, record, now=accepted + 11 * 60_000)
    assert later["target"]["verdict"] == "not met"  # it reached nobody
    rows = await period_rows(gateway.config, gateway.store, "daily")
    [row] = [r for r in rows if r["alert"] == record.id]
    assert (row["units"], row["population"], row["target"]) == (0, 0, 0.95)
    assert record.id in rows_csv(rows)


@pytest.mark.parametrize(
    "at",
    ["-1", "x", "nan", "inf", "1e3", "1.5", "٣", "1_0", " 1", "", str(2**63), str(2**64),
     str(10**30), "527041"],
)  # fmt: skip
async def test_coverage_at_is_whole_minutes_in_range(gateway: Gateway, at: str) -> None:
    """`?at=` ≥ 2^64 answered 500 (the figure could not be written as JSON); Unicode
    digits and underscores were taken as numbers. Whole minutes 0–527040 (a year)."""
    from tests.test_ingest_api import problem

    body = await gateway.post(A.alert(geocodes=[UNIT]))
    resp = await gateway.client.get(
        f"/api/v1/alerts/{body['id']}/coverage", params={"at": at}, headers=A.auth(A.OPERATOR)
    )
    assert (await problem(resp, 400, "bad-query"))["parameter"] == "at"
