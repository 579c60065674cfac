"""App: `create_app` is the one place that wires Redis, stages, workers and metrics.

Each resource lives in one cleanup-context generator: opened before `yield`, closed
after. Tests build the app through the same factory; `warngate worker` runs the same
application without the alert API.

Stopping (SIGTERM or SIGINT; `run_until_signal`) follows one deadline,
`process.shutdown_grace_s` after the signal: the listener closes; parked long-polls are
answered and event streams end with a retry hint (`on_shutdown`); workers take no new
batches and let those in flight finish until shortly before the deadline, then hand back
the rest; receipts are flushed; the embedded Redis stops last.
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

from gateway.aio import Deadline, LoopHealth, Loops, sleep_or_stop, stop_tasks
from gateway.api import all_routes, health, problem_middleware
from gateway.callbacks import ReceiptDesk
from gateway.config import Config
from gateway.console import web as console
from gateway.dispatch import Sender, build_adapters
from gateway.endpoints import EndpointHub
from gateway.endpoints.keyring import KeyRing
from gateway.endpoints.mqtt import MqttBridge
from gateway.endpoints.signing import Signer
from gateway.ingest import Ingestor
from gateway.keys import (
    CONFIG,
    DEADLINE,
    DESK,
    HTTP,
    HUB,
    INGESTOR,
    LOOPS,
    METRICS,
    REDIS,
    RENDERER,
    STORE,
)
from gateway.metrics import Metrics
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
    "run_until_signal",
    "run_workers",
    "serve",
    "settle_heap",
]

log = logging.getLogger("warngate.app")
WORKERS: web.AppKey[Workers] = web.AppKey("workers")
# Kept from the shutdown deadline for what comes after the workers: flushing device
# receipts, closing connections, stopping the embedded Redis (its AOF written).
AFTER_WORKERS_S = 1.0


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
        if embedded is not None:  # last: everything else has let go of it
            await asyncio.to_thread(embedded.stop, 3.0)
            log.info("stopped embedded redis-server")


async def _begin_stop(app: web.Application) -> None:
    """aiohttp's on_shutdown: the listener is closed, and requests in progress are about
    to be waited for. Parked devices are answered now, and workers stop taking batches,
    so that both drain while aiohttp waits."""
    app[DEADLINE].start(app[CONFIG].settings.process.shutdown_grace_s)
    app[HUB].drain()
    workers = app.get(WORKERS)
    if workers is not None:
        workers.begin_stop()


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
    app[DEADLINE] = Deadline()
    app[LOOPS] = Loops(app[METRICS].loop_failing)
    app.on_shutdown.append(_begin_stop)
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
        if s.console.enabled:
            console.setup(app, background=background)
    return app


async def run_until_signal(app: web.Application, host: str | None, port: int | None) -> None:
    """Run an app (listening on host:port if a port is given) until SIGINT or SIGTERM,
    then stop it within `process.shutdown_grace_s` (see the module docstring)."""
    grace = app[CONFIG].settings.process.shutdown_grace_s
    # aiohttp waits this long for requests in progress once parked devices are answered
    # (a slow upload, a big answer); the workers drain meanwhile.
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=grace / 3)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        if received:
            log.warning("%s: already stopping (done within %.0f s)", sig.name, grace)
            return
        received.append(sig.name)
        app[DEADLINE].start(grace)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await runner.setup()
        if port is not None:
            await web.TCPSite(runner, host, port).start()
            log.info("listening on http://%s:%d", host, port)
        await stop.wait()
        log.info("%s: stopping within %.0f s", received[0], grace)
    finally:
        started = loop.time()
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        log.info("stopped in %.1f s", loop.time() - started)


async def serve(config: Config) -> None:
    """`warngate serve`: the API and (with `dispatch.workers` >= 1) the worker loops."""
    s = config.settings
    await run_until_signal(create_app(config), s.host, s.port)


async def run_workers(
    config: Config,
    *,
    planners: int | None = None,
    metrics_host: str = "127.0.0.1",
    metrics_port: int | None = None,
) -> None:
    """`warngate worker`: the app's resources and worker loops until SIGINT or SIGTERM.
    The alert API is not served; with `metrics_port`, /metrics, /healthz and /readyz
    are, so Prometheus sees the workers' sends, retries and breakers."""
    n = planners if planners is not None else max(config.settings.dispatch.workers, 1)
    app = create_app(config, workers=n, routes=False)
    if metrics_port is not None:
        app.add_routes(health.routes)
    app.on_startup.append(_log_worker)
    await run_until_signal(app, metrics_host, metrics_port)


async def _log_worker(app: web.Application) -> None:
    log.info("worker %s running", app[WORKERS].consumer)


def build_workers(app: web.Application, consumer: str | None = None) -> Workers:
    """Planner, sender and worker loops on this app's resources (not started)."""
    config, store, metrics = app[CONFIG], app[STORE], app[METRICS]
    name = consumer or consumer_name()
    sender = Sender(config, store, metrics, build_adapters(config, app[HTTP]), name)
    planner = Planner(config, store, app[RENDERER], metrics, sender.batch_sizes())
    monitor = Monitor(config, store, planner, metrics)
    return Workers(config, store, planner, sender, metrics, name, monitor, app[LOOPS])


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
    ring = await asyncio.to_thread(KeyRing.of, s)  # permissions checked: fails with the key
    signer = Signer(ring.active, int(s.endpoints.signing.validity_s * 1000))
    hub = EndpointHub(
        app[STORE], config.directory, s.endpoints, app[METRICS], s.render.display_max_pages,
        signer=signer,
    )  # fmt: skip
    app[HUB] = hub
    await hub.start()
    bridge = None
    if s.endpoints.mqtt.url is not None:  # the same unit states, through the broker too
        bridge = MqttBridge(hub, s.endpoints.mqtt, consumer_name())
        await bridge.start()
    yield
    if bridge is not None:
        await bridge.close()
    await hub.close()


def _workers_ctx(planners: int) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        workers = build_workers(app)
        app[WORKERS] = workers
        await workers.start(planners=planners)
        yield
        await workers.close(app[DEADLINE].left(reserve=AFTER_WORKERS_S))

    return ctx


async def _sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    stop = asyncio.Event()
    health = app[LOOPS].add("expiry-sweeper")
    task = asyncio.create_task(_sweep_forever(app, stop, health), name="expiry-sweeper")
    yield
    stop.set()
    await stop_tasks([task], min(1.0, app[DEADLINE].left(reserve=AFTER_WORKERS_S)))
    app[LOOPS].remove(health)


async def _sweep_forever(app: web.Application, stop: asyncio.Event, health: LoopHealth) -> None:
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
            health.ok()
        except Exception as exc:
            if not stop.is_set():
                health.failed(exc)
                log.exception("expiry sweep failed; retrying")
        await sleep_or_stop(stop, every)
