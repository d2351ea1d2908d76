"""The portal's own overhead per promotion, with the Dataverse emulator at zero delay (issue 5, bench).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/alm_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/bench_promotion_overhead.py [--concurrent 1 50] [--environments 10]
        [--workers 2 --concurrency 4] [--durations 0 5] [--samples 5]

Needs PostgreSQL and Redis (real Celery workers share the database with this process). Creates a
throw-away test database, a private emulator process and --environments orgs (one solution operation
at a time each, as in Dataverse), registers them as the stages of one pipeline (one approval each), and
starts --workers Celery worker processes. Then, per scenario (N concurrent promotions spread round-robin
over the environments; every promotion installs its own solution, so none blocks another by version):
requests N promotions, waits for their pre-flights, approves them all and waits until all succeeded.

Measured per promotion, from the job rows, the promotion rows and the emulator's own record of each
operation (its state file keeps accept and due times as floats):

  approve→submitted   approve() called → the emulator accepted the import (broker, claim, target read,
                      start check, pre-flight re-check, artifact re-hash and upload; for promotions
                      queued behind another one on the same environment also the wait for the slot)
  done→seen           the operation was due (Dataverse finished) → the runner's poll saw it
  seen→succeeded      log read, inventory refresh, workflow transition
  done→succeeded      the two above
  fixed 10 s poll     what done→seen would be for a poller that looks every 10 s after the submit
                      (10 − duration for imports under 10 s, else 5 s: the mean of a uniform 0–10 s gap)

Prints a table; never part of the test suite.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alm_portal.settings")
os.environ.setdefault("ALM_MODE", "test")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import OperationalError, connection  # noqa: E402

from alm_portal.accounts import services as accounts_services  # noqa: E402
from alm_portal.audit.context import AuditContext  # noqa: E402
from alm_portal.jobs.models import Job  # noqa: E402
from alm_portal.jobs.services import jobs_dispatch  # noqa: E402
from deployments import workflow  # noqa: E402
from deployments.models import Promotion  # noqa: E402
from deployments.services import pipeline_create, stage_add  # noqa: E402
from environments.services import environment_create  # noqa: E402
from solutions.services import solution_version_upload  # noqa: E402
from tests.emulator.packages import make_solution  # noqa: E402
from tests.support.emulator import start_emulator  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def start_workers(count: int, concurrency: int, ca_file: Path, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "ALM_MODE": "test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL or "",
        "ALM_VAR_DIR": str(settings.VAR_DIR),
        "ALM_ARTIFACT_DIR": str(settings.ALM_ARTIFACT_DIR),
        "ALM_DATAVERSE_CA_BUNDLE": str(ca_file),
        # A short task time limit keeps leases short (limit + 60 s): a task that dies is taken over soon.
        "ALM_TASK_TIME_LIMIT": "60",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PYTEST_VERSION", None)
    workers = []
    for index in range(count):
        log = (log_dir / f"worker-{index}.log").open("wb")
        command = [sys.executable, "-m", "celery", "-A", "alm_portal", "worker", "--pool", "prefork"]
        command += ["--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-gossip"]
        command += ["--without-mingle", "--without-heartbeat", "-n", f"bench{index}@%h"]
        workers.append(
            subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
    time.sleep(4.0)  # let them connect before the first message
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)


def wait_until(condition: Any, timeout: float, what: str) -> None:
    """Poll `condition`; meanwhile do beat's dispatching (no beat runs here), so a job whose task died
    (its lease ran out) is handed to a worker again."""
    deadline = time.monotonic() + timeout
    next_dispatch = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if condition():
            return
        if time.monotonic() > next_dispatch:
            jobs_dispatch()
            next_dispatch = time.monotonic() + 10.0
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def emulator_operation(server: Any, org_name: str, operation_id: str) -> dict[str, Any]:
    path = Path(f"{server.state_file}.orgs") / f"{org_name}.json"
    for _ in range(40):  # the emulator replaces the file after every change
        state = json.loads(path.read_text())
        operation = state["asyncoperations"].get(operation_id.lower())
        if operation is not None and operation.get("emu_due") is not None:
            return operation
        time.sleep(0.05)
    raise SystemExit(f"operation {operation_id} not in {path}")


def ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


def run_scenario(
    *, label: str, count: int, setup: dict[str, Any], server: Any, counter: list[int], deadlocks: list[int]
) -> list[dict[str, float]]:
    """N promotions requested, pre-flighted, approved at once and run; one timing row per promotion."""
    maker, approver = setup["maker"], setup["approver"]
    stages, orgs = setup["stages"], setup["orgs"]
    maker_context = AuditContext.for_user(maker, auth_method="session", request_id=f"bench-{label}")
    approver_context = AuditContext.for_user(approver, auth_method="session", request_id=f"bench-{label}")
    promotions = []
    for index in range(count):
        counter[0] += 1
        name = f"BenchSol{counter[0]:04d}"
        package = make_solution(name, "1.0.0.0", tables=(f"emt_{name.lower()}",))
        stream = io.BytesIO(package)
        stream.name = f"{name}.zip"
        version = solution_version_upload(
            file=stream, user=maker, context=maker_context, home_environment=setup["dev"]
        ).version
        stage = stages[index % len(stages)]
        promotions.append(
            workflow.promotion_request(version=version, stage=stage, requested_by=maker, context=maker_context)
        )
    ids = [promotion.pk for promotion in promotions]
    wait_until(
        lambda: not Promotion.objects.filter(pk__in=ids, preflight_status="pending").exists(), 120, "pre-flights"
    )
    blocked = Promotion.objects.filter(pk__in=ids, preflight_status="blocked").count()
    if blocked:
        raise SystemExit(
            f"{blocked} pre-flights blocked: {Promotion.objects.filter(pk__in=ids).first().preflight_result}"
        )
    approved_at: dict[int, float] = {}
    started = time.time()
    for promotion in promotions:
        approved_at[promotion.pk] = time.time()
        for _attempt in range(5):
            try:
                workflow.promotion_approve(promotion=promotion, user=approver, context=approver_context)
                break
            except OperationalError as exc:
                # Reported to the lead: the audit chain's advisory lock is taken before the deferred FK
                # checks of COMMIT, which then wait for a row an inventory sync holds FOR UPDATE while it
                # waits for the chain lock. PostgreSQL aborts one side; the approval is simply repeated.
                deadlocks[0] += 1
                print(f"  approve of {promotion.pk} was a deadlock victim ({str(exc).splitlines()[0]}); again")
    wait_until(
        lambda: Promotion.objects.filter(pk__in=ids, status__in=("succeeded", "failed")).count() == count,
        600,
        "the imports",
    )
    makespan = time.time() - started
    rows = []
    for promotion in Promotion.objects.filter(pk__in=ids).select_related("target_environment"):
        if promotion.status != "succeeded":
            raise SystemExit(f"promotion {promotion.pk} {promotion.status}: {promotion.error_message}")
        job = Job.objects.get(pk=promotion.run_job_id)
        org = orgs[promotion.target_environment_id]
        operation = emulator_operation(server, org.name, job.async_operation_id)
        seen = ts(promotion.result["operations"][-1]["seen_at"])
        accepted, due = float(operation["emu_created"]), float(operation["emu_due"])
        # A fixed 10 s poller looks first 10 s after the submit; after that the import's end falls anywhere
        # in a 10 s gap, so it is seen 5 s late on average (the emulator's exact durations would otherwise
        # line up with the poller's grid by accident).
        took = due - accepted
        fixed_delay = 10.0 - took if took < 10.0 else 5.0
        imports = org.import_count(promotion.solution.unique_name)
        if imports != 1:
            raise SystemExit(f"promotion {promotion.pk}: the emulator counted {imports} imports, not 1")
        rows.append(
            {
                "environment": float(promotion.target_environment_id),
                "approve_to_submitted": accepted - approved_at[promotion.pk],
                "done_to_seen": seen - due,
                "seen_to_succeeded": ts(promotion.finished_at) - seen,
                "done_to_succeeded": ts(promotion.finished_at) - due,
                "fixed_10s_done_to_seen": fixed_delay,
                "dataverse": due - accepted,
                "accepted": accepted,
            }
        )
    # The first promotion of each environment never waits for the environment's slot; the others do.
    first_accepted: dict[float, float] = {}
    for row in rows:
        first_accepted[row["environment"]] = min(first_accepted.get(row["environment"], math.inf), row["accepted"])
    for row in rows:
        if row["accepted"] == first_accepted[row["environment"]]:
            row["approve_to_submitted_first"] = row["approve_to_submitted"]
        else:
            row["approve_to_submitted_queued"] = row["approve_to_submitted"]
    print(f"  {label}: {count} promotions succeeded in {makespan:.1f} s, one import each", flush=True)
    return rows


def summarise(label: str, rows: list[dict[str, float]]) -> None:
    print(f"\n{label}  (n={len(rows)}; seconds: mean / p50 / p95 / max)")
    for key in (
        "approve_to_submitted",
        "approve_to_submitted_first",
        "approve_to_submitted_queued",
        "done_to_seen",
        "seen_to_succeeded",
        "done_to_succeeded",
        "fixed_10s_done_to_seen",
        "dataverse",
    ):
        values = [row[key] for row in rows if key in row]
        if not values:
            continue
        print(
            f"  {key:<24} {statistics.mean(values):7.2f} {percentile(values, 0.5):7.2f} "
            f"{percentile(values, 0.95):7.2f} {max(values):7.2f}"
        )


def set_up(server: Any, environments: int) -> dict[str, Any]:
    system = AuditContext.system()
    team = accounts_services.team_create(name="Bench", slug="bench", context=system)
    maker = accounts_services.user_create(username="maker", role="maker", password="bench-bench-bench", context=system)
    approver = accounts_services.user_create(
        username="approver", role="approver", password="bench-bench-bench", context=system
    )
    for user in (maker, approver):
        accounts_services.team_add_member(team=team, user=user, context=system)

    def register(org: Any, kind: str) -> Any:
        return environment_create(
            name=org.name,
            url=org.url,
            kind=kind,
            tenant_id=org.tenant_id,
            authority=org.authority,
            team=team,
            client_id=org.client_id,
            credential_type="secret",
            client_secret=org.client_secret,
            context=system,
            check_health=False,
        )

    dev = register(server.new_org("bench-dev"), "development")
    pipeline = pipeline_create(name="Bench", team=team, development_environment=dev, context=system)
    stages, orgs = [], {}
    for index in range(environments):
        org = server.new_org(f"bench-{index:02d}")
        environment = register(org, "test")
        orgs[environment.pk] = org
        stages.append(
            stage_add(
                pipeline=pipeline,
                name=f"env{index:02d}",
                target_environment=environment,
                required_approvals=1,
                approver_users=[approver],
                requires_previous_stage=False,
                context=system,
            )
        )
    return {"maker": maker, "approver": approver, "dev": dev, "stages": stages, "orgs": orgs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--environments", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="processes per worker")
    parser.add_argument("--durations", type=float, nargs="+", default=[0.0], help="emulator import durations (s)")
    parser.add_argument("--samples", type=int, default=5, help="sequential runs of the 1-promotion scenario")
    args = parser.parse_args()
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        raise SystemExit("needs DATABASE_URL (PostgreSQL) and REDIS_URL: the workers share the database")

    logging.disable(logging.WARNING)
    settings.DEBUG = False
    settings.ALM_ALLOW_LOOPBACK = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    artifacts = Path(tempfile.mkdtemp(prefix="bench-artifacts-"))
    settings.ALM_ARTIFACT_DIR = artifacts
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(artifacts)},
        },
    }
    database = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False, serialize=False)
    print(
        f"database: {database}; poll settings: first look after "
        f"{getattr(settings, 'ALM_IMPORT_POLL_SECONDS', 1.0)} s, at most "
        f"{getattr(settings, 'ALM_IMPORT_POLL_MAX_SECONDS', 10.0)} s apart",
        flush=True,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with start_emulator(Path(tempfile.mkdtemp(prefix="bench-emulator-"))) as server:
            settings.ALM_DATAVERSE_CA_BUNDLE = str(server.ca_file)
            setup = set_up(server, args.environments)
            logs = Path(tempfile.mkdtemp(prefix="bench-workers-"))
            workers = start_workers(args.workers, args.concurrency, server.ca_file, logs)
            print(f"{args.workers} workers x {args.concurrency} processes; logs in {logs}", flush=True)
            counter, deadlocks = [0], [0]
            for duration in args.durations:
                for org in setup["orgs"].values():
                    org.settings(operation_duration=duration)
                for count in args.concurrent:
                    rows: list[dict[str, float]] = []
                    runs = args.samples if count == 1 else 1
                    for run in range(runs):
                        rows += run_scenario(
                            label=f"{count} concurrent, Dataverse {duration:g} s, run {run + 1}",
                            count=count,
                            setup=setup,
                            server=server,
                            counter=counter,
                            deadlocks=deadlocks,
                        )
                    summarise(
                        f"{count} concurrent promotion(s) over {min(count, args.environments)} environment(s), "
                        f"emulator import duration {duration:g} s",
                        rows,
                    )
            print(f"\napprovals repeated after a deadlock: {deadlocks[0]}")
            died = sum(log.read_text(errors="replace").count("deadlock detected") for log in logs.glob("*.log"))
            print(f"worker log lines naming a deadlock (tasks that died and were taken over): {died}")
    finally:
        stop_workers(workers)
        connection.creation.destroy_test_db(database, verbosity=0)


if __name__ == "__main__":
    main()
