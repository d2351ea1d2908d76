"""Job handlers and beat tasks of environments: thin, each calls one service.

Handlers run inside the job engine (alm_portal.jobs) (which claims the job, so a duplicate delivery does nothing);
beat tasks only queue jobs, one per active environment, skipping environments that already have
one waiting or running, so running them twice queues nothing twice.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from alm_portal.audit.context import AuditContext
from alm_portal.jobs.errors import JobDeferred, JobFailed
from alm_portal.jobs.models import Job
from alm_portal.jobs.registry import register_job_handler, register_job_kind
from alm_portal.jobs.services import job_progress
from environments import services
from environments.choices import EnvironmentJobKind
from environments.models import Credential

# A throttled sync comes back after the Retry-After, but not forever.
MAX_SYNC_ATTEMPTS = 5

# Scheduled every few minutes for every environment: routine, so only failures are audited.
register_job_kind(EnvironmentJobKind.INVENTORY_SYNC, routine=True)
register_job_kind(EnvironmentJobKind.HEALTH_CHECK, routine=True)


@register_job_handler(EnvironmentJobKind.HEALTH_CHECK)
def run_health_check(job: Job, context: AuditContext) -> dict[str, Any]:
    if job.environment is None:
        raise JobFailed("no_environment", "A health check needs an environment.")
    candidate = None
    candidate_id = job.params.get("credential_id")
    if candidate_id is not None:
        candidate = Credential.objects.filter(pk=candidate_id, environment=job.environment).first()
    report = services.environment_check_health(environment=job.environment, context=context, candidate=candidate)
    return report.as_result()


@register_job_handler(EnvironmentJobKind.INVENTORY_SYNC)
def run_inventory_sync(job: Job, context: AuditContext) -> dict[str, Any]:
    if job.environment is None:
        raise JobFailed("no_environment", "An inventory sync needs an environment.")
    try:
        report = services.environment_sync_inventory(
            environment=job.environment,
            context=context,
            on_progress=lambda percent, message: job_progress(job, percent, message),
        )
    except services.InventorySyncFailed as failure:
        if failure.retry_after and job.attempts < MAX_SYNC_ATTEMPTS:
            raise JobDeferred(failure.retry_after, status=job.status, message=failure.message) from None
        raise JobFailed(failure.code, failure.message) from None
    return report.as_result()


@shared_task(name="environments.schedule_health_checks", ignore_result=True)
def schedule_health_checks() -> int:
    """Beat: queue a health check per active environment."""
    return services.environments_enqueue_scheduled(kind=EnvironmentJobKind.HEALTH_CHECK, context=AuditContext.system())


@shared_task(name="environments.schedule_inventory_syncs", ignore_result=True)
def schedule_inventory_syncs() -> int:
    """Beat: queue an inventory sync per active environment."""
    return services.environments_enqueue_scheduled(
        kind=EnvironmentJobKind.INVENTORY_SYNC, context=AuditContext.system()
    )
