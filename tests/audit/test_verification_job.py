"""A verification asked for over the API runs as a job on a real Celery worker over Redis."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import record
from alm_portal.audit_verification.services import audit_verification_request
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_a_queued_verification_is_run_by_the_worker_and_recorded(settings: Any, celery_worker_factory: Any) -> None:
    for number in range(5):
        with transaction.atomic():
            record(context=AuditContext.system(), action="promotion.requested", after={"n": number})
    worker = celery_worker_factory(env={"ALM_AUDIT_CHECKPOINT_KEY": settings.ALM_AUDIT_CHECKPOINT_KEY})

    job = audit_verification_request(context=AuditContext.system(request_id="verify-request-1"))

    worker.wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED)
    job.refresh_from_db()
    verified = AuditEvent.objects.get(action="audit.verified")
    assert job.progress == 100 and job.attempts == 1
    assert job.result["valid"] is True and job.result["event_seq"] == verified.seq
    assert job.result["checked"] == verified.after["checked"] >= 6  # five events and the job.enqueued one
    assert verified.request_id == "verify-request-1" and verified.actor_kind == "worker"
