"""App: `create_app` is the one place that wires Redis, stages, workers and metrics.

Each resource lives in one cleanup-context generator: opened before `yield`, closed
after. Tests build the app through the same factory; `warngate worker` runs the same
application without an HTTP listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

from gateway.aio import sleep_or_stop, stop_tasks
from gateway.api import all_routes, problem_middleware
from gateway.callbacks import ReceiptDesk
from gateway.config import Config
from gateway.dispatch import Sender, build_adapters
from gateway.endpoints import EndpointHub
from gateway.ingest import Ingestor
from gateway.keys import CONFIG, DESK, HTTP, HUB, INGESTOR, METRICS, REDIS, RENDERER, STORE
from gateway.metrics import CONTENT_TYPE_LATEST, Metrics
from gateway.monitor import Monitor
from gateway.planner import Planner
from gateway.redis_server import EmbeddedRedis
from gateway.render import Renderer
from gateway.store import Store
from gateway.workers import Workers

__all__ = [
    "WORKERS",
    "build_workers",
    "consumer_name",
    "create_app",
    "open_redis",
    "run_workers",
    "settle_heap",
]

log = logging.getLogger("warngate.app")
WORKERS: web.AppKey[Workers] = web.AppKey("workers")


def consumer_name() -> str:
    """A consumer name unique to this process (stream entries it takes are its own)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@contextlib.asynccontextmanager
async def open_redis(config: Config) -> AsyncIterator[Redis]:
    """A Redis client for the configured server, or for an embedded one started here."""
    settings = config.settings
    embedded: EmbeddedRedis | None = None
    url = settings.redis.url.get_secret_value() if settings.redis.url else None
    if url is None:
        data = settings.data_dir / "redis"
        url = EmbeddedRedis.running(data)  # `serve` already runs it: share, never start twice
        if url is None:
            embedded = EmbeddedRedis(data)
            url = await asyncio.to_thread(embedded.start)
            log.info("started embedded redis-server at %s (data in %s)", url, data)
        else:
            log.info("using the embedded redis-server already running at %s", url)
    # A blocking pool: thousands of devices may ask at once; they wait for a connection
    # instead of failing when all are busy.
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=settings.redis.connect_timeout_s,
        socket_timeout=settings.redis.command_timeout_s,
        health_check_interval=30,
        max_connections=settings.redis.max_connections,
        timeout=settings.redis.command_timeout_s,
    )
    client = Redis.from_pool(pool)  # closing the client closes the pool
    try:
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def _metrics(request: web.Request) -> web.Response:
    resp = web.Response(body=request.app[METRICS].render())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def settle_heap() -> None:
    """Move everything alive now (the loaded directory: millions of objects for a big
    county) out of the garbage collector's view. They live as long as the process, and
    every full collection would otherwise walk them all again: measured, this took 40 %
    of a million-recipient fan-out (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()


def create_app(
    config: Config, *, background: bool = True, workers: int | None = None, routes: bool = True
) -> web.Application:
    """The gateway as an aiohttp application.

    `background=False` leaves out every periodic task (expiry sweeper, dispatch
    workers), for tests that drive each stage themselves. `workers` overrides
    `dispatch.workers` (0: this process only answers HTTP).
    """
    if background:
        settle_heap()  # a serving process: the configuration is loaded for good
    app = web.Application(middlewares=[problem_middleware], client_max_size=1024**2 * 4)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    s = config.settings
    app[RENDERER] = Renderer(s.templates_dir, config.hazards, config.directory, s.render)
    if background:
        app[RENDERER].compile_all()  # a serving process: the first alert is not slower
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_http_ctx)
    app.cleanup_ctx.append(_hub_ctx)
    n_workers = s.dispatch.workers if workers is None else workers
    if background:
        app.cleanup_ctx.append(_sweeper_ctx)
        if n_workers > 0:
            app.cleanup_ctx.append(_workers_ctx(n_workers))
    if routes:
        app.add_routes(all_routes())
    return app


async def run_workers(
    config: Config,
    *,
    planners: int | None = None,
    metrics_host: str = "127.0.0.1",
    metrics_port: int | None = None,
) -> None:
    """`warngate worker`: the app's resources and worker loops until SIGINT or SIGTERM.
    The alert API is not served; with `metrics_port`, /metrics and /healthz are, so
    Prometheus sees the workers' sends, retries and breakers."""
    n = planners if planners is not None else max(config.settings.dispatch.workers, 1)
    app = create_app(config, workers=n, routes=False)
    if metrics_port is not None:
        app.router.add_get("/metrics", _metrics)
        app.router.add_get("/healthz", _healthz)
    runner = web.AppRunner(app, handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()
    if metrics_port is not None:
        await web.TCPSite(runner, metrics_host, metrics_port).start()
    log.info("worker %s running", app[WORKERS].consumer)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def build_workers(app: web.Application, consumer: str | None = None) -> Workers:
    """Planner, sender and worker loops on this app's resources (not started)."""
    config, store, metrics = app[CONFIG], app[STORE], app[METRICS]
    name = consumer or consumer_name()
    sender = Sender(config, store, metrics, build_adapters(config, app[HTTP]), name)
    planner = Planner(config, store, app[RENDERER], metrics, sender.batch_sizes())
    monitor = Monitor(config, store, planner, metrics)
    return Workers(config, store, planner, sender, metrics, name, monitor)


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    async with open_redis(config) as client:
        app[REDIS] = client
        store = Store(client, config.settings.redis.prefix, config.retention())
        app[STORE] = store
        app[INGESTOR] = Ingestor(config, store)
        app[DESK] = ReceiptDesk(config, store, app[METRICS])
        yield


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=200, limit_per_host=100)
    async with aiohttp.ClientSession(connector=connector) as session:
        app[HTTP] = session
        yield


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    s = config.settings
    hub = EndpointHub(
        app[STORE], config.directory, s.endpoints, app[METRICS], s.render.display_max_pages
    )
    app[HUB] = hub
    await hub.start()
    yield
    await hub.close()


def _workers_ctx(planners: int) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        workers = build_workers(app)
        app[WORKERS] = workers
        await workers.start(planners=planners)
        yield
        await workers.close()

    return ctx


async def _sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(_sweep_forever(app, stop), name="expiry-sweeper")
    yield
    stop.set()
    await stop_tasks([task], 2.0)


async def _sweep_forever(app: web.Application, stop: asyncio.Event) -> None:
    store, metrics, config = app[STORE], app[METRICS], app[CONFIG]
    every = config.settings.ingest.expiry_sweep_s
    planner = Planner(config, store, app[RENDERER], metrics, {})
    while not stop.is_set():
        try:
            expired = await store.sweep_expired()
            if expired:
                metrics.alerts_expired.inc(len(expired))
                log.info("expired: %s", ", ".join(expired))
            for alert in expired:
                await planner.expire(alert)  # devices up to date hear of it too
            if await store.purge_dead_letters():
                log.info("dead letters past the retention removed")
            metrics.live_alerts.set(await store.live_count())
        except Exception:
            if not stop.is_set():
                log.exception("expiry sweep failed; retrying")
        await sleep_or_stop(stop, every)
