"""Coverage definition v2 end to end through the real gateway: receipts, device plays
and repeats, messengers naming households, surveys from desks and messengers, the
report, its verdicts and time to target, and the gauges."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from gateway.callbacks import relay_code
from gateway.models import Channel
from gateway.monitor import Monitor
from gateway.reports import format_report
from gateway.samplegen import device_token
from gateway.store import now_ms
from tests import alerts as A
from tests.conftest import Gateway
from tests.test_dispatch import UNIT


async def coverage(gw: Gateway, alert: str, **params: str) -> dict[str, Any]:
    resp = await gw.client.get(
        f"/api/v1/alerts/{alert}/coverage", params=params, headers=A.auth(A.OPERATOR)
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def deliver_sms(gw: Gateway, alert: str, ids: list[str]) -> None:
    receipts = [{"id": f"{alert}:sms:{r}", "status": "DELIVRD"} for r in ids]
    resp = await gw.client.post(
        "/api/v1/callbacks/sms/sms-main",
        data=orjson.dumps(receipts),
        headers={"X-Callback-Token": "demo-callback-sms-main"},
    )
    assert resp.status == 200, await resp.text()


async def play(gw: Gateway, speaker: str, alert: str, repeat: int = 0) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {device_token(speaker)}"}
    await gw.client.get(f"/api/v1/endpoints/{speaker}/messages", headers=headers)
    body: dict[str, Any] = {"alert": alert, "status": "played"}
    if repeat:
        body["repeat"] = repeat
    resp = await gw.client.post(
        f"/api/v1/endpoints/{speaker}/receipts", data=orjson.dumps(body), headers=headers
    )
    assert resp.status == 200, await resp.text()
    out: dict[str, Any] = await resp.json()
    return out


def residents(gw: Gateway, households: set[int]) -> int:
    h = gw.config.directory.households
    assert h is not None
    return int(h.residents[sorted(households)].sum())


async def test_delivered_is_the_union_of_confirmed_footprints(gateway: Gateway) -> None:
    gw = gateway
    body = await gw.post(A.alert(geocodes=[UNIT]))
    await gw.run()
    d = gw.config.directory
    h = d.households
    assert h is not None
    sms = d.recipients_of(UNIT, Channel.SMS)
    assert sms is not None
    confirmed = sms.ids[::2]
    await deliver_sms(gw, body["id"], confirmed)
    speakers = [e for e in d.endpoints_by_unit[UNIT] if e.kind.value == "loudspeaker"]
    await play(gw, speakers[0].id, body["id"])
    # Expected by hand: the households of the confirmed phones and those in the played
    # loudspeaker's footprint, each counted once.
    covered = {sms.household[i] for i in range(0, len(sms.ids), 2)}
    covered |= set(d.footprints[speakers[0].id].tolist())
    pop = h.residents_of(UNIT)
    want = residents(gw, covered) / pop
    report = await coverage(gw, body["id"])
    assert report["definition"] == "warngate-coverage-v2"
    assert report["population"] == pop
    assert report["delivered"] == pytest.approx(want, abs=1e-4)
    [unit] = report["units"]
    assert unit["delivered"] == pytest.approx(want, abs=1e-4)
    # Unconfirmed SMS count at the measured P(delivered | no receipt): (d + 1)/(d + 0 + 2).
    p = (len(confirmed) + 1) / (len(confirmed) + 2)
    assert report["p_delivered_without_receipt"]["sms"] == pytest.approx(p, abs=1e-4)
    assert report["delivered_estimate"] > report["delivered"]
    low, high = report["informed_interval"]
    assert 0 < low <= report["informed"] <= high <= report["delivered_estimate"] + 0.02
    assert report["interval"] == "90 %"
    assert [s["minutes"] for s in report["series"]] == [1, 5, 10, 15, 30, 60]
    assert report["target"]["verdict"] == "in progress"
    assert report["target"]["informed_verdict"] == "in progress"
    assert report["time_to_target"]["delivered"] == {"binding": None, "expected": None}
    [town] = report["rollups"]["township"]
    assert town["delivered"] == pytest.approx(want, abs=1e-4)
    assert "bounds" not in orjson.dumps(report).decode()
    text = format_report(report, d)
    assert "persons informed (C)" in text
    assert "bounds" not in text
    # Before anything arrived, nobody was reached.
    zero = await coverage(gw, body["id"], at="0")
    assert (zero["delivered"], zero["delivered_estimate"]) == (0.0, 0.0)


async def test_messengers_name_households_and_everyone_told_meets_the_target(
    gateway: Gateway,
) -> None:
    gw = gateway
    body = await gw.post(A.alert(geocodes=[UNIT]))
    await gw.run()
    d = gw.config.directory
    h = d.households
    assert h is not None
    code = relay_code(gw.config.settings.secret.get_secret_value(), body["id"], UNIT)
    messengers = d.recipients_of(UNIT, Channel.MESSENGER)
    assert messengers is not None
    members = h.by_unit[UNIT].tolist()
    cells = sorted({h.cells[i] for i in members})
    # Half the cells by cell code, the rest household by household.
    named_cells = cells[: len(cells) // 2]
    rest = [h.ids[i] for i in members if h.cells[i] not in set(named_cells)]
    for households in (named_cells, rest):
        resp = await gw.client.post(
            f"/api/v1/relay/{code}",
            data=orjson.dumps(
                {"phone": messengers.addresses[0], "status": "relayed", "households": households}
            ),
        )
        assert resp.status == 200, await resp.text()
    report = await coverage(gw, body["id"])
    assert report["delivered"] == 1.0
    assert report["target"]["verdict"] == "met"
    assert report["time_to_target"]["delivered"]["binding"] == 1  # all in minute 0: by T+1
    # A household of another unit is refused, and changes nothing.
    other = next(i for i in range(len(h)) if h.units[i] != UNIT)
    resp = await gw.client.post(
        f"/api/v1/relay/{code}",
        data=orjson.dumps(
            {"phone": messengers.addresses[0], "status": "relayed", "households": [h.ids[other]]}
        ),
    )
    assert resp.status == 422
    assert "no household or grid cell" in (await resp.json())["detail"]


async def test_a_repeat_play_is_another_chance_to_hear_not_a_second_delivery(
    gateway: Gateway,
) -> None:
    gw = gateway
    body = await gw.post(A.alert(geocodes=[UNIT]))
    await gw.run()
    speakers = [e for e in gw.config.directory.endpoints_by_unit[UNIT]
                if e.kind.value == "loudspeaker"]  # fmt: skip
    first = await play(gw, speakers[0].id, body["id"])
    assert first["changed"] == 1
    once = await coverage(gw, body["id"])
    again = await play(gw, speakers[0].id, body["id"], repeat=1)
    assert again["changed"] == 0  # the delivery was played already: D does not move
    twice = await coverage(gw, body["id"])
    assert twice["delivered"] == once["delivered"]
    assert twice["informed"] > once["informed"]  # more of its footprint heard it
    log = await gw.store.redis.get(gw.store.keys.reach_log(body["id"], "loudspeaker"))
    assert f"|played+1|{UNIT}|{speakers[0].id}|" in log


async def test_surveys_narrow_the_interval_and_bad_answers_change_nothing(
    gateway: Gateway,
) -> None:
    gw = gateway
    body = await gw.post(A.alert(geocodes=[UNIT]))
    await gw.run()
    d = gw.config.directory
    h = d.households
    assert h is not None
    sms = d.recipients_of(UNIT, Channel.SMS)
    assert sms is not None
    await deliver_sms(gw, body["id"], sms.ids)
    for e in d.endpoints_by_unit[UNIT]:
        if e.kind.value == "loudspeaker":
            await play(gw, e.id, body["id"])
    before = await coverage(gw, body["id"])
    members = h.by_unit[UNIT].tolist()[:60]
    answers = [{"household": h.ids[i], "informed": int(h.residents[i]) // 2, "minute": 5}
               for i in members]  # fmt: skip
    url = f"/api/v1/alerts/{body['id']}/surveys"
    bad_cases = [
        ({"households": [{"household": "h-nope", "informed": 1}]}, "unknown-household"),
        ({"households": [{"household": h.ids[members[0]], "informed": 99}]}, "invalid-survey"),
        (
            {
                "households": [
                    {"household": h.ids[members[0]], "informed": 0, "channels": ["pigeon"]}
                ]
            },
            "invalid-survey",
        ),
        ({"households": []}, "invalid-survey"),
        ({"households": answers[:1], "extra": 1}, "invalid-survey"),
    ]
    for bad, code in bad_cases:
        resp = await gw.client.post(url, data=orjson.dumps(bad), headers=A.auth(A.OPERATOR))
        assert resp.status == 422, bad
        assert (await resp.json())["code"] == code
    agency = await gw.client.post(url, data=orjson.dumps({"households": answers}),
                                  headers=A.auth("wgdemo-changji-met"))  # fmt: skip
    assert agency.status == 403
    assert await gw.store.surveys(body["id"]) == {}  # nothing kept
    resp = await gw.client.post(
        url, data=orjson.dumps({"households": answers}), headers=A.auth(A.OPERATOR)
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["households_surveyed"] == 60
    after = await coverage(gw, body["id"])
    s = after["surveys"]
    assert s["households"] == 60
    assert s["informed_interval_without"] == before["informed_interval"]
    width = lambda r: r[1] - r[0]  # noqa: E731
    assert width(s["informed_interval"]) < width(s["informed_interval_without"])
    assert s["narrowed_by_pp"] > 0
    assert after["registry_suspect"] == []
    # The county learns: its posterior is kept for its next alerts.
    [kept] = await gw.store.posteriors("652301")
    assert (kept["alert"], kept["households"]) == (body["id"], 60)


async def test_households_hearing_a_loudspeaker_outside_every_footprint_flag_the_registry(
    gateway: Gateway,
) -> None:
    """Surveyed households say a loudspeaker told them, but no loudspeaker that played
    reaches them in the registry: its footprints are wrong. The report says so, and C's
    interval widens to what the survey alone supports."""
    gw = gateway
    body = await gw.post(A.alert(geocodes=[UNIT]))
    await gw.run()
    d = gw.config.directory
    h = d.households
    assert h is not None
    speakers = [e for e in d.endpoints_by_unit[UNIT] if e.kind.value == "loudspeaker"]
    await play(gw, speakers[0].id, body["id"])
    heard = set(d.footprints[speakers[0].id].tolist())
    outside = [i for i in h.by_unit[UNIT].tolist() if i not in heard][:40]
    answers = [{"household": h.ids[i], "informed": int(h.residents[i]),
                "channels": ["loudspeaker"]} for i in outside]  # fmt: skip
    without = await coverage(gw, body["id"])
    resp = await gw.client.post(
        f"/api/v1/alerts/{body['id']}/surveys",
        data=orjson.dumps({"households": answers}),
        headers=A.auth(A.OPERATOR),
    )
    assert resp.status == 200, await resp.text()
    report = await coverage(gw, body["id"])
    kinds = {(f["unit"], f["kind"]) for f in report["surveys"]["flags"]}
    assert ("652301", "outside-footprint") in kinds
    assert "652301" in report["registry_suspect"]
    # Everyone surveyed knew (far more than the receipts explain): C moves up and its
    # interval is the survey's, wider than the model alone would give.
    assert report["informed"] > without["informed"]


async def test_messengers_survey_through_their_task_and_by_sms(gateway: Gateway) -> None:
    gw = gateway
    body = await gw.post(A.alert(geocodes=[UNIT]))
    await gw.run()
    d = gw.config.directory
    h = d.households
    assert h is not None
    code = relay_code(gw.config.settings.secret.get_secret_value(), body["id"], UNIT)
    messengers = d.recipients_of(UNIT, Channel.MESSENGER)
    assert messengers is not None
    home = h.ids[h.by_unit[UNIT][0]]
    resp = await gw.client.post(
        f"/api/v1/relay/{code}/survey",
        data=orjson.dumps({"phone": messengers.addresses[0],
                           "households": [{"household": home, "informed": 1}]}),
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    stranger = await gw.client.post(
        f"/api/v1/relay/{code}/survey",
        data=orjson.dumps({"phone": "13999999999",
                           "households": [{"household": home, "informed": 1}]}),
    )  # fmt: skip
    assert stranger.status == 404
    second = h.ids[h.by_unit[UNIT][1]]
    resp = await gw.client.post(
        "/api/v1/callbacks/sms/sms-main/inbound",
        data=orjson.dumps({"from": messengers.addresses[0], "text": f"{code} 3 {second} 2"}),
        headers={"X-Callback-Token": "demo-callback-sms-main"},
    )
    assert resp.status == 200, await resp.text()
    kept = await gw.store.surveys(body["id"])
    assert {k: v["informed"] for k, v in kept.items()} == {home: 1, second: 2}


async def test_a_group_alert_is_measured_against_its_group(gateway: Gateway) -> None:
    gw = gateway
    d = gw.config.directory
    params = [{"valueName": "level", "value": "red"}, {"valueName": "groups", "value": "schools"}]
    body = await gw.post(A.alert(geocodes=["652301"], parameter=params))
    await gw.run()
    report = await coverage(gw, body["id"])
    assert report["definition"] == "warngate-coverage-v2"
    population = sum(d.divisions[u].population for u in d.units_under("652301"))
    # The schools' households: a small share of the county, not all of its residents.
    assert 0 < report["population"] < 0.2 * population
    for u in report["units"]:
        assert u["population"] < d.divisions[u["unit"]].population


async def test_v2_gauges_follow_live_alerts(gateway: Gateway) -> None:
    gw = gateway
    original = A.alert(geocodes=[UNIT])
    body = await gw.post(original)
    await gw.run()
    sms = gw.config.directory.recipients_of(UNIT, Channel.SMS)
    assert sms is not None
    await deliver_sms(gw, body["id"], sms.ids)
    mon = Monitor(gw.config, gw.store, gw.workers.planner, gw.workers.metrics)
    await mon.tick(now=now_ms())
    text = (await (await gw.client.get("/metrics")).read()).decode()
    alert = body["id"]
    assert f'warngate_alert_delivered{{alert="{alert}",area="",level="red"}}' in text
    for q in ("0.05", "0.5", "0.95"):
        assert (f'warngate_alert_informed{{alert="{alert}",area="652301",level="red",'
                f'quantile="{q}"}}') in text  # fmt: skip
    report = await coverage(gw, alert)
    line = next(x for x in text.splitlines()
                if x.startswith(f'warngate_alert_delivered{{alert="{alert}",area=""'))  # fmt: skip
    assert float(line.split()[-1]) == pytest.approx(report["delivered"], abs=1e-3)
    kept = (await gw.store.coverage_summaries([alert]))[0]
    assert kept is not None
    assert kept["definition"] == "warngate-coverage-v2"
    assert kept["delivered"] == pytest.approx(report["delivered"], abs=1e-3)
    await gw.post(A.alert(msg_type="Cancel", references=[original], geocodes=[UNIT]))
    await gw.run()
    await mon.tick(now=now_ms())
    text = (await (await gw.client.get("/metrics")).read()).decode()
    assert f'warngate_alert_delivered{{alert="{alert}"' not in text  # removed at its end
    assert np.isfinite(kept["population"])
