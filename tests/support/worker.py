"""A real Celery worker over Redis, in its own process, against the test database.

Use in tests marked `postgres` and `redis` with `django_db(transaction=True)`, so rows the test
writes are committed and visible to the worker:

    def test_something(celery_worker_process):
        job = job_enqueue(...)
        celery_worker_process.wait_for(lambda: Job.objects.get(pk=job.pk).status == "succeeded")

The worker gets its own Redis database number's queue through REDIS_URL and the same
ALM_VAR_DIR (secrets, artifacts) as the test process. Extra environment (e.g. ALM_TEST_CRASH_AT)
can be passed with `celery_worker_factory(env={...})`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60.0, interval: float = 0.2) -> None:
        """Poll `condition` until true; the timeout is a guard against hangs, not a measurement."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                break
            time.sleep(interval)
        raise AssertionError(
            f"condition not met; worker exit={self.process.poll()}\n--- worker log ---\n{self.log()[-4000:]}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def _worker_env(extra: dict[str, str] | None) -> dict[str, str]:
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        {
            "ALM_MODE": "test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL or "",
            "ALM_VAR_DIR": str(settings.VAR_DIR),
            "ALM_ARTIFACT_DIR": str(settings.ALM_ARTIFACT_DIR),
            # The test process and its workers sign checkpoints of one chain (the default follows DATABASE_URL),
            # with one key: workers write checkpoints too, after the events they commit.
            "ALM_AUDIT_CHAIN_ID": str(settings.ALM_AUDIT_CHAIN_ID),
            "ALM_AUDIT_CHECKPOINT_KEY": str(settings.ALM_AUDIT_CHECKPOINT_KEY),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("PYTEST_VERSION", None)
    env.update(extra or {})
    return env


def _purge_queue() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter("celery*"):
        client.delete(key)
    for key in client.scan_iter("notifications*"):  # the deliveries' own queue (settings.CELERY_TASK_QUEUES)
        client.delete(key)
    for key in client.scan_iter("_kombu*"):
        client.delete(key)
    for key in client.scan_iter("unacked*"):
        client.delete(key)


def start_worker(
    log_path: Path,
    env: dict[str, str] | None = None,
    concurrency: int = 1,
    node_name: str = "w@%h",
    queues: str | None = None,
) -> WorkerProcess:
    """Start a worker process in its own process group and wait until it is ready. Without `queues` it
    consumes the default queue only, like the `worker` of docker-compose; `queues="notifications"` makes it
    the `notifier`."""
    handle = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "alm_portal",
            "worker",
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            node_name,
            *(["--queues", queues] if queues else []),
        ],
        cwd=ROOT,
        env=_worker_env(env),
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so crash points kill only the worker
    )
    worker = WorkerProcess(process=process, log_path=log_path, env=env or {})
    try:
        worker.wait_for(lambda: "ready." in worker.log(), timeout=60)
    except BaseException:
        worker.stop(signal.SIGKILL)
        raise
    return worker


@pytest.fixture
def celery_worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(
        env: dict[str, str] | None = None, concurrency: int = 1, name: str = "w", queues: str | None = None
    ) -> WorkerProcess:
        log_path = tmp_path / f"worker-{name}-{len(started)}.log"
        worker = start_worker(log_path, env, concurrency, f"{name}{len(started)}@%h", queues)
        started.append(worker)
        return worker

    if settings.REDIS_URL:
        _purge_queue()
    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def celery_worker_process(celery_worker_factory: Callable[..., WorkerProcess]) -> Any:
    return celery_worker_factory()


def purge_queue() -> None:
    """Drop messages an earlier test left in this Redis database (for worker fixtures of a wider scope)."""
    if settings.REDIS_URL:
        _purge_queue()
