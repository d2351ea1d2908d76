"""Workers dying: SIGKILL at a random moment of a promotion, and SIGTERM (warm shutdown) while an import is polled.

The deterministic crash points (after_claim, after_submit, mid_poll) are tests/deployments/test_crash.py, which
also checks these invariants; here the moment is random (the seed is printed) and two promotions run at once.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from alm_portal.jobs.models import Job
from tests.deployments.test_runner_fixtures import SUCCESS, job_of, success_package
from tests.support.invariants import all_alive, check_invariants, settle

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_worker_killed_at_a_random_moment_loses_nothing_and_imports_once(
    contoso, emulator, celery_worker_factory, worker_env, fault_random
):
    contoso.orgs["test"].settings(operation_duration=2)
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    doomed = celery_worker_factory(env=worker_env, name="doomed")

    contoso.approve(promotion)
    job = job_of(promotion)
    time.sleep(fault_random.uniform(0.0, 4.0))  # somewhere between claim and the end of polling
    seen = Job.objects.get(pk=job.pk)
    doomed.stop(signal.SIGKILL)
    assert doomed.process.returncode == -signal.SIGKILL

    replacement = celery_worker_factory(env=worker_env, name="replacement")
    settle([job.pk], timeout=120, alive=all_alive(replacement))

    promotion.refresh_from_db()
    assert promotion.status == "succeeded", (seen.status, seen.step, promotion.error_code, promotion.error_message)
    assert contoso.orgs["test"].import_count(SUCCESS, "1.0.0.0") == 1
    check_invariants(emulator)


def test_sigterm_while_polling_finishes_the_task_and_the_job_resumes_with_one_import(
    contoso, emulator, celery_worker_factory, worker_env
):
    org = contoso.orgs["test"]
    org.settings(operation_duration=5)  # the job polls for a while
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    first = celery_worker_factory(env=worker_env, name="first")

    contoso.approve(promotion)
    job = job_of(promotion)
    first.wait_for(lambda: Job.objects.get(pk=job.pk).status == "polling", timeout=60)
    submitted = Job.objects.get(pk=job.pk).async_operation_id
    os.kill(first.process.pid, signal.SIGTERM)  # to the main process, as a process manager stops it
    first.process.wait(timeout=60)

    assert first.process.returncode == 0, first.log()[-3000:]
    assert "Warm shutdown" in first.log()  # the running task was allowed to end, not cut off
    after_stop = Job.objects.get(pk=job.pk)
    assert after_stop.status == "polling" and not after_stop.lease_owner  # the poll task ended cleanly
    assert org.import_count(SUCCESS, "1.0.0.0") == 1

    second = celery_worker_factory(env=worker_env, name="second")
    settle([job.pk], timeout=120, alive=all_alive(second))

    job.refresh_from_db()
    promotion.refresh_from_db()
    assert promotion.status == "succeeded"
    assert job.async_operation_id == submitted  # the same operation, polled to its end by the new worker
    assert org.import_count(SUCCESS, "1.0.0.0") == 1
    check_invariants(emulator)
