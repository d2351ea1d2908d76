"""PostgreSQL going away under the web app and under a worker, and coming back.

Two ways, because each shows something the other cannot:
- A private PostgreSQL server (tests/support/private_services.py: initdb + pg_ctl on a free port, never the
  machine's shared server), migrated for the test, with gunicorn on it, restarted for real with
  `pg_ctl restart -m fast` under API load: the server itself terminates the sessions.
- A TCP fault proxy (tests/support/fault_proxy.py) in front of pytest-django's test database, for cases that
  need the test's own rows (a promotion run by a worker): the worker's and the web app's DATABASE_URL point at
  the proxy, and `refuse()` is what a stopped server looks like to them (open connections reset, new ones
  refused), `pass_through()` the server back on the same port. A private server could not hold those rows
  while the test process (which asserts and plays beat) uses the test database.
Nothing in the app is restarted: the first request after the database returns must succeed, which is what
CONN_HEALTH_CHECKS buys with persistent connections (CONN_MAX_AGE > 0).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from alm_portal.jobs.models import Job
from tests.deployments.test_runner_fixtures import SUCCESS, job_of, success_package
from tests.support.fault_proxy import FaultProxy
from tests.support.invariants import all_alive, check_invariants, settle
from tests.support.private_services import PrivatePostgres, free_port
from tests.support.worker import ROOT, _worker_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True), pytest.mark.slow]

DOWN_SECONDS = 4.0


@pytest.fixture(name="db_proxy")
def db_proxy_fixture():
    db = connection.settings_dict
    with FaultProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)) as proxy:
        yield proxy


def through(proxy: FaultProxy) -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"


def start_web(database_url: str, log_path: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """gunicorn (1 process, 4 threads, as in production but smaller) on `database_url`."""
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "alm_portal.wsgi", "--bind", f"127.0.0.1:{port}"),
            *("--workers", "1", "--threads", "4", "--timeout", "60"),
        ],
        cwd=ROOT,
        env=_worker_env({"DATABASE_URL": database_url}),
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return base, process
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_web(process)
            raise AssertionError(log_path.read_text(errors="replace"))
        time.sleep(0.2)


def stop_web(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


@pytest.fixture(name="web_app")
def web_app_fixture(db_proxy, tmp_path: Path):
    base, process = start_web(through(db_proxy), tmp_path / "gunicorn.log")
    yield base, process
    stop_web(process)


@dataclass
class Call:
    started: float
    ended: float
    ok: bool
    detail: str


def load(base: str, token: str, calls: list[Call], stop: threading.Event) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    while not stop.is_set():
        started = time.monotonic()
        try:
            response = session.get(f"{base}/api/v1/promotions/", timeout=15)
            ok, detail = response.status_code == 200, str(response.status_code)
        except requests.RequestException as exc:
            ok, detail = False, type(exc).__name__
        calls.append(Call(started, time.monotonic(), ok, detail))


def test_conn_health_checks_are_on_with_persistent_connections():
    database = settings.DATABASES["default"]
    assert database["CONN_HEALTH_CHECKS"] is True
    assert database["CONN_MAX_AGE"] > 0


def outage_under_load(base: str, token: str, outage) -> tuple[list[Call], float, float]:
    """Four threads list promotions before, during and after `outage()`; returns the calls and its window."""
    calls: list[Call] = []
    stop = threading.Event()
    threads = [threading.Thread(target=load, args=(base, token, calls, stop)) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2.0)
        down_at = time.monotonic()
        outage()
        back_at = time.monotonic()
        time.sleep(3.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    return calls, down_at, back_at


def assert_errors_only_while_down(calls: list[Call], down_at: float, back_at: float) -> None:
    before = [call for call in calls if call.ended < down_at]
    during = [call for call in calls if call.started < back_at and call.ended > down_at]
    after = sorted((call for call in calls if call.started >= back_at), key=lambda call: call.started)
    assert before and all(call.ok for call in before), [call.detail for call in before if not call.ok]
    assert any(not call.ok for call in during), "the outage was never noticed"
    assert after, "no request after the database came back"
    assert after[0].ok, f"the first request after the database returned failed: {after[0]}"
    assert all(call.ok for call in after), [call.detail for call in after if not call.ok]


def test_the_api_under_load_fails_only_while_postgres_is_down_and_recovers_without_a_restart(
    db_proxy, web_app, maker, token_for
):
    base, process = web_app

    def outage() -> None:
        db_proxy.refuse()
        time.sleep(DOWN_SECONDS)
        db_proxy.pass_through()

    calls, down_at, back_at = outage_under_load(base, token_for(maker, scopes=["read"]), outage)
    assert_errors_only_while_down(calls, down_at, back_at)
    assert process.poll() is None  # the same web process throughout


SEED_READER = """
from alm_portal.accounts.services import api_token_create, user_create
from alm_portal.audit.context import AuditContext
user = user_create(username="reader", role="auditor", password="reader-pass-1", context=AuditContext.system())
print(api_token_create(user=user, scopes=["read"], days=1, name="load", context=AuditContext.system())[1])
"""


def test_a_real_postgres_restart_under_api_load_fails_only_while_it_restarts(tmp_path):
    """The same as above against a private PostgreSQL server restarted with pg_ctl (sessions terminated by
    the server, not by a proxy), with the web app on a database migrated for this test."""
    with PrivatePostgres() as server:
        url = server.create_database("alm")
        env = _worker_env({"DATABASE_URL": url})
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SEED_READER],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        token = seeded.stdout.strip().splitlines()[-1]
        base, process = start_web(url, tmp_path / "gunicorn.log")
        try:
            calls, down_at, back_at = outage_under_load(base, token, server.restart)
            assert_errors_only_while_down(calls, down_at, back_at)
            assert process.poll() is None
        finally:
            stop_web(process)
        assert server.restarts == 1


def faults_of(org) -> dict:
    return org.set_faults()  # an empty change answers the org's current faults


def test_a_worker_that_loses_postgres_in_the_middle_of_a_step_gives_the_job_back_when_it_returns(
    db_proxy, contoso, emulator, celery_worker_factory, worker_env
):
    """The database goes away while the worker holds the job's lease (its poll of Dataverse is held back by
    the emulator), so the end of the step cannot be written. With the default task time limit the lease lasts
    16 minutes: the job finishing at all shows the same worker gave the lease back once PostgreSQL returned,
    rather than leaving it to run out."""
    org = contoso.orgs["test"]
    org.settings(operation_duration=8)  # the worker polls, writing a step each time, through the outage
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    env = {**worker_env, "DATABASE_URL": through(db_proxy)}
    assert "ALM_TASK_TIME_LIMIT" not in env and "ALM_TASK_TIME_LIMIT" not in os.environ  # the 16-minute lease
    worker = celery_worker_factory(env=env, name="pg")

    contoso.approve(promotion)
    job = job_of(promotion)
    worker.wait_for(lambda: Job.objects.get(pk=job.pk).status == "polling", timeout=60)
    # The next poll is held back by Dataverse: once it arrived there, the worker is inside a step and holds the
    # lease, and the database goes away before that step writes its end.
    org.set_faults(delay={"seconds": 2.0, "count": 1})
    worker.wait_for(lambda: "delay" not in faults_of(org), timeout=60)
    held = Job.objects.get(pk=job.pk)
    assert held.lease_owner and held.lease_expires_at is not None, "the worker does not hold the job"
    db_proxy.refuse()
    time.sleep(DOWN_SECONDS)
    db_proxy.pass_through()
    assert "OperationalError" in worker.log(), "the worker never noticed the outage"

    # Given back by the worker that held it (its lease owner is in the log line), not expired: nobody else may
    # have written the job meanwhile, and its lease would only run out in a quarter of an hour.
    worker.wait_for(lambda: f"lease of {held.lease_owner} given back" in worker.log(), timeout=120)
    settle([job.pk], timeout=180, alive=all_alive(worker))

    finished = Job.objects.get(pk=job.pk)
    assert finished.status == "succeeded"
    assert finished.attempts > held.attempts  # claimed again after it was given back
    assert "dispatcher takes it up then" not in worker.log()  # never left to the lease expiry
    promotion.refresh_from_db()
    assert promotion.status == "succeeded"
    assert org.import_count(SUCCESS, "1.0.0.0") == 1
    assert worker.log().count("ready.") == 1  # the same worker process, never restarted
    check_invariants(emulator)
