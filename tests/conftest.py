"""Shared fixtures: a real Redis (started here unless WARNGATE_TEST_REDIS_URL is set), a
per-test key prefix instead of flushing, and the app built by the real factory."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.redis_server import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CONFIG = Path(os.environ.get("WARNGATE_TEST_CONFIG", ROOT / "config"))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("WARNGATE_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """Keys of one test live under their own prefix; only those keys are removed after."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(redis_url: str, prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await client.delete(*keys[i : i + 500])
    await client.aclose()


def make_config(redis_url: str, prefix: str, directory: Path = SAMPLE_CONFIG, **kw: Any) -> Config:
    overrides: dict[str, Any] = {"redis": {"url": redis_url, "prefix": prefix}}
    overrides.update(kw)
    return load_config(directory, **overrides)


@pytest.fixture(scope="session")
def sample_config_cached(redis_url: str) -> Config:
    """The sample configuration, loaded once (the directory takes a moment to index)."""
    return make_config(redis_url, "unused")


@pytest.fixture
def config(sample_config_cached: Config, prefix: str) -> Config:
    settings = sample_config_cached.settings
    redis_settings = settings.redis.model_copy(update={"prefix": prefix})
    return Config(
        settings=settings.model_copy(update={"redis": redis_settings}),
        registry=sample_config_cached.registry,
        hazards=sample_config_cached.hazards,
        directory=sample_config_cached.directory,
        policy=sample_config_cached.policy,
    )


@pytest.fixture
async def client(
    aiohttp_client: Any, config: Config, redis: Redis
) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(config, background=False)
    return await aiohttp_client(app)
