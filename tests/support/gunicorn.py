"""The web app under gunicorn, in its own process, against the test database, Redis and artifact storage.

For tests of what only a real server shows: state shared by several processes (throttles, export slots) and
sockets (slow clients behind the reverse proxy). Use with `django_db(transaction=True)` so the server sees the
rows the test wrote.

    server = start_gunicorn(tmp_path, workers=2)
    requests.get(server.url + "/healthz")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class GunicornServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    db = connection.settings_dict
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update(
        {
            "ALM_MODE": "test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL or "",
            "ALM_VAR_DIR": str(settings.VAR_DIR),
            "ALM_ARTIFACT_DIR": str(settings.ALM_ARTIFACT_DIR),
            "ALM_AUDIT_CHECKPOINT_KEY": str(settings.ALM_AUDIT_CHECKPOINT_KEY),
            "ALM_AUDIT_CHAIN_ID": str(settings.ALM_AUDIT_CHAIN_ID),
            "ALM_TOKEN_PEPPER": str(settings.ALM_TOKEN_PEPPER),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def start_gunicorn(
    tmp_path: Path, *, workers: int = 1, threads: int = 4, env: dict[str, str] | None = None, port: int | None = None
) -> GunicornServer:
    """Start gunicorn (the Dockerfile's worker model, smaller) and wait until /healthz answers."""
    port = port or free_port()
    log_path = tmp_path / f"gunicorn-{port}.log"
    handle = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "alm_portal.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--graceful-timeout",
            "5",
        ],
        cwd=ROOT,
        env=server_env(env),
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = GunicornServer(process=process, port=port, log_path=log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise AssertionError(f"gunicorn did not start\n{server.log()[-4000:]}")
