"""The deployment job kinds and their handlers (registered with the job engine), and the beat task of promotions.

The task is safe to run twice; each handler calls one function, which continues from the step the
job row records (a second run continues or does nothing). DeploymentsConfig.ready imports this module.
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import shared_task

from alm_portal.audit.context import AuditContext
from alm_portal.errors import InvalidState
from alm_portal.jobs import errors as jobs
from alm_portal.jobs.models import Job
from alm_portal.jobs.registry import register_job_handler, register_job_kind
from alm_portal.jobs.services import DATABASE_CONNECTION_ERRORS
from deployments import preflight, runner, workflow
from deployments.choices import DeploymentJobKind

# Dataverse runs one solution operation at a time per environment: these hold the environment's slot.
register_job_kind(DeploymentJobKind.PREFLIGHT)
register_job_kind(DeploymentJobKind.IMPORT, uses_solution_slot=True)
register_job_kind(DeploymentJobKind.UNINSTALL, uses_solution_slot=True)
register_job_kind(DeploymentJobKind.HOLDING_CLEANUP, uses_solution_slot=True)


@shared_task(name="deployments.release_scheduled_promotions", acks_late=True, ignore_result=True)
def release_scheduled_promotions() -> int:
    """Beat, every minute: queue scheduled promotions whose time has come (each moves at most once)."""
    return workflow.promotions_release_scheduled()


@register_job_handler(DeploymentJobKind.PREFLIGHT)
def preflight_handler(job: Job, context: AuditContext) -> dict[str, Any]:
    """Check a promotion against its target and report the result to the workflow."""
    return preflight.preflight_run(job=job, context=context)


@register_job_handler(DeploymentJobKind.IMPORT)
def import_handler(job: Job, context: AuditContext) -> dict[str, Any]:
    """Run a promotion's Dataverse operations: an import, or a rollback by its strategy."""
    try:
        return runner.promotion_run(job=job, context=context)
    except (jobs.JobDeferred, jobs.JobNeedsAttention, *DATABASE_CONNECTION_ERRORS):
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


@register_job_handler(DeploymentJobKind.HOLDING_CLEANUP)
def holding_cleanup_handler(job: Job, context: AuditContext) -> dict[str, Any]:
    """A rollback that applies or removes a holding solution, when the workflow queues it under this kind."""
    return runner.promotion_run(job=job, context=context)
