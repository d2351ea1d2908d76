"""Celery tasks for jobs: thin wrappers over deployments.jobs, and the handlers of deployment jobs.

Both tasks are safe to run twice; each handler calls one function, which continues from the step the
job row records (a second run continues or does nothing).
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import shared_task

from alm_portal.audit.context import AuditContext
from alm_portal.errors import InvalidState
from alm_portal.middleware import bind_request_id_for_logs, reset_request_id_for_logs
from deployments import jobs, preflight, runner, workflow
from deployments.choices import JobKind
from deployments.jobs import register_job_handler
from deployments.models import Job


# acks_late is safe here: a redelivered message finds the job claimed (or finished) and does nothing.
@shared_task(name="deployments.run_job", acks_late=True, ignore_result=True)
def run_job(job_id: int) -> str:
    request_id = Job.objects.filter(pk=job_id).values_list("request_id", flat=True).first() or ""
    # Unbound again afterwards: a worker process runs many tasks, and the next one (a beat task without a
    # request) must not log under this job's request id.
    token = bind_request_id_for_logs(request_id)
    try:
        outcome = jobs.job_run(job_id)
    finally:
        reset_request_id_for_logs(token)
    return f"{outcome.status}:{outcome.reason}"


@shared_task(name="deployments.dispatch_jobs", acks_late=True, ignore_result=True)
def dispatch_jobs() -> int:
    """Beat, every 30 s: re-send job rows that were never picked up or whose worker died."""
    return jobs.jobs_dispatch()


@shared_task(name="deployments.release_scheduled_promotions", acks_late=True, ignore_result=True)
def release_scheduled_promotions() -> int:
    """Beat, every minute: queue scheduled promotions whose time has come (each moves at most once)."""
    return workflow.promotions_release_scheduled()


@register_job_handler(JobKind.PREFLIGHT)
def preflight_handler(job: Job, context: AuditContext) -> dict[str, Any]:
    """Check a promotion against its target and report the result to the workflow."""
    return preflight.preflight_run(job=job, context=context)


@register_job_handler(JobKind.IMPORT)
def import_handler(job: Job, context: AuditContext) -> dict[str, Any]:
    """Run a promotion's Dataverse operations: an import, or a rollback by its strategy."""
    try:
        return runner.promotion_run(job=job, context=context)
    except (jobs.JobDeferred, jobs.JobNeedsAttention, *jobs.DATABASE_CONNECTION_ERRORS):
        # A lost database is not the promotion's failure: the job engine gives the job back and the step
        # is repeated once the database answers again.
        raise
    except Exception as exc:
        # The runner fails the promotion itself for every failure it knows; anything else would
        # otherwise leave the promotion queued or running behind a failed job.
        _fail_promotion_of(job, exc, context)
        raise


def _fail_promotion_of(job: Job, exc: Exception, context: AuditContext) -> None:
    code = exc.code if isinstance(exc, jobs.JobFailed) else "internal_error"
    message = exc.message if isinstance(exc, jobs.JobFailed) else f"{type(exc).__name__}: {exc}"
    promotion_id = job.params.get("promotion_id")
    if promotion_id is None:
        return
    with contextlib.suppress(InvalidState):  # already failed (or finished) by the runner
        workflow.promotion_mark_failed(
            promotion_id=promotion_id, error_code=code, error_message=message[:2000], result={}, context=context
        )


@register_job_handler(JobKind.HOLDING_CLEANUP)
def holding_cleanup_handler(job: Job, context: AuditContext) -> dict[str, Any]:
    """A rollback that applies or removes a holding solution, when the workflow queues it under this kind."""
    return runner.promotion_run(job=job, context=context)
