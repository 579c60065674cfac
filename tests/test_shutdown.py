"""SIGTERM stops `warngate serve` and `warngate worker` within `process.shutdown_grace_s`
(5 s by default, as docs/operations.md says), in the middle of a fan-out to a slow
provider and with devices parked: exit 0, no traceback, no new provider call after the
signal, parked long-polls answered and event streams ended with a retry hint, batches
that finished acknowledged, and every other batch left in its stream for another worker
(never acknowledged unsent). `serve` runs its embedded Redis here, and stops it last:
the test reads the streams back from its append-only file."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis

from gateway.config import Config
from gateway.models import Channel
from gateway.plan import PUSH_CHANNELS
from gateway.redis_server import EmbeddedRedis, free_port
from gateway.store.deliveries import SEND_GROUP
from gateway.store.keys import Keys
from tests import alerts as A
from tests.conftest import ROOT, Gateway, child_env
from tests.fakes import FakeProvider
from tests.test_crash import until, worker_config
from tests.test_dispatch import TOWNSHIP, recipients, rid, units_of

GRACE_S = 5.0  # the default of process.shutdown_grace_s, as documented
MARGIN_S = 4.0  # a loaded 2-core machine: starting the interpreter's exit, reaping
# The provider: the first call fails (its batch then waits 30 s to retry), the next three
# answer after 2 s (within the grace: they finish), every later one hangs (handed back).
SCRIPT = ["503", "slow:2", "slow:2", "slow:2"]
FINISHING, HANGING = "slow:2", "slow:60"
SLOW_FANOUT = {
    "WARNGATE_DISPATCH__CONCURRENCY": "2",  # so that batches wait in the streams too
    "WARNGATE_DISPATCH__BACKOFF_BASE_S": "30",
    "WARNGATE_LOG_LEVEL": "INFO",
}
Entries = dict[tuple[str, str], set[str]]  # (stream, entry) → delivery ids of its batch


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Redis or warngate settings of its own."""
    return child_env(**extra)


def read(log: Path) -> str:
    return log.read_text()


async def start(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", *args,
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip


async def until_ready(
    http: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process, log: Path
) -> None:
    async def ready() -> bool:
        if proc.returncode is not None:
            raise AssertionError(f"exited early: {read(log)[-3000:]}")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(url) as resp:
                return resp.status == 200
        return False

    await until(ready, 60)


async def until_calls_settle(fake: FakeProvider, at_least: int) -> None:
    """Until the provider has `at_least` calls and no new one for 0.5 s (every send loop
    is at its concurrency)."""
    seen, since = -1, time.monotonic()

    async def settled() -> bool:
        nonlocal seen, since
        if len(fake.calls) != seen:
            seen, since = len(fake.calls), time.monotonic()
        return seen >= at_least and time.monotonic() - since > 0.5

    await until(settled, 30)


async def send_entries(redis: Redis, keys: Keys) -> Entries:
    """Every batch left in the send streams, with the delivery ids the provider sees."""
    out: Entries = {}
    for channel in PUSH_CHANNELS:
        for lane in ("hi", "lo"):
            stream = keys.send_queue(channel.value, lane)
            for entry, fields in await redis.xrange(stream):
                ids = {line.split("\t")[0] for line in fields["r"].split("\n") if line}
                out[(stream, entry)] = {f"{fields['a']}:{fields['c']}:{i}" for i in ids}
    return out


def ids_of(fake: FakeProvider, behaviour: str) -> set[str]:
    return {i for c in fake.calls if c.behaviour == behaviour for i in c.ids}


async def stop_in_time(proc: asyncio.subprocess.Process, log: Path) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(proc.wait(), GRACE_S + MARGIN_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"still running {GRACE_S + MARGIN_S} s after SIGTERM") from None
    took = time.monotonic() - started
    text = read(log)
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-5000:]
    assert " ERROR " not in text, text[-5000:]
    assert "stopping within 5 s" in text
    return took


