"""Celery entry points of the audit log: thin wrappers around services, safe to run twice.

Beat schedule (settings.CELERY_BEAT_SCHEDULE, synced into django-celery-beat at start):

    "audit-checkpoint-hourly": {"task": "audit.checkpoint_write", "schedule": crontab(minute=5)}
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from alm_portal.audit import checkpoints, services
from alm_portal.audit.context import AuditContext


@shared_task(name="audit.checkpoint_write", ignore_result=True)
def audit_checkpoint_write() -> str:
    """Sign the current head of the chain into artifact storage; running it twice writes two checkpoints."""
    return checkpoints.write_checkpoint().name


@shared_task(name="audit.verify", ignore_result=True)
def audit_verify_run(*, context: dict[str, Any] | None = None) -> bool:
    """Full verification as background work; the `audit.verified` event it writes is the result pages show."""
    audit_context = AuditContext.from_dict(context) if context else AuditContext.worker("")
    return services.audit_verify(context=audit_context).ok
