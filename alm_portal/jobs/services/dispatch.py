"""The dispatcher beat runs: re-send the rows that are due and that nobody holds."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from alm_portal.jobs.choices import ACTIVE_JOB_STATUSES, JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services.publishing import publish_run_job

# The dispatcher re-sends rows that have waited longer than this without a live lease.
DISPATCH_AFTER = timedelta(seconds=30)


def jobs_dispatch(*, limit: int = 500) -> int:
    """Re-send jobs that are due and held by nobody (lost message, dead worker). Beat runs this."""
    now = timezone.now()
    due = (
        Job.objects.filter(Q(status=JobStatus.PENDING) | Q(status__in=ACTIVE_JOB_STATUSES))
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .filter(updated_at__lt=now - DISPATCH_AFTER)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    sent = 0
    for job_id in due:
        if publish_run_job(job_id):
            sent += 1
    return sent
