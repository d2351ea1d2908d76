"""Private service instances for fault tests: never the machine's shared Redis or PostgreSQL.

    with PrivateRedis(tmp_path) as redis_server:     # redis-server on a free port, data in tmp_path
        redis_server.url(db=0)                          # redis://127.0.0.1:<port>/0
        redis_server.restart()                          # same port; without persistence its data is gone
        redis_server.stop(); redis_server.start()

`point_celery_at(url)` re-points this process's Celery app (and settings.REDIS_URL) at another broker, so the
test process publishes where its workers consume; it returns a function that undoes it.

PostgreSQL faults go through tests/support/fault_proxy.py in front of the test database instead of a private
server (see tests/faults/test_postgres_faults.py for why).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """redis-server bound to 127.0.0.1 on a fixed free port, no persistence unless `appendonly`."""

    def __init__(self, directory: Path, *, port: int | None = None, appendonly: bool = False) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 20.0) -> PrivateRedis:
        if self.process is not None and self.process.poll() is None:
            return self
        command = [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
        ]
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not _answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private redis on {self.port} did not start: {self.log()[-2000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def point_celery_at(url: str) -> Callable[[], None]:
    """Make this process publish to `url` (Celery caches its connection pool); returns the undo."""
    from django.conf import settings
    from kombu import pools

    from alm_portal.celery import app

    previous = (app.conf.broker_url, settings.REDIS_URL)

    def switch(broker: str | None, redis_url: str | None) -> None:
        # kombu keeps connection and producer pools in process-wide registries keyed by connection: closing
        # only the app's pool would leave a closed pool registered for the URL we come back to.
        with contextlib.suppress(Exception):
            pools.reset()
        app.conf.broker_url = broker
        settings.REDIS_URL = redis_url
        app._pool = None
        with contextlib.suppress(AttributeError):
            app.amqp._producer_pool = None

    switch(url, url)
    return lambda: switch(*previous)


__all__ = ["PrivateRedis", "free_port", "point_celery_at"]
