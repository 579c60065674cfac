"""The console's pages over HTTP: every text translated, login form with its own CSRF
token, pages per role, compose → preview (exactly what goes out, limit failures before
release, nothing stored) → submit → approve by a second person, duplicates prompted,
update and cancel of a live alert, the watch page's event stream, and the SVG map."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import yaml
from redis.asyncio import Redis

from gateway.api.openapi import document
from gateway.console.geo import coverage_colour, svg_map
from gateway.models import AlertState
from tests import alerts as A
from tests.conftest import ROOT, Gateway
from tests.console import APPROVER, DRAFTER, VIEWER, Client, login, password

PAGES = ROOT / "templates" / "console"
UNITS = ["652301001001", "652301001002"]
EM_KEY = "wgdemo-changji-em"


def texts_of_pages() -> set[str]:
    found: set[str] = set()
    for path in PAGES.glob("*.html"):
        source = path.read_text(encoding="utf-8")
        found |= set(re.findall(r'(?<![\w.])t\("([^"]+)"', source))
        found |= set(re.findall(r"(?<![\w.])t\('([^']+)'", source))
    return found


def test_every_text_of_the_pages_has_its_chinese() -> None:
    zh = yaml.safe_load((PAGES / "i18n" / "zh.yaml").read_text(encoding="utf-8"))
    texts = texts_of_pages()
    assert len(texts) > 120
    missing = sorted(t for t in texts if t not in zh and not t.startswith("lang_"))
    assert missing == []
    for value in ("red", "orange", "Exercise", "pending-approval", "sms", "drafter", "approve"):
        assert value in zh  # words the pages translate from data


def page_headers(person: dict[str, str]) -> dict[str, str]:
    return {"Cookie": person["Cookie"]}


async def form(
    client: Client, path: str, person: dict[str, str], data: dict[str, Any] | list[tuple[str, str]]
) -> Any:
    pairs = list(data.items()) if isinstance(data, dict) else list(data)
    pairs.append(("csrf", person["X-CSRF-Token"]))
    return await client.post(path, data=pairs, headers=page_headers(person), allow_redirects=False)


async def test_the_login_form_has_its_own_token(client: Client) -> None:
    page = await client.get("/console/login")
    assert page.status == 200
    html = await page.text()
    token = re.search(r'name="login_token" value="([^"]+)"', html)
    assert token is not None
    cookie = page.cookies["wglogin"]
    assert cookie["httponly"]
    fields = {"account": DRAFTER, "password": password(DRAFTER), "next": "/console/compose"}
    client.session.cookie_jar.clear()
    forged = await client.post(
        "/console/login",
        data={**fields, "login_token": "forged"},
        headers={"Cookie": f"wglogin={cookie.value}"},
        allow_redirects=False,
    )
    assert forged.status == 403
    wrong = await client.post(
        "/console/login",
        data={**fields, "password": "nope-nope", "login_token": token[1]},
        headers={"Cookie": f"wglogin={cookie.value}"},
        allow_redirects=False,
    )
    assert wrong.status == 401
    assert "账号或密码错误" in await wrong.text()
    ok = await client.post(
        "/console/login",
        data={**fields, "login_token": token[1]},
        headers={"Cookie": f"wglogin={cookie.value}"},
        allow_redirects=False,
    )
    assert (ok.status, ok.headers["Location"]) == (303, "/console/compose")
    assert ok.cookies["wgsession"]["samesite"] == "Strict"
    away = await client.get("/console/", allow_redirects=False)
    client.session.cookie_jar.clear()
    away = await client.get("/console/", allow_redirects=False)
    assert away.status == 303
    assert away.headers["Location"].startswith("/console/login?next=")


async def test_pages_answer_per_role_in_both_languages(gateway: Gateway) -> None:
    client = gateway.client
    viewer = await login(client, VIEWER)
    home = await client.get("/console/?lang=en", headers=page_headers(viewer))
    assert home.status == 200
    html = await home.text()
    assert "Broadcast coverage per county" in html
    assert 'href="/console/compose"' not in html  # viewers do not compose
    assert "Content-Security-Policy" in home.headers
    drafter = await login(client, DRAFTER)
    zh = await (await client.get("/console/compose", headers=page_headers(drafter))).text()
    assert "编辑预警" in zh
    assert 'data-unit="652301001001"' in zh  # the map, drawn from the directory
    assert (await client.get("/console/tests", headers=page_headers(drafter))).status == 200
    missing = await client.get("/console/alerts/nothing", headers=page_headers(drafter))
    assert missing.status == 404


def compose_fields(**more: Any) -> list[tuple[str, str]]:
    fields = {
        "hazard": "rainstorm",
        "level": "red",
        "status": "Actual",
        "msg_type": "Alert",
        "expires_minutes": "360",
        "headline_zh": "昌吉市发布暴雨红色预警",
        "instruction_zh": "请远离河道，转移到安全地带。",
    }
    units = more.pop("units", UNITS)
    fields.update({k: str(v) for k, v in more.items()})
    return [*fields.items(), *(("unit", u) for u in units)]


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, name
    return found[1]


async def test_compose_preview_submit_and_a_second_person_approves(
    gateway: Gateway, redis: Redis, prefix: str
) -> None:
    client = gateway.client
    drafter = await login(client, DRAFTER)
    before = {k async for k in redis.scan_iter(match=f"{prefix}:alert:*")}
    shown = await form(client, "/console/compose", drafter, compose_fields(action="preview"))
    assert shown.status == 200
    html = await shown.text()
    assert "SMS segments" in html or "条短信" in html
    assert "需要第二人审批" in html  # red Actual waits for an approver
    assert "预计覆盖率" in html
    assert {k async for k in redis.scan_iter(match=f"{prefix}:alert:*")} == before  # nothing stored
    identifier = hidden(html, "identifier")
    fields = compose_fields(
        action="submit",
        identifier=identifier,
        sent=hidden(html, "sent"),
        expires_at=hidden(html, "expires_at"),
    )
    submitted = await form(client, "/console/compose", drafter, fields)
    assert submitted.status == 303, await submitted.text()
    alert = submitted.headers["Location"].rsplit("/", 1)[1]
    record = await gateway.store.get_alert(alert)
    assert record is not None
    assert record.state is AlertState.PENDING
    assert record.alert.identifier == identifier  # the alert previewed is the one submitted
    assert record.approval is not None
    assert record.approval["drafted_by"] == DRAFTER
    page = await (
        await client.get(f"/console/alerts/{alert}", headers=page_headers(drafter))
    ).text()
    assert "等待第二人审批" in page
    own = await form(client, f"/console/alerts/{alert}/approve", drafter, {})
    assert own.status == 403
    approver = await login(client, APPROVER)
    forged = await client.post(
        f"/console/alerts/{alert}/approve",
        data={"csrf": "x"},
        headers=page_headers(approver),
        allow_redirects=False,
    )
    assert forged.status == 403
    done = await form(client, f"/console/alerts/{alert}/approve", approver, {})
    assert done.status == 303
    await gateway.run()
    assert any(alert in i for i in gateway.sms.accepted_ids)
    watch = await (
        await client.get(f"/console/alerts/{alert}", headers=page_headers(approver))
    ).text()
    assert 'id="watch"' in watch
    assert "changji-approver" in watch


async def test_a_duplicate_is_prompted_before_it_is_submitted(gateway: Gateway) -> None:
    client = gateway.client
    first = await gateway.post(A.alert(sender=A.EM_SENDER, geocodes=[UNITS[0]]), key=EM_KEY)
    drafter = await login(client, DRAFTER)
    shown = await (
        await form(client, "/console/compose", drafter, compose_fields(action="preview"))
    ).text()
    assert first["id"] in shown  # listed as a possible duplicate
    fields = compose_fields(
        action="submit",
        identifier=hidden(shown, "identifier"),
        sent=hidden(shown, "sent"),
        expires_at=hidden(shown, "expires_at"),
    )
    refused = await form(client, "/console/compose", drafter, fields)
    assert refused.status == 409
    confirmed = await form(
        client, "/console/compose", drafter, [*fields, ("confirm_duplicate", "yes")]
    )
    assert confirmed.status == 303


async def test_update_and_cancel_of_a_live_alert_from_its_page(gateway: Gateway) -> None:
    client = gateway.client
    live = await gateway.post(
        A.alert(sender=A.EM_SENDER, level="yellow", severity="Moderate", geocodes=UNITS), key=EM_KEY
    )
    drafter = await login(client, DRAFTER)
    page = await (
        await client.get(
            f"/console/compose?update={live['id']}&level=orange", headers=page_headers(drafter)
        )
    ).text()
    refs = hidden(page, "references")
    assert refs.startswith(A.EM_SENDER + ",")
    assert 'value="orange" checked' in page
    update = compose_fields(action="submit", level="orange", msg_type="Update", references=refs)
    sent = await form(client, "/console/compose", drafter, update)
    assert sent.status == 303, await sent.text()
    updated = sent.headers["Location"].rsplit("/", 1)[1]
    pending = await gateway.store.get_alert(updated)
    assert pending is not None
    assert (pending.alert.msgType.value, pending.state) == ("Update", AlertState.PENDING)
    approver = await login(client, APPROVER)
    assert (await form(client, f"/console/alerts/{updated}/approve", approver, {})).status == 303
    old = await gateway.store.get_alert(live["id"])
    assert old is not None
    assert old.state is AlertState.UPDATED
    page = await (
        await client.get(f"/console/compose?cancel={updated}", headers=page_headers(drafter))
    ).text()
    cancel = compose_fields(
        action="submit", level="orange", msg_type="Cancel", references=hidden(page, "references")
    )
    lifted = await form(client, "/console/compose", drafter, cancel)
    assert lifted.status == 303  # a Cancel goes at once (policy: Alert and Update wait)
    newer = await gateway.store.get_alert(updated)
    assert newer is not None
    assert newer.state is AlertState.CANCELLED


async def test_the_preview_api_shows_what_goes_out_and_limit_failures(
    gateway: Gateway, redis: Redis, prefix: str
) -> None:
    doc = document()
    data = A.alert(sender=A.EM_SENDER, geocodes=UNITS)
    resp = await gateway.client.post(
        "/api/v1/previews?unit=652301001002",
        data=orjson.dumps(data),
        headers=A.json_headers(EM_KEY),
    )
    body = await resp.json()
    assert resp.status == 200, body
    schema = doc["paths"]["/api/v1/previews"]["post"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    jsonschema.validate(body, {**doc, **schema}, cls=jsonschema.Draft202012Validator)
    assert body["unit"] == "652301001002"
    assert body["on_submit"] == "pending-approval"
    channels = {m["channel"] for m in body["messages"]}
    assert {"sms", "app", "loudspeaker", "messenger"} <= channels
    sms = next(m for m in body["messages"] if m["channel"] == "sms")
    assert sms["segments"] >= 1
    assert sms["encoding"]
    screens = [m for m in body["messages"] if m["channel"] == "display"]
    assert screens
    assert screens[0]["screens"][0]["pages"]
    assert body["coverage"]["units"][0]["predicted"] is not None
    assert not [k async for k in redis.scan_iter(match=f"{prefix}:alert:*")]  # nothing stored
    long = A.alert(sender=A.EM_SENDER, geocodes=UNITS, headline="暴雨红色预警，请立即转移。" * 60)
    resp = await gateway.client.post(
        "/api/v1/previews", data=orjson.dumps(long), headers=A.json_headers(EM_KEY)
    )
    failures = (await resp.json())["failures"]
    assert failures
    assert {f["code"] for f in failures} == {"limit-exceeded"}


async def test_the_watch_page_streams_snapshots(gateway: Gateway) -> None:
    live = await gateway.post(A.alert(geocodes=UNITS))
    await gateway.run()
    viewer = await login(gateway.client, VIEWER)
    resp = await gateway.client.get(
        f"/console/alerts/{live['id']}/events", headers=page_headers(viewer)
    )
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    first = b""
    while b"\n\n" not in first:
        first += await resp.content.readany()
    resp.close()
    event, data = first.split(b"\n", 1)
    assert event == b"event: snapshot"
    snap = orjson.loads(data.removeprefix(b"data: ").split(b"\n")[0])
    assert snap["counts"]["sms"]
    assert {u["unit"] for u in snap["units"]} == set(UNITS)
    for u in snap["units"]:  # the page names each village in its own language
        assert u["name"]["zh"] == gateway.config.directory.divisions[u["unit"]].name["zh"]
    assert snap["definition"] == "warngate-coverage-v2"  # the sample has households
    assert all(c.startswith("#") for c in snap["fill"].values())


def test_the_map_is_drawn_from_the_directory_outlines(gateway: Gateway) -> None:
    svg = str(
        svg_map(gateway.config.directory, UNITS, fill={UNITS[0]: "#2e8540"}, selected=[UNITS[1]])
    )
    assert svg.count("<path") == 2
    assert 'data-unit="652301001001"' in svg
    assert 'fill="#2e8540"' in svg
    assert 'class="unit selected" data-unit="652301001002"' in svg
    assert "data-lon0=" in svg
    assert coverage_colour(0.96, 0.95) == "#2e8540"
    assert coverage_colour(0.80, 0.95) == "#f2a900"
    assert coverage_colour(0.10, 0.95) == "#c8102e"
    assert coverage_colour(None, 0.95) == "#d9dde3"
    assert Path(ROOT / "gateway/console/static/console.js").stat().st_size < 40_000  # small
