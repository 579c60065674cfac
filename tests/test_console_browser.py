"""The duty desk in a real browser: Debian's Chromium driven by Playwright (the Python
package; no browser download), through the whole flow of issue 12 — log in as drafter,
compose a red alert on the map, see the previews, try to approve it as the same person
(refused), approve as a second person, watch deliveries and the map update live, update
to orange (approved again), cancel.

Needs the program `chromium` (`need_program`: a failure in CI, a skip elsewhere). With
WARNGATE_SCREENSHOTS=DIR it also saves the screenshots of docs/console.md there.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from gateway.config import Config
from gateway.models import AlertState
from tests.conftest import Gateway, need_program
from tests.console import APPROVER, CHIEF, password

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
UNITS = ["652301001001", "652301001002"]
WAIT_MS = 15_000
SHOTS = os.environ.get("WARNGATE_SCREENSHOTS")


@pytest.fixture
def config(sample_config_cached: Config, prefix: str) -> Config:
    """The suite's configuration with the watch page's events every 0.3 s."""
    s = sample_config_cached.settings
    settings = s.model_copy(
        update={
            "redis": s.redis.model_copy(update={"prefix": prefix}),
            "console": s.console.model_copy(update={"watch_every_s": 0.3}),
        }
    )
    c = sample_config_cached
    return Config(settings, c.registry, c.hazards, c.directory, c.policy)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = need_program("chromium", "chromium")
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  # once, tiny
    async with async_playwright() as pw:
        found = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield found
        await found.close()


async def shot(page: Page, name: str, part: str | None = None) -> None:
    """A screenshot for docs/console.md: the page's top, or one part of it."""
    if not SHOTS:
        return
    path = str(Path(SHOTS) / f"{name}.png")
    if part is None:
        await page.screenshot(path=path)
    else:
        await page.locator(part).screenshot(path=path)


async def person(browser: Browser, base: str, account: str, errors: list[str]) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base}/console/login")
    await page.fill("input[name=account]", account)
    await page.fill("input[name=password]", password(account))
    await page.click("button[type=submit]")
    await expect(page.locator("header .who")).to_be_visible()
    return page


async def confirm(page: Page, selector: str) -> None:
    """Click a button whose form asks for confirmation, and accept it."""
    page.once("dialog", lambda dialog: dialog.accept())
    await page.click(selector)


async def deliver(gw: Gateway, alert: str) -> int:
    """The SMS provider reports every message of the alert delivered."""
    ids = [i for i in gw.sms.accepted_ids if i.startswith(f"{alert}:sms:")]
    resp = await gw.client.post(
        "/api/v1/callbacks/sms/sms-main",
        data=orjson.dumps([{"id": i, "status": "DELIVRD"} for i in ids]),
        headers={"X-Callback-Token": "demo-callback-sms-main"},
    )
    assert resp.ok
    changed: int = (await resp.json())["changed"]
    return changed


def alert_of(page: Page) -> str:
    found = re.search(r"/console/alerts/([a-z0-9]+)$", page.url)
    assert found, page.url
    return found[1]


