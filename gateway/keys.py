"""App: the typed keys under which `create_app` stores each shared resource."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from redis.asyncio import Redis

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.ingest import Ingestor
    from gateway.metrics import Metrics
    from gateway.store import Store

__all__ = ["CONFIG", "INGESTOR", "METRICS", "REDIS", "STORE"]

CONFIG: web.AppKey[Config] = web.AppKey("config")
REDIS: web.AppKey[Redis] = web.AppKey("redis")
STORE: web.AppKey[Store] = web.AppKey("store")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
INGESTOR: web.AppKey[Ingestor] = web.AppKey("ingestor")
