"""Reads of the verification jobs."""

from __future__ import annotations

from alm_portal.audit_verification.choices import AuditJobKind
from alm_portal.jobs.choices import ACTIVE_JOB_STATUSES, JobStatus
from alm_portal.jobs.models import Job


def audit_verification_running() -> Job | None:
    """The verification job waiting or running now, if any (the newest)."""
    return (
        Job.objects.filter(kind=AuditJobKind.AUDIT_VERIFY, status__in=(JobStatus.PENDING, *ACTIVE_JOB_STATUSES))
        .order_by("-pk")
        .first()
    )