async def test_the_duty_desk_flow_in_a_real_browser(gateway: Gateway, browser: Browser) -> None:
    expect.set_options(timeout=WAIT_MS)
    base = f"http://127.0.0.1:{gateway.client.port}"
    errors: list[str] = []
    drafter = await person(browser, base, CHIEF, errors)  # a drafter who also approves

    # Compose a red rainstorm alert: two communities picked on the map.
    await drafter.goto(f"{base}/console/compose")
    await drafter.check('input[name=level][value="red"]')
    for unit in UNITS:
        await drafter.click(f'svg.map .unit[data-unit="{unit}"]')
        await expect(drafter.locator(f'svg.map .unit[data-unit="{unit}"]')).to_have_class(
            re.compile("selected")
        )
    await drafter.fill("input[name=headline_zh]", "昌吉市发布暴雨红色预警")
    await drafter.fill("textarea[name=instruction_zh]", "请远离河道，转移到安全地带。")
    await drafter.click("#preview-button")

    # The previews: every channel and language, side by side, before release.
    preview = drafter.locator("#preview")
    await expect(preview).to_be_visible()
    for channel in ("sms", "app", "loudspeaker", "messenger"):
        await expect(preview.locator(f'.msg[data-channel="{channel}"]').first).to_be_visible()
    await expect(preview.locator('.msg[data-channel="sms"][data-language="ug"]')).to_be_visible()
    await expect(preview.locator('.msg[data-channel="sms"] .fact').first).to_contain_text("条短信")
    await expect(preview.locator(".notice")).to_contain_text("第二人审批")
    await expect(preview.locator("table.coverage tbody tr")).to_have_count(len(UNITS))
    await shot(drafter, "compose")
    await shot(drafter, "preview", "#preview")
    await drafter.click("#submit-button")
    await expect(drafter.locator(".state-pending-approval")).to_be_visible()
    alert = alert_of(drafter)
    await gateway.run()
    assert not [i for i in gateway.sms.accepted_ids if alert in i]  # nothing before approval

    # The drafter's own approval is refused.
    await confirm(drafter, "#approve-button")
    await expect(drafter.locator("#move-error")).to_contain_text("own-approval")
    record = await gateway.store.get_alert(alert)
    assert record is not None
    assert record.state is AlertState.PENDING

    # A second person approves; the watch page follows deliveries and the map live.
    approver = await person(browser, base, APPROVER, errors)
    await approver.goto(f"{base}/console/")
    await expect(approver.locator("body")).to_contain_text("昌吉市发布暴雨红色预警")
    await shot(approver, "pending")
    await approver.goto(f"{base}/console/alerts/{alert}")
    await shot(approver, "approval", "#approval")
    await confirm(approver, "#approve-button")
    await expect(approver.locator(".state-active")).to_be_visible()
    await expect(approver.locator("#live-dot.on")).to_be_visible()
    unit = approver.locator(f'svg.map.watch .unit[data-unit="{UNITS[0]}"]')
    before = await unit.get_attribute("fill")
    await gateway.run()
    sms = approver.locator('#w-counts tr[data-channel="sms"] td[data-k="sent"]')
    await expect(sms).not_to_have_text("0")
    assert await deliver(gateway, alert) > 0
    delivered = approver.locator('#w-counts tr[data-channel="sms"] td[data-k="delivered"]')
    await expect(delivered).not_to_have_text("0")
    await expect(unit).not_to_have_attribute("fill", before or "")
    await expect(approver.locator("#w-coverage")).not_to_have_text("0.0%")
    await shot(approver, "watch", "#watch")

    # Update to orange from the alert's page; orange waits for approval too.
    await drafter.goto(f"{base}/console/alerts/{alert}")
    await drafter.click('a.level-orange:has-text("橙色")')
    await expect(drafter.locator('input[name=level][value="orange"]')).to_be_checked()
    await drafter.click("#preview-button")
    await expect(drafter.locator("#preview")).to_be_visible()
    await drafter.click("#submit-button")
    update = alert_of(drafter)
    await approver.goto(f"{base}/console/alerts/{update}")
    await confirm(approver, "#approve-button")
    await expect(approver.locator(".state-active")).to_be_visible()
    old = await gateway.store.get_alert(alert)
    assert old is not None
    assert old.state is AlertState.UPDATED

    # Cancel (lift) it: released at once.
    await drafter.goto(f"{base}/console/alerts/{update}")
    await drafter.click("#cancel-link")
    await drafter.click("#preview-button")
    await drafter.click("#submit-button")
    await expect(drafter.locator("h1")).to_be_visible()
    lifted = await gateway.store.get_alert(update)
    assert lifted is not None
    assert lifted.state is AlertState.CANCELLED
    await gateway.run()
    await drafter.goto(f"{base}/console/alerts/{update}")
    await expect(drafter.locator(".state-cancelled")).to_be_visible()
    assert errors == []  # no script error on any page
