"""Queueing health checks and inventory syncs as jobs (on demand, and beat's fan-out)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from alm_portal.audit.context import AuditContext
from alm_portal.errors import InvalidState
from alm_portal.jobs.choices import ACTIVE_JOB_STATUSES, JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_enqueue
from environments.choices import EnvironmentJobKind
from environments.models import Credential, Environment


def enqueue_once(*, environment: Environment, kind: str, params: dict[str, Any], context: AuditContext) -> Job:
    """Queue a job unless an identical one is still waiting; call inside a transaction."""
    # Compared in Python: JSON equality differs between PostgreSQL and SQLite, and few jobs wait.
    for waiting in Job.objects.filter(environment=environment, kind=kind, status=JobStatus.PENDING).order_by("pk"):
        if waiting.params == params:
            return waiting
    return job_enqueue(kind=kind, environment=environment, params=params, context=context)


def environment_request_health_check(
    *, environment: Environment, context: AuditContext, candidate: Credential | None = None
) -> Job:
    """Queue a health check (trying `candidate`, a pending credential, first). A check already
    waiting for the same thing is returned instead of a second one."""
    params = {"credential_id": candidate.pk} if candidate is not None else {}
    with transaction.atomic():
        return enqueue_once(
            environment=environment, kind=EnvironmentJobKind.HEALTH_CHECK, params=params, context=context
        )


def environment_request_inventory_sync(*, environment: Environment, context: AuditContext) -> Job:
    """Queue an inventory sync of an active environment (a waiting one is returned instead)."""
    if not environment.is_active:
        raise InvalidState(
            "An inactive environment is not synced.", details={"current": "inactive", "allowed": ["active"]}
        )
    with transaction.atomic():
        return enqueue_once(environment=environment, kind=EnvironmentJobKind.INVENTORY_SYNC, params={}, context=context)


def environment_queue_first_inventory_sync(*, environment: Environment, context: AuditContext) -> Job | None:
    """Queue the first inventory sync of an environment that was never synced, unless one is already
    waiting or running; in the caller's transaction. Returns the job queued, or None."""
    if environment.inventory_synced_at is not None or not environment.is_active:
        return None
    under_way = Job.objects.filter(
        environment=environment,
        kind=EnvironmentJobKind.INVENTORY_SYNC,
        status__in=[JobStatus.PENDING, *ACTIVE_JOB_STATUSES],
    )
    if under_way.exists():
        return None
    return job_enqueue(kind=EnvironmentJobKind.INVENTORY_SYNC, environment=environment, params={}, context=context)


def environments_enqueue_scheduled(*, kind: str, context: AuditContext) -> int:
    """Beat's fan-out: one job of `kind` per active environment that has none waiting or running."""
    if kind not in (EnvironmentJobKind.HEALTH_CHECK, EnvironmentJobKind.INVENTORY_SYNC):
        raise ValueError(f"not a scheduled environment job: {kind}")
    active_ids = list(Environment.objects.filter(is_active=True).values_list("pk", flat=True))
    busy = set(
        Job.objects.filter(
            kind=kind, environment_id__in=active_ids, status__in=[JobStatus.PENDING, *ACTIVE_JOB_STATUSES]
        ).values_list("environment_id", flat=True)
    )
    queued = 0
    for environment in Environment.objects.filter(pk__in=set(active_ids) - busy).order_by("pk"):
        with transaction.atomic():
            job_enqueue(kind=kind, environment=environment, params={}, context=context)
        queued += 1
    return queued
