"""App: `create_app` is the one place that wires Redis, stages, workers and metrics.

Each resource lives in one cleanup-context generator: opened before `yield`, closed
after. Tests build the app through the same factory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from gateway.api import problem_middleware, routes
from gateway.config import Config
from gateway.ingest import Ingestor
from gateway.keys import CONFIG, INGESTOR, METRICS, REDIS, STORE
from gateway.metrics import Metrics
from gateway.redis_server import EmbeddedRedis
from gateway.store import Store

__all__ = ["create_app", "open_redis"]

log = logging.getLogger("warngate.app")


@contextlib.asynccontextmanager
async def open_redis(config: Config) -> AsyncIterator[Redis]:
    """A Redis client for the configured server, or for an embedded one started here."""
    settings = config.settings
    embedded: EmbeddedRedis | None = None
    url = settings.redis.url.get_secret_value() if settings.redis.url else None
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        url = await asyncio.to_thread(embedded.start)
        log.info("started embedded redis-server at %s (data in %s)", url, embedded.data_dir)
    client = Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=settings.redis.connect_timeout_s,
        socket_timeout=settings.redis.command_timeout_s,
        health_check_interval=30,
    )
    try:
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def create_app(config: Config, *, background: bool = True) -> web.Application:
    """The gateway as an aiohttp application.

    `background=False` leaves out the periodic tasks (expiry sweeper, workers), for
    tests that drive each stage themselves.
    """
    app = web.Application(middlewares=[problem_middleware], client_max_size=1024**2 * 4)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_redis_ctx)
    if background:
        app.cleanup_ctx.append(_sweeper_ctx)
    app.add_routes(routes)
    return app


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    async with open_redis(config) as client:
        app[REDIS] = client
        store = Store(client, config.settings.redis.prefix)
        app[STORE] = store
        app[INGESTOR] = Ingestor(config, store)
        yield


async def _sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_sweep_forever(app), name="expiry-sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _sweep_forever(app: web.Application) -> None:
    store, metrics = app[STORE], app[METRICS]
    every = app[CONFIG].settings.ingest.expiry_sweep_s
    while True:
        try:
            expired = await store.sweep_expired()
            if expired:
                metrics.alerts_expired.inc(len(expired))
                log.info("expired: %s", ", ".join(expired))
        except Exception:
            log.exception("expiry sweep failed; retrying")
        await asyncio.sleep(every)
