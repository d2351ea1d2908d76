"""Celery entry points of the Idempotency-Key store: thin wrappers around services, safe to run twice.

Beat schedule (settings.CELERY_BEAT_SCHEDULE):

    "idempotency-purge-expired": {"task": "idempotency.purge_expired", "schedule": 3600.0}
"""

from __future__ import annotations

from celery import shared_task

from alm_portal.idempotency.services import idempotency_purge_expired


@shared_task(name="idempotency.purge_expired", ignore_result=True)
def idempotency_purge_expired_run() -> int:
    """Remove every expired Idempotency-Key record; returns how many went."""
    return idempotency_purge_expired()
