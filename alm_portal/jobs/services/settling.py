"""People settling jobs: cancelling one nobody has started, and deciding the outcome of one that needs attention."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services.transitions import _move


def job_cancel(*, job: Job, context: AuditContext, reason: str) -> bool:
    """Cancel a job nobody has started. Started work runs to its end (Dataverse cannot cancel an import)."""
    with transaction.atomic():
        now = timezone.now()
        changed = _move(
            job.pk,
            current=JobStatus.PENDING,
            to=JobStatus.CANCELLED,
            finished_at=now,
            updated_at=now,
            error_message=reason,
        )
        if changed:
            job.status = JobStatus.CANCELLED
            record(context=context, action="job.cancelled", target=job, after={"reason": reason})
    return bool(changed)


def job_resolve_attention(*, job: Job, succeeded: bool, note: str, context: AuditContext) -> bool:
    """An admin settles a job whose outcome was unknown; audited with their note."""
    with transaction.atomic():
        status = JobStatus.SUCCEEDED if succeeded else JobStatus.FAILED
        now = timezone.now()
        changed = _move(job.pk, current=JobStatus.NEEDS_ATTENTION, to=status, finished_at=now, updated_at=now)
        if changed:
            record(
                context=context,
                action="job.attention_resolved",
                target=job,
                before={"status": JobStatus.NEEDS_ATTENTION},
                after={"status": status, "note": note},
            )
            job.status = status
    return bool(changed)
