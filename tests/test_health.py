"""/readyz says 503 (problem+json, every reason named) whenever the process cannot do its
work although Redis may answer PING: a cluster node, a read-only replica, a server at
its memory limit, a background loop that keeps failing, a process that is stopping, and
a `warngate worker` whose Redis went away (ready again once Redis is back)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from gateway.app import build_workers, create_app
from gateway.config import Config
from gateway.keys import DEADLINE, STORE
from gateway.redis_server import EmbeddedRedis, free_port
from gateway.settings import ProcessSettings
from tests.conftest import ROOT, child_env
from tests.test_crash import until

Client = Any


def on_redis(config: Config, url: str, **process: Any) -> Config:
    s = config.settings
    redis = s.redis.model_copy(update={"url": SecretStr(url), "connect_timeout_s": 0.5})
    settings = s.model_copy(update={"redis": redis, "process": ProcessSettings(**process)})
    return Config(settings, config.registry, config.hazards, config.directory, config.policy)


async def not_ready(resp: aiohttp.ClientResponse, *words: str) -> dict[str, Any]:
    assert resp.status == 503, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert resp.headers["Retry-After"]
    body: dict[str, Any] = await resp.json()
    assert body["code"] == "not-ready"
    for word in words:
        assert word in body["detail"], body
    assert body["problems"]
    return body


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test alone (tests change its configuration, kill it)."""
    server = EmbeddedRedis(tmp_path / "private-redis", persistent=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_cluster_node_is_not_ready(
    aiohttp_client: Any, config: Config, tmp_path: Path
) -> None:
    args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    args += ["--cluster-port", str(free_port())]  # not the default port + 10000
    with EmbeddedRedis(tmp_path / "node", persistent=False, extra_args=args) as node:
        client = await aiohttp_client(create_app(on_redis(config, node.url), background=False))
        assert (await client.get("/healthz")).status == 200  # alive, though not ready
        await not_ready(await client.get("/readyz"), "cluster node")


async def test_a_replica_is_not_ready(
    aiohttp_client: Any, config: Config, private_redis: EmbeddedRedis
) -> None:
    async with Redis.from_url(private_redis.url) as admin:
        await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # nobody
    client = await aiohttp_client(create_app(on_redis(config, private_redis.url), background=False))
    await not_ready(await client.get("/readyz"), "read-only")


async def test_redis_at_its_memory_limit_is_not_ready_and_ready_again_below_it(
    aiohttp_client: Any, config: Config, private_redis: EmbeddedRedis
) -> None:
    client = await aiohttp_client(create_app(on_redis(config, private_redis.url), background=False))
    assert (await client.get("/readyz")).status == 200
    async with Redis.from_url(private_redis.url) as admin:
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")  # below what it holds already
        await not_ready(await client.get("/readyz"), "memory limit")
        await admin.config_set("maxmemory", "0")
    assert (await client.get("/readyz")).status == 200


async def test_a_stopping_process_is_not_ready(client: Client) -> None:
    assert (await client.get("/readyz")).status == 200
    client.app[DEADLINE].start(5.0)
    await not_ready(await client.get("/readyz"), "stopping")


async def test_a_worker_loop_that_keeps_failing_makes_the_process_not_ready(
    aiohttp_client: Any, config: Config, redis: Redis, redis_url: str
) -> None:
    """The plan stream turned into a string (a real Redis error for every read): the
    planning loop fails and is restarted every second; after `process.loop_stale_s`
    without a good round the process is not ready, and ready again once it is repaired."""
    app = create_app(on_redis(config, redis_url, loop_stale_s=0.5), background=False)
    client = await aiohttp_client(app)
    workers = build_workers(app)
    await workers.start()
    try:
        assert (await client.get("/readyz")).status == 200
        stream = workers.plan_streams()[0]
        await redis.delete(stream)
        await redis.set(stream, "not a stream")

        async def failing() -> bool:
            return (await client.get("/readyz")).status == 503

        await until(failing, 15)
        body = await not_ready(await client.get("/readyz"), "loop plan", "ResponseError")
        assert all("plan" in p for p in body["problems"])
        metrics = await (await client.get("/metrics")).text()
        assert 'warngate_loop_failing{loop="plan"} 1.0' in metrics
        assert 'warngate_loop_failing{loop="send-sms"} 0.0' in metrics

        await redis.delete(stream)
        for s in workers.plan_streams():
            await app[STORE].ensure_group(s, "planners")

        async def ready() -> bool:
            return (await client.get("/readyz")).status == 200

        await until(ready, 15)
        metrics = await (await client.get("/metrics")).text()
        assert 'warngate_loop_failing{loop="plan"} 0.0' in metrics
    finally:
        await workers.close(2.0)


async def test_workers_started_while_redis_is_down_wait_for_it(
    aiohttp_client: Any, config: Config, tmp_path: Path
) -> None:
    port = free_port()
    cfg = on_redis(config, f"redis://127.0.0.1:{port}/0", loop_stale_s=0.5)
    app = create_app(cfg, background=False)
    client = await aiohttp_client(app)
    workers = build_workers(app)
    await workers.start()  # no Redis yet: the process starts anyway, not ready
    try:
        await not_ready(await client.get("/readyz"), "Redis is not reachable")
        with EmbeddedRedis(tmp_path / "late", port=port, persistent=False):

            async def ready() -> bool:
                return (await client.get("/readyz")).status == 200

            await until(ready, 30)  # streams and groups made by the loops themselves
    finally:
        await workers.close(2.0)


async def test_a_worker_whose_redis_is_gone_is_not_ready_until_it_is_back(
    tmp_path: Path, private_redis: EmbeddedRedis
) -> None:
    """`warngate worker --metrics-port` answers /readyz: 503 while its Redis is down
    (killed), 200 again once a Redis answers on the same address; and SIGTERM still
    stops it in time while Redis is down."""
    port = free_port()
    env = child_env()
    env |= {
        "WARNGATE_REDIS__URL": private_redis.url,
        "WARNGATE_PROCESS__LOOP_STALE_S": "1",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "worker", "--config", str(ROOT / "config"),
            "--metrics-port", str(port), cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        async with aiohttp.ClientSession() as http:

            async def status() -> int:
                if proc.returncode is not None:
                    raise AssertionError(read(log)[-3000:])
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url) as resp:
                        return resp.status
                return 0

            async def ready() -> bool:
                return await status() == 200

            async def down() -> bool:
                return await status() == 503

            await until(ready, 60)
            kill(private_redis)  # Redis dies, no goodbye
            await until(down, 15)
            async with http.get(url) as resp:
                await not_ready(resp, "Redis is not reachable")

            private_redis.start()  # the same address, an empty Redis: groups made again
            await until(ready, 30)

            kill(private_redis)
            await until(down, 15)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 9) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def kill(server: EmbeddedRedis) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    server.stop()  # what is left: its pipe, its state file


def read(log: Path) -> str:
    return log.read_text()
