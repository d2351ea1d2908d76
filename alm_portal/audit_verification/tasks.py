"""The verification job kind and its handler (registered with the job engine), and the beat task that queues it.

Beat schedule (settings.CELERY_BEAT_SCHEDULE): "audit-verify-daily": {"task": "audit.verify", "schedule": 86400.0}
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from alm_portal.audit.context import AuditContext
from alm_portal.audit_verification import services
from alm_portal.audit_verification.choices import AuditJobKind
from alm_portal.jobs.registry import register_job_handler, register_job_kind

register_job_kind(AuditJobKind.AUDIT_VERIFY)
register_job_handler(AuditJobKind.AUDIT_VERIFY)(services.audit_verification_job_run)


# The name is older than this module (beat and messages in the broker use it).
@shared_task(name="audit.verify", ignore_result=True)
def audit_verify_run(*, context: dict[str, Any] | None = None) -> int:
    """Queue a full verification as a job (beat does so daily, so the last result never grows old);
    a verification still waiting is reused, so running this twice queues one."""
    audit_context = AuditContext.from_dict(context) if context else AuditContext.system()
    return services.audit_verification_request(context=audit_context).pk