def check_batches(before: Entries, after: Entries, fake: FakeProvider) -> None:
    """A batch acknowledged (gone from its stream) was sent; the others are all still
    there, pending or waiting, for another worker."""
    assert set(after) <= set(before)
    answered, hanging = ids_of(fake, FINISHING), ids_of(fake, HANGING) | ids_of(fake, "503")
    acked = {key: ids for key, ids in before.items() if key not in after}
    assert acked, "no batch finished within the grace"
    for key, ids in acked.items():
        assert ids <= answered, f"batch {key} acknowledged but not sent"
    for key, ids in before.items():
        if ids & hanging:
            assert key in after, f"batch {key} in a call that never ended was acknowledged"
    assert any(ids & hanging for ids in after.values())  # something was handed back


async def shut_down_left_redis(data: Path) -> None:
    """A gateway killed (a failed test) leaves its embedded Redis running: stop it."""
    with contextlib.suppress(OSError, ValueError):
        port = int((data / EmbeddedRedis.STATE_FILE).read_text())
        async with Redis(port=port, socket_timeout=2) as redis:
            with contextlib.suppress(Exception):
                await redis.shutdown(nosave=True)


def device_ids(config: Config) -> tuple[list[str], list[str]]:
    """Three loudspeakers or screens of the township to long-poll, three on event streams."""
    d = config.directory
    units = set(d.units_under(TOWNSHIP))
    mine = [e.id for e in d.endpoints.values() if e.unit in units and not e.exercise]
    assert len(mine) >= 6
    return mine[:3], mine[3:6]


async def long_poll(http: aiohttp.ClientSession, base: str, endpoint: str) -> dict[str, Any]:
    """Fetch the current state, then park with its cursor; the parked answer."""
    url = f"{base}/api/v1/endpoints/{endpoint}/messages"
    headers = {"Authorization": f"Bearer wgdev-{endpoint}"}
    async with http.get(url, headers=headers) as resp:
        first = await resp.json()
    assert first["messages"], first  # the alert: the device is up to date from here on
    params = {"since": first["cursor"], "wait": "60"}
    async with http.get(url, headers=headers, params=params) as resp:
        assert resp.status == 200, await resp.text()
        parked: dict[str, Any] = await resp.json()
    return {"sent": first["cursor"], **parked}


async def event_stream(
    http: aiohttp.ClientSession, base: str, endpoint: str, connected: asyncio.Event
) -> bytes:
    url = f"{base}/api/v1/endpoints/{endpoint}/stream"
    body = b""
    async with http.get(url, headers={"Authorization": f"Bearer wgdev-{endpoint}"}) as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_any():  # to the end of the stream, no error
            body += chunk
            if b"event: play" in body:
                connected.set()
    return body


async def test_serve_stops_in_time_answering_devices_and_handing_back_batches(
    aiohttp_server: Any, tmp_path: Path, sample_config_cached: Config
) -> None:
    fake = FakeProvider("provider", script=list(SCRIPT), default=HANGING)
    fake.port = (await aiohttp_server(fake.app())).port
    config_dir = worker_config(tmp_path, fake.url)
    data = tmp_path / "data"
    port = free_port()
    log = tmp_path / "serve.log"
    args = ["serve", "--config", str(config_dir), "--port", str(port), "--data-dir", str(data)]
    proc = await start(args, clean_env(**SLOW_FANOUT), log)  # embedded Redis
    base = f"http://127.0.0.1:{port}"
    keys = Keys("wg")  # the sample's prefix, in a Redis of this test's own
    timeout = aiohttp.ClientTimeout(total=120)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await until_ready(http, f"{base}/readyz", proc, log)
            async with http.post(
                f"{base}/api/v1/alerts",
                data=orjson.dumps(A.alert(geocodes=[TOWNSHIP])),
                headers=A.json_headers(),
            ) as resp:
                assert resp.status == 202, await resp.text()
            await until_calls_settle(fake, at_least=6)  # 2 per channel
            polling, streaming = device_ids(sample_config_cached)
            polls = [asyncio.create_task(long_poll(http, base, e)) for e in polling]
            connected = [asyncio.Event() for _ in streaming]
            streams = [
                asyncio.create_task(event_stream(http, base, e, c))
                for e, c in zip(streaming, connected, strict=True)
            ]
            async with asyncio.timeout(30):
                for event in connected:
                    await event.wait()
            await asyncio.sleep(0.3)  # the long-polls are parked
            assert not any(t.done() for t in polls)
            redis_port = int((data / "redis" / EmbeddedRedis.STATE_FILE).read_text())
            async with Redis(port=redis_port, decode_responses=True) as redis:
                before = await send_entries(redis, keys)
            calls = len(fake.calls)

            took = await stop_in_time(proc, log)

            assert len(fake.calls) == calls  # nothing sent after the signal
            async with asyncio.timeout(5):  # they ended before the process did
                answers = await asyncio.gather(*polls)
                bodies = await asyncio.gather(*streams)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await shut_down_left_redis(data / "redis")
    print(f"serve stopped {took:.1f} s after SIGTERM")
    for answer in answers:  # an answer to ask again with
        assert answer["messages"] == []
        assert answer["cursor"] == answer["sent"]
    for body in bodies:
        assert re.search(rb": the gateway is stopping; reconnect\nretry: \d{4}\n\n$", body), body
    assert not (data / "redis" / EmbeddedRedis.STATE_FILE).exists()  # Redis stopped too

    # What Redis kept (its append-only file): the streams as the gateway left them.
    with EmbeddedRedis(data / "redis", persistent=True) as server:
        async with Redis.from_url(server.url, decode_responses=True) as redis:
            after = await send_entries(redis, keys)
    check_batches(before, after, fake)


