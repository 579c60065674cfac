"""Scheduled tests: a Test alert to the canary receivers at its slot (once, whatever the
number of processes), receipts checked end to end with the latency per channel, a run
that misses a receipt fails by its timeout, the warngate_canary_… gauges follow what is
stored, and canary deliveries never enter the live figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from gateway.callbacks import relay_code
from gateway.console.canary import Canaries, Schedule, load_schedules, slot_after, slot_before
from gateway.errors import ConfigError
from gateway.keys import CONSOLE, INGESTOR, METRICS
from gateway.models import Channel
from gateway.samplegen import device_token
from tests.conftest import SAMPLE_CONFIG, Gateway
from tests.console import APPROVER, VIEWER, login

CHINA = timezone(timedelta(hours=8))
SCHEDULE = "changji-city-monthly"
# The sample's schedules made daily at a minute ago (local time), so that their slot is
# now: alerts of a slot in the past would have expired before they were planned.
SLOT = (datetime.now(CHINA) - timedelta(minutes=1)).replace(second=0, microsecond=0)


def canaries_of(gw: Gateway) -> Canaries:
    schedules = [
        s.model_copy(update={"every": "daily", "at": SLOT.time()})
        for s in load_schedules(SAMPLE_CONFIG / "canaries.yaml", gw.config)
    ]
    return Canaries(gw.config, gw.store, gw.app[INGESTOR], gw.app[METRICS], schedules)


def test_slots_of_monthly_and_weekly_schedules() -> None:
    s = Schedule.model_validate(
        {"id": "t1", "agency": "a", "hazard": "gale", "receivers": ["x"], "day": 1, "at": "10:00"}
    )
    first = datetime(2026, 12, 1, 10, 0, tzinfo=CHINA)
    assert slot_before(s, first + timedelta(minutes=1), CHINA) == first
    before = slot_before(s, first - timedelta(minutes=1), CHINA)
    assert before == datetime(2026, 11, 1, 10, tzinfo=CHINA)
    assert slot_after(s, first, CHINA) == datetime(2027, 1, 1, 10, tzinfo=CHINA)
    weekly = s.model_copy(update={"every": "weekly", "day": 3})  # Wednesdays
    assert slot_after(weekly, first, CHINA) == datetime(2026, 12, 2, 10, tzinfo=CHINA)


def test_a_receiver_that_no_test_reaches_is_refused(gateway: Gateway, tmp_path: Path) -> None:
    path = tmp_path / "canaries.yaml"
    path.write_text(
        "canaries:\n  - {id: t1, agency: changji-em, hazard: gale, receivers:"
        " [ls-652301001001-1, nobody]}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_schedules(path, gateway.config)
    text = str(err.value)
    assert "ls-652301001001-1 is not marked `exercise`" in text
    assert "nobody is not in the directory" in text


async def confirm_everything(gw: Gateway, alert: str, skip: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """The canaries answer as devices and providers do: screens and loudspeakers fetch
    and report, the SMS and app providers send receipts, the messenger replies."""
    for endpoint in ("ls-652301002008-1", "ds-652301001006-1"):
        if endpoint in skip:
            continue
        headers = {"Authorization": f"Bearer {device_token(endpoint)}"}
        assert (await gw.client.get(f"/api/v1/endpoints/{endpoint}/messages", headers=headers)).ok
        status = "played" if endpoint.startswith("ls-") else "displayed"
        sent = await gw.client.post(
            f"/api/v1/endpoints/{endpoint}/receipts",
            data=orjson.dumps({"alert": alert, "status": status}),
            headers=headers,
        )
        assert sent.ok, await sent.text()
    for family, provider, rid, word in (
        ("sms", "sms-main", "r0000061", "DELIVRD"),
        ("app", "push", "r0000097", "delivered"),
    ):
        if rid in skip:
            continue
        channel = "sms" if family == "sms" else "app"
        dlr = await gw.client.post(
            f"/api/v1/callbacks/{family}/{provider}",
            data=orjson.dumps([{"id": f"{alert}:{channel}:{rid}", "status": word}]),
            headers={"X-Callback-Token": f"demo-callback-{provider}"},
        )
        assert dlr.ok, await dlr.text()
    if "r0000226" not in skip:
        cols = gw.config.directory.recipients_of("652301001005", Channel.MESSENGER)
        assert cols is not None
        phone = cols.addresses[cols.ids.index("r0000226")]
        code = relay_code(gw.config.settings.secret.get_secret_value(), alert, "652301001005")
        ack = await gw.client.post(
            f"/api/v1/relay/{code}", data=orjson.dumps({"phone": phone, "status": "received"})
        )
        assert ack.ok, await ack.text()
    from gateway.keys import HUB

    await gw.app[HUB].flush()


async def test_a_run_at_its_slot_reaches_every_canary_and_is_measured(gateway: Gateway) -> None:
    canaries = canaries_of(gateway)
    late = await canaries.tick(SLOT + timedelta(hours=7))  # a slot missed by hours: skipped
    assert late == []
    assert await gateway.store.canary_runs(SCHEDULE, 1) == []
    canaries = canaries_of(gateway)
    await gateway.store.redis.delete(gateway.store.keys.canary(SCHEDULE))
    started = await canaries.tick(SLOT + timedelta(seconds=30))
    assert len(started) == 2  # both schedules of the sample
    running = await gateway.store.canary_running(SCHEDULE)
    assert running is not None
    alert = running["alert"]
    assert alert in started
    assert await canaries.tick(SLOT + timedelta(seconds=40)) == []  # the slot is taken once
    record = await gateway.store.get_alert(alert)
    assert record is not None
    assert record.alert.status.value == "Test"
    await gateway.run()
    sent_to = {i.rsplit(":", 1)[1] for i in gateway.sms.accepted_ids if alert in i}
    marked = {
        rid
        for (unit, ch), cols in gateway.config.directory.recipients.items()
        if ch in (Channel.SMS, Channel.MESSENGER)
        for i, rid in enumerate(cols.ids)
        if cols.exercise[i]
    }
    assert "r0000061" in sent_to
    assert sent_to <= marked  # only receivers marked for exercises
    await confirm_everything(gateway, alert)
    await canaries.tick(SLOT + timedelta(minutes=2))
    runs = await gateway.store.canary_runs(SCHEDULE, 5)
    assert runs[0]["result"] == "ok", runs[0]
    channels = runs[0]["channels"]
    assert set(channels) == {"loudspeaker", "display", "sms", "app", "messenger"}
    assert all(c["ok"] and c["latency_s"] is not None for c in channels.values())
    text = await (await gateway.client.get("/metrics")).text()
    assert f'warngate_canary_last_success{{schedule="{SCHEDULE}"}} 1.0' in text
    assert f'warngate_canary_channel_ok{{channel="sms",schedule="{SCHEDULE}"}} 1.0' in text
    assert "warngate_canary_latency_seconds{" in text
    # Never in the live figures: the monitor shows it as an exercise only.
    await gateway.workers.monitor.tick()
    text = await (await gateway.client.get("/metrics")).text()
    assert f'warngate_alert_coverage{{alert="{alert}"' not in text
    approver = await login(gateway.client, APPROVER)
    page = await (
        await gateway.client.get("/console/", headers={"Cookie": approver["Cookie"]})
    ).text()
    live = page.split("生效中的预警", 1)[1].split("</section>", 1)[0]
    assert alert not in live


async def test_a_missing_receipt_fails_the_run_at_its_timeout(gateway: Gateway) -> None:
    canaries = canaries_of(gateway)
    await canaries.tick(SLOT + timedelta(seconds=1))
    running = await gateway.store.canary_running(SCHEDULE)
    assert running is not None
    alert = running["alert"]
    await gateway.run()
    await confirm_everything(gateway, alert, skip={"ds-652301001006-1"})
    await canaries.tick(SLOT + timedelta(minutes=5))
    assert await gateway.store.canary_runs(SCHEDULE, 1) == []  # still waiting
    await canaries.tick(SLOT + timedelta(minutes=11))
    (run,) = await gateway.store.canary_runs(SCHEDULE, 1)
    assert run["result"] == "failed"
    assert run["channels"]["display"]["missing"] == ["ds-652301001006-1"]
    assert run["channels"]["sms"]["ok"]
    text = await (await gateway.client.get("/metrics")).text()
    assert f'warngate_canary_last_success{{schedule="{SCHEDULE}"}} 0.0' in text
    assert f'warngate_canary_channel_ok{{channel="display",schedule="{SCHEDULE}"}} 0.0' in text


async def test_a_person_runs_a_test_now(gateway: Gateway) -> None:
    if gateway.app[CONSOLE].canaries is None:
        gateway.app[CONSOLE].canaries = canaries_of(gateway)
    approver = await login(gateway.client, APPROVER)
    resp = await gateway.client.post(f"/api/v1/canaries/{SCHEDULE}/run", headers=approver)
    body = await resp.json()
    assert resp.status == 202, body
    again = await gateway.client.post(f"/api/v1/canaries/{SCHEDULE}/run", headers=approver)
    assert (again.status, (await again.json())["code"]) == (409, "test-running")
    viewer = await login(gateway.client, VIEWER)
    refused = await gateway.client.post("/api/v1/canaries/mori-monthly/run", headers=viewer)
    assert (refused.status, (await refused.json())["code"]) == (403, "role-required")
    listed = await (await gateway.client.get("/api/v1/canaries", headers=viewer)).json()
    assert {s["id"] for s in listed["schedules"]} == {SCHEDULE, "mori-monthly"}
    assert listed["schedules"][0]["runs"][0]["alert"] == body["alert"]
    page = await gateway.client.get("/console/tests", headers={"Cookie": viewer["Cookie"]})
    assert body["alert"] in await page.text()
    events = [e for e in await gateway.store.audit(10) if e.get("event") == "canary-started"]
    assert events[0]["by"] == APPROVER
    assert datetime.now(UTC)  # the run is stamped now


def test_check_config_refuses_a_bad_schedule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from gateway.cli import main

    config_dir = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, config_dir)
    text = (config_dir / "canaries.yaml").read_text()
    (config_dir / "canaries.yaml").write_text(text.replace("r0000061", "r0000001"))
    assert main(["check-config", str(config_dir)]) == 2
    err = capsys.readouterr().err
    assert "canaries.yaml: canaries[changji-city-monthly].receivers: r0000001 is not marked" in err
