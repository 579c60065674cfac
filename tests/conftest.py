"""Shared fixtures: a real Redis (started here unless WARNGATE_TEST_REDIS_URL is set), a
per-test key prefix instead of flushing, and the app built by the real factory."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import build_workers, create_app
from gateway.config import Config, load_config
from gateway.directory import Directory
from gateway.keys import STORE
from gateway.models import Channel
from gateway.plan import PUSH_CHANNELS
from gateway.policy import Policy
from gateway.redis_server import EmbeddedRedis
from gateway.store import Store, now_ms
from gateway.store.deliveries import PLAN_GROUP, SEND_GROUP
from gateway.workers import Workers
from tests.fakes import FakeProvider

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CONFIG = Path(os.environ.get("WARNGATE_TEST_CONFIG", ROOT / "config"))
# The suite's signing keys (endpoints.signing.keys_dir): one directory for the run, made
# here, so that no test writes keys into the user's data directory.
SIGNING_KEYS = Path(tempfile.mkdtemp(prefix="wg-test-keys-"))
atexit.register(shutil.rmtree, SIGNING_KEYS, True)
os.environ.setdefault("WARNGATE_ENDPOINTS__SIGNING__KEYS_DIR", str(SIGNING_KEYS))


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a warngate process a test starts: none of this process's
    warngate or Redis settings, but the suite's signing keys (a child without them
    would make a key under the real home directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARNGATE_")}
    env.pop("REDIS_URL", None)
    env["WARNGATE_ENDPOINTS__SIGNING__KEYS_DIR"] = os.environ[
        "WARNGATE_ENDPOINTS__SIGNING__KEYS_DIR"
    ]
    return {**env, **extra}


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


def without_quiet_hours(policy: Policy) -> Policy:
    """The sample's policy without its quiet hours: with them, what a blue or yellow
    alert reaches depends on the hour the suite runs (at night the sample sends blue
    SMS nowhere). Quiet hours are tested with a fixed clock in test_plan.py."""
    return Policy([r.model_copy(update={"quiet_hours": None}) for r in policy.rules])


def without_households(config: Config) -> Config:
    """The same configuration as a directory without households: coverage definition v1
    (what a county that has not registered its households gets)."""
    d = config.directory
    plain = Directory(d.divisions.values(), d.endpoints.values(), d.recipients, d.groups.values())
    return Config(config.settings, config.registry, config.hazards, plain, config.policy)


@pytest.fixture(scope="session")
def sample_config_cached(redis_url: str) -> Config:
    """The sample configuration, loaded once (the directory takes a moment to index)."""
    loaded = make_config(redis_url, "unused")
    return Config(
        loaded.settings,
        loaded.registry,
        loaded.hazards,
        loaded.directory,
        without_quiet_hours(loaded.policy),
    )


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


# -- the gateway with fake providers, driven step by step ------------------------------


@dataclass
class Gateway:
    """An app built by the real factory, its stages run by the test (no background
    loops), and the fake providers its channels point at."""

    client: TestClient[Any, Any]
    app: web.Application
    config: Config
    store: Store
    workers: Workers
    sms: FakeProvider
    backup: FakeProvider
    push: FakeProvider
    waits: list[float]
    clock: list[int]
    fakes: dict[str, FakeProvider]  # one per configured provider, by name

    async def post(self, data: dict[str, Any], key: str = "wgdemo-changji-met") -> dict[str, Any]:
        resp = await self.client.post(
            "/api/v1/alerts",
            data=orjson.dumps(data),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        assert resp.status == 202, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    async def plan_all(self) -> int:
        """Plan every queued alert (red/orange lane first); how many entries were taken."""
        n = 0
        while rows := await self.store.read_group(
            self.workers.plan_streams(), PLAN_GROUP, "test", count=10, block_ms=None
        ):
            for row in rows:
                await self.workers.plan_entry(*row)
                n += 1
        return n

    async def send_all(self, channels: Sequence[Channel] = PUSH_CHANNELS, limit: int = 0) -> int:
        """Handle queued batches, hi lane first, one at a time; at most `limit` if set."""
        n = 0
        for channel in channels:
            streams = self.workers.send_streams(channel)
            while rows := await self.store.read_group(
                streams, SEND_GROUP, "test", count=1, block_ms=None
            ):
                for row in rows:
                    await self.workers.sender.handle(*row)
                    n += 1
                    if limit and n >= limit:
                        return n
        return n

    async def run(self) -> None:
        await self.plan_all()
        await self.send_all()

    async def deliveries(self, alert: str, **query: str) -> dict[str, Any]:
        resp = await self.client.get(
            f"/api/v1/alerts/{alert}/deliveries",
            params=query,
            headers={"Authorization": "Bearer wgdemo-changji-duty"},
        )
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


def with_providers(
    config: Config,
    urls: dict[str, str],
    batch_size: int | None = None,
    provider: dict[str, Any] | None = None,
    **dispatch: Any,
) -> Config:
    """The configuration with every provider at its fake (`provider`: more settings for
    every provider; `dispatch`: dispatch settings)."""
    s = config.settings
    providers = {}
    for name, p in s.providers.items():
        path = "/push" if p.kind == "app_http" else "/send"
        update: dict[str, Any] = {"url": urls[name] + path, "timeout_s": 2.0, **(provider or {})}
        if batch_size is not None:
            update["batch_size"] = batch_size
        providers[name] = p.model_copy(update=update)
    d = s.dispatch.model_copy(
        update={"backoff_base_s": 0.01, "backoff_max_s": 0.05, "claim_idle_s": 1.0, **dispatch}
    )
    settings = s.model_copy(update={"providers": providers, "dispatch": d})
    return Config(settings, config.registry, config.hazards, config.directory, config.policy)


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    """Overrides for `with_providers` (a test module may redefine this fixture)."""
    return {}


@pytest.fixture
async def gateway(
    aiohttp_client: Any,
    aiohttp_server: Any,
    config: Config,
    redis: Redis,
    gateway_options: dict[str, Any],
) -> Gateway:
    fakes = {n: FakeProvider(n) for n in config.settings.providers}
    for fake in fakes.values():
        server = await aiohttp_server(fake.app())
        fake.port = server.port
    cfg = with_providers(config, {n: f.url for n, f in fakes.items()}, **gateway_options)
    return await gateway_of(aiohttp_client, cfg, fakes)


async def gateway_of(aiohttp_client: Any, cfg: Config, fakes: dict[str, FakeProvider]) -> Gateway:
    """The `gateway` fixture's Gateway on a configuration of the test's own (whose
    providers point at `fakes`, already listening)."""
    app = create_app(cfg, background=False)
    client = await aiohttp_client(app)
    workers = build_workers(app, "test")
    waits: list[float] = []
    clock = [now_ms()]

    async def record_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    workers.sender.sleep = record_sleep
    workers.sender.clock = lambda: clock[0]
    for stream in workers.plan_streams():
        await app[STORE].ensure_group(stream, PLAN_GROUP)
    for channel in PUSH_CHANNELS:
        for stream in workers.send_streams(channel):
            await app[STORE].ensure_group(stream, SEND_GROUP)
    return Gateway(
        client,
        app,
        cfg,
        app[STORE],
        workers,
        fakes["sms-main"],
        fakes["sms-backup"],
        fakes["push"],
        waits,
        clock,
        fakes,
    )


# -- programs that are not Python packages ---------------------------------------------

IN_CI = os.environ.get("WARNGATE_CI") == "1"  # set by .ci/run


def need_program(name: str, debian_package: str) -> str:
    """The path of a program a test needs. When it is missing the test fails in CI
    (`.ci/run` installs it, so missing there is a fault) and is skipped elsewhere, with
    the package to install."""
    found = shutil.which(name)
    for folder in ("/usr/sbin", "/usr/bin"):  # not always on a non-root PATH
        if found is None and os.access(f"{folder}/{name}", os.X_OK):
            found = f"{folder}/{name}"
    if found is not None:
        return found
    reason = f"needs the program {name} (Debian: apt-get install {debian_package})"
    if IN_CI:
        pytest.fail(f"{reason}; .ci/run should have installed it", pytrace=False)
    pytest.skip(reason)
