"""Celery entry points of the audit log: thin wrappers around services, safe to run twice.

Beat schedule (settings.CELERY_BEAT_SCHEDULE, synced into django-celery-beat at start):

    "audit-checkpoint": {"task": "audit.checkpoint_write", "schedule": ALM_AUDIT_CHECKPOINT_SECONDS}
    "audit-denied-requests": {"task": "audit.flush_denied_requests", "schedule": ALM_DENIAL_AUDIT_WINDOW_SECONDS}

The daily full verification (task audit.verify) is queued by alm_portal/audit_verification/tasks.py.
"""

from __future__ import annotations

from celery import shared_task

from alm_portal.audit import checkpoints, denials


@shared_task(name="audit.checkpoint_write", ignore_result=True)
def audit_checkpoint_write() -> str:
    """Sign the current head of the chain into artifact storage unless the newest checkpoint already signs it
    (events that arrived during the last interval and no later); running it twice writes at most one."""
    written = checkpoints.write_checkpoint(only_if_moved=True)
    return written.name if written is not None else ""


@shared_task(name="audit.flush_denied_requests", ignore_result=True)
def audit_flush_denied_requests() -> int:
    """Audit every ended window of refused unauthenticated requests as one event per client; safe to run twice."""
    return denials.denied_requests_flush()
