"""Jobs through a real Celery worker over Redis, on PostgreSQL, against the emulator over HTTPS."""

from __future__ import annotations

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.celery import publish_best_effort
from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.tasks import run_job
from environments.models import Environment
from environments.services.registry import environment_create

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def registered(emulator_org, team, settings, celery_worker_factory):
    settings.ALM_DATAVERSE_CA_BUNDLE = str(emulator_org.server.ca_file)
    environment = environment_create(
        name=emulator_org.name,
        url=emulator_org.url,
        kind="test",
        tenant_id=emulator_org.tenant_id,
        authority=emulator_org.authority,
        team=team,
        client_id=emulator_org.client_id,
        credential_type="secret",
        client_secret=emulator_org.client_secret,
        context=AuditContext.system(),
    )
    worker = celery_worker_factory(env={"ALM_DATAVERSE_CA_BUNDLE": str(emulator_org.server.ca_file)})
    return environment, worker


def test_registration_health_check_runs_on_the_worker(registered):
    environment, worker = registered
    job = Job.objects.get(environment=environment, kind=JobKind.HEALTH_CHECK)
    worker.wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED)
    environment.refresh_from_db()
    assert environment.health_status == "healthy"


def test_a_message_delivered_twice_runs_the_job_once(registered):
    environment, worker = registered
    job = Job.objects.get(environment=environment, kind=JobKind.HEALTH_CHECK)
    assert publish_best_effort(run_job, args=(job.pk,))
    assert publish_best_effort(run_job, args=(job.pk,))
    worker.wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED)
    worker.wait_for(lambda: worker.log().count("deployments.run_job[") >= 6)  # 3 messages: received + done each
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_a_job_committed_while_the_broker_was_down_runs_after_dispatch(registered, monkeypatch):
    from kombu.exceptions import OperationalError

    from alm_portal.jobs.services import job_enqueue, jobs_dispatch

    environment, worker = registered
    original = run_job.apply_async

    def broker_down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(run_job, "apply_async", broker_down)
    job = job_enqueue(kind=JobKind.INVENTORY_SYNC, environment=environment, params={}, context=AuditContext.system())
    monkeypatch.setattr(run_job, "apply_async", original)
    assert Job.objects.get(pk=job.pk).status == JobStatus.PENDING
    Job.objects.filter(pk=job.pk).update(updated_at=job.updated_at.replace(year=2000))  # waited long enough
    assert jobs_dispatch() >= 1
    worker.wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED)
    assert Environment.objects.get(pk=environment.pk).inventory_synced_at is not None
