"""App: the typed keys under which `create_app` stores each shared resource."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import ClientSession, web
from redis.asyncio import Redis

if TYPE_CHECKING:
    from gateway.aio import Deadline, Loops
    from gateway.callbacks import ReceiptDesk
    from gateway.config import Config
    from gateway.console.web import Console
    from gateway.endpoints import EndpointHub
    from gateway.ingest import Ingestor
    from gateway.metrics import Metrics
    from gateway.render import Renderer
    from gateway.store import Store

__all__ = [
    "CONFIG",
    "CONSOLE",
    "DEADLINE",
    "DESK",
    "HTTP",
    "HUB",
    "INGESTOR",
    "LOOPS",
    "METRICS",
    "REDIS",
    "RENDERER",
    "STORE",
]

CONFIG: web.AppKey[Config] = web.AppKey("config")
REDIS: web.AppKey[Redis] = web.AppKey("redis")
STORE: web.AppKey[Store] = web.AppKey("store")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
INGESTOR: web.AppKey[Ingestor] = web.AppKey("ingestor")
RENDERER: web.AppKey[Renderer] = web.AppKey("renderer")
HUB: web.AppKey[EndpointHub] = web.AppKey("endpoint-hub")
HTTP: web.AppKey[ClientSession] = web.AppKey("http-client")
DESK: web.AppKey[ReceiptDesk] = web.AppKey("receipt-desk")
# The duty desk in the browser: accounts, sessions, the approval flow (gateway/console).
CONSOLE: web.AppKey[Console] = web.AppKey("console")
# The process: when a stop must be done, and the health of its background loops.
DEADLINE: web.AppKey[Deadline] = web.AppKey("shutdown-deadline")
LOOPS: web.AppKey[Loops] = web.AppKey("loop-health")
