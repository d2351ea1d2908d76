"""A full verification of the audit chain as a job (issue 6: `POST audit-events/verification/` → 202 {job}).

Verifying millions of rows takes minutes, so a request only queues a Job row (docs/audit.md).
The walk itself is the audit app's (alm_portal.audit.services.audit_verify); this app, above the job
engine, makes it a job. The row makes the request durable and pollable at /api/v1/jobs/{id}/: a lost broker message is
re-sent by the dispatcher, a dead worker's lease runs out and another worker starts again, and
progress and the result are on the row. The `audit.verified` event the run appends is the result
that `GET audit-events/verification/`, the pages and /metrics show.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from alm_portal.audit import services
from alm_portal.audit.context import AuditContext
from alm_portal.audit_verification.choices import AuditJobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_enqueue, job_progress

__all__ = ["audit_verification_job_run", "audit_verification_request"]


def audit_verification_request(*, context: AuditContext) -> Job:
    """Queue a full verification; one still waiting to start is returned instead of a second one,
    since it will cover every event written before it starts anyway."""
    with transaction.atomic():
        waiting = Job.objects.filter(kind=AuditJobKind.AUDIT_VERIFY, status=JobStatus.PENDING).order_by("pk").first()
        if waiting is not None:
            return waiting
        return job_enqueue(kind=AuditJobKind.AUDIT_VERIFY, environment=None, params={}, context=context)


def audit_verification_job_run(job: Job, context: AuditContext) -> dict[str, Any]:
    """The job handler: verify the chain, report progress per chunk (which also renews the lease) and
    keep the outcome on the job. A broken chain is a finding, not a failed job: the job succeeded in
    finding out, and `result.valid` is false."""

    def report(checked: int, total: int) -> None:
        # 100 is for the finished job; a chain that grew while we read can overshoot `total`.
        percent = min(99, checked * 100 // total) if total else 99
        job_progress(job, percent, f"{checked} of {total} events checked")

    result = services.audit_verify(context=context, on_progress=report)
    return {
        "valid": result.ok,
        "checked": result.checked,
        "head_seq": result.head_seq,
        "head_hash": result.head_hash,
        "first_broken_seq": result.first_broken_seq,
        "reason": str(result.reason) if result.reason else None,
        "event_seq": result.event_seq,
    }
