"""The broker going away: a private redis-server (never the machine's) restarted with 50 jobs queued, and down
while a promotion is approved.

The instance runs without persistence, the harsher case: a restart loses every queued message, and the job
rows (the outbox) are all that is left. The dispatcher re-sends them; duplicates are harmless by design.
"""

from __future__ import annotations

import pytest
import redis
from rest_framework.test import APIClient

from alm_portal.audit.context import AuditContext
from deployments.jobs import job_enqueue
from deployments.models import Job
from tests.deployments.test_runner_fixtures import SUCCESS, job_of, success_package
from tests.support.invariants import all_alive, check_invariants, settle

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True), pytest.mark.slow]


def queued(private_redis) -> int:
    return int(redis.Redis.from_url(private_redis.url(0)).llen("celery"))


def test_redis_restarted_with_50_jobs_queued_loses_none_of_them(
    private_redis, contoso, emulator, celery_worker_factory, worker_env
):
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    redis.Redis.from_url(private_redis.url(0)).delete("celery")  # the pre-flight's nudge (it ran inline)
    contoso.approve(promotion)  # the import job: one of the 50 messages
    environments = list(contoso.environments.values())
    for index in range(49):
        job_enqueue(kind="health_check", environment=environments[index % 3], params={}, context=AuditContext.system())
    job_ids = list(Job.objects.exclude(status__in=("succeeded", "failed")).values_list("pk", flat=True))
    assert len(job_ids) == 50
    assert queued(private_redis) == 50

    private_redis.restart()
    assert queued(private_redis) == 0  # every message is gone; only the rows remain

    workers = [celery_worker_factory(env=worker_env, name=name) for name in ("a", "b")]
    settle(job_ids, timeout=240, alive=all_alive(*workers))

    statuses = dict(Job.objects.filter(pk__in=job_ids).values_list("pk", "status"))
    assert set(statuses.values()) == {"succeeded"}, statuses
    promotion.refresh_from_db()
    assert promotion.status == "succeeded"
    assert contoso.orgs["test"].import_count(SUCCESS, "1.0.0.0") == 1
    check_invariants(emulator)


def test_approval_answers_200_while_redis_is_down_and_the_dispatcher_runs_the_job_when_it_is_back(
    private_redis, contoso, emulator, celery_worker_factory, worker_env, approver, token_for
):
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    private_redis.stop()

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(approver, scopes=['read', 'approve'])}")
    response = client.post(f"/api/v1/promotions/{promotion.pk}/approve/", {"comment": "ok"}, format="json")
    assert response.status_code == 200, response.content  # publishing is best effort

    job = job_of(promotion)
    assert job.status == "pending"
    private_redis.start()
    assert queued(private_redis) == 0  # the nudge never reached the broker

    worker = celery_worker_factory(env=worker_env, name="after")
    settle([job.pk], timeout=120, alive=all_alive(worker))

    promotion.refresh_from_db()
    assert promotion.status == "succeeded"
    assert contoso.orgs["test"].import_count(SUCCESS, "1.0.0.0") == 1
    check_invariants(emulator)
