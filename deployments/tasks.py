"""Celery tasks for jobs: thin wrappers over deployments.jobs. Both are safe to run twice."""

from __future__ import annotations

from celery import shared_task

from alm_portal.middleware import bind_request_id_for_logs
from deployments import jobs
from deployments.models import Job


# acks_late is safe here: a redelivered message finds the job claimed (or finished) and does nothing.
@shared_task(name="deployments.run_job", acks_late=True, ignore_result=True)
def run_job(job_id: int) -> str:
    request_id = Job.objects.filter(pk=job_id).values_list("request_id", flat=True).first() or ""
    bind_request_id_for_logs(request_id)
    outcome = jobs.job_run(job_id)
    return f"{outcome.status}:{outcome.reason}"


@shared_task(name="deployments.dispatch_jobs", acks_late=True, ignore_result=True)
def dispatch_jobs() -> int:
    """Beat, every 30 s: re-send job rows that were never picked up or whose worker died."""
    return jobs.jobs_dispatch()
