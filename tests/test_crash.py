"""A `warngate worker` process killed with SIGKILL in the middle of a batch loses nothing,
and sends twice at most to the recipients of the batch it was sending when it died."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from redis.asyncio import Redis

from gateway.models import Channel
from gateway.plan import PUSH_CHANNELS
from gateway.store.deliveries import SEND_GROUP
from tests import alerts as A
from tests.conftest import ROOT, SAMPLE_CONFIG, Gateway
from tests.test_dispatch import TOWNSHIP, recipients, rid, units_of


def worker_config(tmp: Path, sms_url: str) -> Path:
    """The sample configuration with every provider pointing at the fake one."""
    out = tmp / "config"
    out.mkdir()
    for f in SAMPLE_CONFIG.iterdir():
        if f.is_file():
            (out / f.name).write_bytes(f.read_bytes())
    settings = yaml.safe_load((out / "gateway.yaml").read_text())
    for name, provider in settings["providers"].items():
        path = "/push" if provider["kind"] == "app_http" else "/send"
        provider["url"] = sms_url + path
        provider["timeout_s"] = 30
        del name
    (out / "gateway.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True))
    return out


async def until(condition: Any, limit_s: float = 30.0) -> None:
    """Wait for a condition to hold (checked every 20 ms), failing after `limit_s`."""
    async with asyncio.timeout(limit_s):
        while not await condition():  # noqa: ASYNC110 (a condition, not a timer)
            await asyncio.sleep(0.02)


async def test_worker_killed_mid_batch_loses_nothing(
    gateway: Gateway, redis_url: str, prefix: str, redis: Redis, tmp_path: Path
) -> None:
    await gateway.post(A.alert(geocodes=[TOWNSHIP]))
    await gateway.plan_all()  # batches are queued; the worker process will send them
    gateway.sms.gate = asyncio.Event()  # the provider takes the first batch and hangs
    config_dir = worker_config(tmp_path, gateway.sms.url)
    env = {
        **os.environ,
        "WARNGATE_REDIS__URL": redis_url,
        "WARNGATE_REDIS__PREFIX": prefix,
        "WARNGATE_DISPATCH__CONCURRENCY": "1",
        "WARNGATE_TEMPLATES_DIR": str(gateway.config.settings.templates_dir),
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "worker", "--config", str(config_dir),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    try:

        async def provider_has_a_call() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"worker exited early: {log.read_text()[-2000:]}")
            return len(gateway.sms.calls) >= 1

        await until(provider_has_a_call)
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    in_flight = {i for c in gateway.sms.calls for i in c.ids}  # one batch per channel loop
    gateway.sms.gate.set()
    gateway.sms.gate = None

    # The dead worker's batches are pending under its name; a live worker takes them over.
    store = gateway.store
    streams = [s for c in PUSH_CHANNELS for s in gateway.workers.send_streams(c)]

    async def nothing_pending() -> bool:
        for stream in streams:
            for row in await store.claim_stale(stream, SEND_GROUP, "test", min_idle_ms=200):
                await gateway.workers.sender.handle(*row)
        depths = [await store.queue_depth(s, SEND_GROUP) for s in streams]
        return all(pending == 0 for _, pending in depths)

    await until(nothing_pending)
    await gateway.send_all()

    want = recipients(gateway, Channel.SMS, *units_of(gateway, TOWNSHIP))
    # Calls made by the killed worker (first) and by the rescuers.
    delivered = Counter(rid(i) for c in gateway.sms.calls for i in c.ids if ":sms:" in i)
    assert set(delivered) == want  # nobody lost
    twice = {r for r, n in delivered.items() if n > 1}
    assert twice <= {rid(i) for i in in_flight}  # duplicates only from interrupted calls
    assert max(delivered.values()) <= 2
    for stream in streams:
        assert await store.queue_depth(stream, SEND_GROUP) == (0, 0)
