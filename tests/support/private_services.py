"""Private service instances for fault tests: never the machine's shared Redis or PostgreSQL.

    with PrivateRedis(tmp_path) as redis_server:     # redis-server on a free port, data in tmp_path
        redis_server.url(db=0)                          # redis://127.0.0.1:<port>/0
        redis_server.restart()                          # same port; without persistence its data is gone
        redis_server.stop(); redis_server.start()

`point_celery_at(url)` re-points this process's Celery app (and settings.REDIS_URL) at another broker, so the
test process publishes where its workers consume; it returns a function that undoes it.

    with PrivatePostgres() as pg:                     # initdb + pg_ctl on a free port, data in a temp dir
        pg.create_database("alm"); pg.url("alm")        # postgres://postgres@127.0.0.1:<port>/alm
        pg.restart()                                    # pg_ctl restart -m fast: sessions are terminated

The server binaries come from /usr/lib/postgresql/<version>/bin (or PATH). initdb refuses to run as root, so
as root the server runs as the `postgres` system user (which the PostgreSQL packages create).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")


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


class PrivatePostgres:
    """A PostgreSQL server of its own (trust auth, fsync off, 127.0.0.1 on a fixed free port)."""

    def __init__(self, *, port: int | None = None) -> None:
        # Its own directory under the system temp dir: pytest's tmp_path sits below a 0700 directory of the
        # test user, which the postgres system user could not enter.
        self.directory = Path(tempfile.mkdtemp(prefix="alm-private-pg-"))
        self.data = self.directory / "data"
        self.port = port or free_port()
        self.bin = _postgres_bin()
        self.restarts = 0
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.directory, user="postgres")

    def _run(self, *command: str, timeout: float = 60.0) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=timeout)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PrivatePostgres:
        if not (self.data / "PG_VERSION").exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "log"),
            "-w",
            action,
            *extra,
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast")

    def restart(self) -> None:
        """A real restart: every session is terminated, new connections fail until the server is back."""
        self._pg_ctl("restart", "-m", "fast")
        self.restarts += 1

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(self.url())
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def log(self) -> str:
        path = self.directory / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


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


__all__ = ["PrivatePostgres", "PrivateRedis", "free_port", "point_celery_at"]