async def test_worker_stops_in_time_and_hands_back_what_it_did_not_finish(
    gateway: Gateway, redis_url: str, prefix: str, redis: Redis, tmp_path: Path
) -> None:
    await gateway.post(A.alert(geocodes=[TOWNSHIP]))
    await gateway.plan_all()  # batches are queued; the worker process sends them
    fake = gateway.sms  # every provider of the worker's configuration points here
    fake.script, fake.default = list(SCRIPT), HANGING
    config_dir = worker_config(tmp_path, fake.url)
    metrics_port = free_port()
    env = clean_env(
        **SLOW_FANOUT,
        WARNGATE_REDIS__URL=redis_url,
        WARNGATE_REDIS__PREFIX=prefix,
        WARNGATE_TEMPLATES_DIR=str(gateway.config.settings.templates_dir),
    )
    log = tmp_path / "worker.log"
    args = ["worker", "--config", str(config_dir), "--metrics-port", str(metrics_port)]
    before = await send_entries(redis, gateway.store.keys)
    proc = await start(args, env, log)
    try:
        async with aiohttp.ClientSession() as http:
            await until_ready(http, f"http://127.0.0.1:{metrics_port}/readyz", proc, log)
        await until_calls_settle(fake, at_least=6)
        calls = len(fake.calls)
        took = await stop_in_time(proc, log)
        assert len(fake.calls) == calls  # nothing sent after the signal
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    print(f"worker stopped {took:.1f} s after SIGTERM")
    after = await send_entries(redis, gateway.store.keys)
    check_batches(before, after, fake)

    # Another worker takes over what was handed back; everybody is reached, and twice
    # only those whose call was cut short (the provider may have sent it: "maybe sent").
    maybe_sent = ids_of(fake, HANGING)
    fake.default = "ok"
    streams = [s for c in PUSH_CHANNELS for s in gateway.workers.send_streams(c)]

    async def nothing_left() -> bool:
        for stream in streams:
            for row in await gateway.store.claim_stale(
                stream, SEND_GROUP, gateway.workers.consumer, 0
            ):
                await gateway.workers.sender.handle(*row)
        await gateway.send_all()
        return not await send_entries(redis, gateway.store.keys)

    await until(nothing_left)
    want = recipients(gateway, Channel.SMS, *units_of(gateway, TOWNSHIP))
    ok = {"ok", FINISHING}
    delivered = Counter(
        rid(i) for c in fake.calls if c.behaviour in ok | {HANGING} for i in c.ids if ":sms:" in i
    )
    assert set(delivered) == want
    assert {r for r, n in delivered.items() if n > 1} <= {rid(i) for i in maybe_sent}
