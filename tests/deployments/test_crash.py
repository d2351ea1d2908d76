"""Crash safety with real Celery workers over Redis, on PostgreSQL, against the emulator (docs/states.md §3.6: a worker
killed mid-import resumes the same Dataverse operation, an uncertain submit is looked up before anything is sent again,
a job delivered twice runs once).

ALM_TEST_CRASH_AT makes the worker SIGKILL its whole process group at a named point. The lease of the dead
worker is then made to run out (as time would) and the dispatcher hands the job to a new worker, which
must continue with the same Dataverse operation: the emulator counts exactly one import.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alm_portal.celery import publish_best_effort
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import jobs_dispatch
from alm_portal.jobs.tasks import run_job
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    SUCCESS,
    contoso_fixture,
    job_of,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)
from tests.support.invariants import check_invariants

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(name="worker_env")
def worker_env_fixture(emulator):
    return {"ALM_DATAVERSE_CA_BUNDLE": str(emulator.ca_file)}


def lease_runs_out(job):
    """What time does to a dead worker's claim: its lease expires and the row looks idle to the dispatcher."""
    past = timezone.now() - timedelta(minutes=5)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=past, not_before=None, updated_at=past)


def status_of(job):
    return Job.objects.filter(pk=job.pk).values_list("status", flat=True).get()


@pytest.mark.parametrize("point", ["after_claim", "after_submit", "mid_poll"])
def test_a_worker_killed_mid_import_is_continued_and_imports_once(
    contoso, emulator, celery_worker_factory, worker_env, point
):
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    crashing = celery_worker_factory(env={**worker_env, "ALM_TEST_CRASH_AT": point}, name="crashing")

    contoso.approve(promotion)  # queues the import job; the broker hands it to the crashing worker
    crashing.process.wait(timeout=90)

    job = job_of(promotion)
    org = contoso.orgs["test"]
    if point == "after_claim":
        assert (job.status, job.async_operation_id) == (JobStatus.CLAIMED, "")
        assert org.import_count(SUCCESS) == 0
    else:
        assert job.status == JobStatus.POLLING and job.async_operation_id
        assert org.import_count(SUCCESS) == 1
    submitted = job.async_operation_id
    assert f"ALM_TEST_CRASH_AT={point} reached" in crashing.log()

    lease_runs_out(job)
    worker = celery_worker_factory(env=worker_env, name="restarted")
    assert jobs_dispatch() >= 1
    worker.wait_for(lambda: status_of(job) == JobStatus.SUCCEEDED, timeout=90)

    job.refresh_from_db()
    promotion.refresh_from_db()
    assert promotion.status == "succeeded"
    assert org.import_count(SUCCESS) == 1
    if submitted:
        assert job.async_operation_id == submitted  # the same operation was polled to its end
    assert contoso.installed("test")["version"] == "1.0.0.0"
    check_invariants(emulator)


def test_a_job_left_submitting_without_a_handle_adopts_the_operation_on_a_new_worker(
    contoso, emulator, celery_worker_factory, worker_env
):
    org = contoso.orgs["test"]
    org.set_faults(import_never_finishes={"count": 1})
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    worker = celery_worker_factory(env=worker_env, name="first")
    contoso.approve(promotion)
    job = job_of(promotion)
    worker.wait_for(lambda: Job.objects.get(pk=job.pk).async_operation_id != "", timeout=60)
    submitted = Job.objects.get(pk=job.pk).async_operation_id
    worker.stop()

    # The row as a worker that died between Dataverse's answer and storing it would leave it.
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.SUBMITTING, step="submit:0", async_operation_id="", import_job_id="", lease_owner=""
    )
    lease_runs_out(job)
    org.complete_operation(submitted)
    replacement = celery_worker_factory(env=worker_env, name="second")
    jobs_dispatch()
    replacement.wait_for(lambda: status_of(job) == JobStatus.SUCCEEDED, timeout=90)

    job.refresh_from_db()
    promotion.refresh_from_db()
    assert promotion.status == "succeeded"
    assert job.async_operation_id == submitted
    assert promotion.result["adopted"]["async_operation_id"] == submitted
    assert org.import_count(SUCCESS) == 1
    check_invariants(emulator)


def test_duplicate_messages_to_two_workers_and_one_more_mid_poll_import_once(
    contoso, emulator, celery_worker_factory, worker_env
):
    org = contoso.orgs["test"]
    org.settings(operation_duration=3)  # long enough to deliver a copy while the job polls
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    workers = [celery_worker_factory(env=worker_env, name=name) for name in ("a", "b")]

    contoso.approve(promotion)  # one message on commit …
    job = job_of(promotion)
    assert publish_best_effort(run_job, args=(job.pk,))  # … and two more copies at the same moment
    assert publish_best_effort(run_job, args=(job.pk,))
    workers[0].wait_for(lambda: status_of(job) == JobStatus.POLLING, timeout=60)
    assert publish_best_effort(run_job, args=(job.pk,))  # one more copy while it polls
    workers[0].wait_for(lambda: status_of(job) == JobStatus.SUCCEEDED, timeout=90)

    promotion.refresh_from_db()
    assert promotion.status == "succeeded"
    assert org.import_count(SUCCESS) == 1
    received = sum(worker.log().count("Task deployments.run_job[") for worker in workers)
    assert received >= 4  # every copy reached a worker; all but one found nothing to claim
    check_invariants(emulator)
