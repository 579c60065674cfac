"""Posting while Redis is down or frozen: 503 with Retry-After, and a retry that tells
the truth (issue 10, item 14).

Each test starts its own redis-server (never the suite's shared one), stops or freezes
it (SIGSTOP) and brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.config import Config
from gateway.redis_server import EmbeddedRedis
from gateway.store import alert_id
from tests import alerts as A
from tests.test_ingest_api import ALERTS, Client, problem


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        if server.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.process.pid, signal.SIGCONT)
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def faulty(aiohttp_client: Any, config: Config, own_redis: EmbeddedRedis) -> Client:
    """The gateway on `own_redis`, with short timeouts so a frozen Redis shows quickly."""
    s = config.settings
    redis = s.redis.model_copy(
        update={
            "url": SecretStr(own_redis.url),
            "command_timeout_s": 0.5,
            "connect_timeout_s": 0.5,
        }
    )
    cfg = Config(
        s.model_copy(update={"redis": redis}),
        config.registry,
        config.hazards,
        config.directory,
        config.policy,
    )
    client: Client = await aiohttp_client(create_app(cfg, background=False))
    return client


async def post(client: Client, data: dict[str, Any]) -> Any:
    return await client.post(ALERTS, data=orjson.dumps(data), headers=A.json_headers())


async def unavailable(resp: Any) -> None:
    body = await problem(resp, 503, "store-unavailable")
    assert resp.headers["Retry-After"] == "2"
    assert body["retry_after"] == 2


async def test_redis_down_at_post_is_503_with_retry_after_and_nothing_is_lost(
    faulty: Client, own_redis: EmbeddedRedis, prefix: str
) -> None:
    assert (await post(faulty, A.alert())).status == 202  # a warm connection to break
    await asyncio.to_thread(own_redis.stop)
    data = A.alert()
    await unavailable(await post(faulty, data))
    await unavailable(await faulty.get(ALERTS, headers=A.auth()))  # reads too, not 500
    assert (await faulty.get("/healthz")).status == 200

    back = EmbeddedRedis(own_redis.data_dir, port=own_redis.port, persistent=False)
    await asyncio.to_thread(back.start)
    try:
        again = await post(faulty, data)  # the retry the 503 asked for
        assert again.status == 202, await again.text()
        assert (await post(faulty, data)).status == 200
    finally:
        await asyncio.to_thread(back.stop)


async def test_an_alert_stored_while_redis_was_frozen_is_the_duplicate_on_retry(
    faulty: Client, own_redis: EmbeddedRedis, prefix: str
) -> None:
    """SIGSTOP: the accept script is sent, the answer never comes, the gateway answers
    503. After SIGCONT Redis runs the script it had received: the alert *was* stored.
    The retry must say so (200 duplicate), and it must be queued once, not twice."""
    assert own_redis.process is not None
    assert (await post(faulty, A.alert())).status == 202
    data = A.alert()
    key = f"{prefix}:alert:{alert_id(data['sender'], data['identifier'])}"
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        await unavailable(await post(faulty, data))
        await unavailable(await post(faulty, data))  # still frozen: still 503
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    probe = Redis.from_url(own_redis.url, decode_responses=True)
    try:
        for _ in range(100):  # the buffered scripts run as soon as Redis goes on
            if await probe.exists(key):
                break
            await asyncio.sleep(0.02)
        assert await probe.exists(key), "the script sent before the freeze did not run"
        retry = await post(faulty, data)
        assert retry.status == 200, await retry.text()
        assert (await retry.json())["status"] == "duplicate"
        queued = [
            fields["id"]
            for lane in ("hi", "lo")
            for _, fields in await probe.xrange(f"{prefix}:q:plan:{lane}")
        ]
        assert queued.count(alert_id(data["sender"], data["identifier"])) == 1
    finally:
        await probe.aclose()
