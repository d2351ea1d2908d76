"""Celery tasks of the job engine: thin wrappers over alm_portal.jobs.services, safe to run twice.

Their names are older than this app (beat schedules and messages already in the broker use them).
"""

from __future__ import annotations

from celery import shared_task

from alm_portal.jobs import services
from alm_portal.jobs.models import Job
from alm_portal.jobs.services.publishing import RUN_JOB_TASK
from alm_portal.middleware import bind_request_id_for_logs, reset_request_id_for_logs


# acks_late is safe here: a redelivered message finds the job claimed (or finished) and does nothing.
@shared_task(name=RUN_JOB_TASK, acks_late=True, ignore_result=True)
def run_job(job_id: int) -> str:
    request_id = Job.objects.filter(pk=job_id).values_list("request_id", flat=True).first() or ""
    # Unbound again afterwards: a worker process runs many tasks, and the next one (a beat task without a
    # request) must not log under this job's request id.
    token = bind_request_id_for_logs(request_id)
    try:
        outcome = services.job_run(job_id)
    finally:
        reset_request_id_for_logs(token)
    return f"{outcome.status}:{outcome.reason}"


@shared_task(name="deployments.dispatch_jobs", acks_late=True, ignore_result=True)
def dispatch_jobs() -> int:
    """Beat, every 30 s: re-send job rows that were never picked up or whose worker died."""
    return services.jobs_dispatch()
