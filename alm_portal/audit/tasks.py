"""Celery entry points of the audit log: thin wrappers around services, safe to run twice.

Beat schedule (settings.CELERY_BEAT_SCHEDULE, synced into django-celery-beat at start):

    "audit-checkpoint": {"task": "audit.checkpoint_write", "schedule": ALM_AUDIT_CHECKPOINT_SECONDS}
    "audit-verify-daily": {"task": "audit.verify", "schedule": 86400.0}
    "audit-denied-requests": {"task": "audit.flush_denied_requests", "schedule": ALM_DENIAL_AUDIT_WINDOW_SECONDS}
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from alm_portal.audit import checkpoints, denials, verification
from alm_portal.audit.choices import AuditJobKind
from alm_portal.audit.context import AuditContext
from alm_portal.jobs.registry import register_job_handler, register_job_kind

register_job_kind(AuditJobKind.AUDIT_VERIFY)
register_job_handler(AuditJobKind.AUDIT_VERIFY)(verification.audit_verification_job_run)


@shared_task(name="audit.checkpoint_write", ignore_result=True)
def audit_checkpoint_write() -> str:
    """Sign the current head of the chain into artifact storage unless the newest checkpoint already signs it
    (events that arrived during the last interval and no later); running it twice writes at most one."""
    written = checkpoints.write_checkpoint(only_if_moved=True)
    return written.name if written is not None else ""


@shared_task(name="audit.verify", ignore_result=True)
def audit_verify_run(*, context: dict[str, Any] | None = None) -> int:
    """Queue a full verification as a job (beat does so daily, so the last result never grows old);
    a verification still waiting is reused, so running this twice queues one."""
    audit_context = AuditContext.from_dict(context) if context else AuditContext.system()
    return verification.audit_verification_request(context=audit_context).pk


@shared_task(name="audit.flush_denied_requests", ignore_result=True)
def audit_flush_denied_requests() -> int:
    """Audit every ended window of refused unauthenticated requests as one event per client; safe to run twice."""
    return denials.denied_requests_flush()
