"""The beat's release of scheduled promotions whose time has come."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from alm_portal.audit.context import AuditContext
from alm_portal.errors import InvalidState
from alm_portal.jobs.choices import JobStatus
from deployments.choices import DeploymentJobKind
from deployments.models import Approval, Promotion
from deployments.workflow.transitions import (
    Status,
    _approvals_facts,
    _audit,
    _count,
    _enqueue,
    _locked,
    _move,
    _now,
    _start_refusal,
    _void_and_record,
)


def promotions_release_scheduled(*, context: AuditContext | None = None) -> int:
    """Beat, every minute: move due scheduled promotions to queued; send those whose approvals
    expired meanwhile (scheduled, or queued with the import not yet picked up) back to
    pending_approval. Each promotion in its own short transaction. Returns how many were queued."""
    context = context or AuditContext.system()
    now = _now()
    scheduled = list(Promotion.objects.filter(status=Status.SCHEDULED).values_list("pk", flat=True))
    stale_queued = list(
        Promotion.objects.filter(
            status=Status.QUEUED,
            run_job__status=JobStatus.PENDING,
            approvals__voided_at__isnull=True,
            approvals__expires_at__lte=now,
        )
        .values_list("pk", flat=True)
        .distinct()
    )
    released = 0
    for promotion_id in [*scheduled, *stale_queued]:
        try:
            if _release_one(promotion_id, now=now, context=context):
                released += 1
        except InvalidState:
            continue  # changed meanwhile (cancelled, picked up): nothing to release
    return released


def _release_one(promotion_id: int, *, now: datetime, context: AuditContext) -> bool:
    with transaction.atomic():
        promotion = _locked(promotion_id)
        if promotion.status not in (Status.SCHEDULED, Status.QUEUED):
            return False
        count = _count(promotion, now=now)
        if not count.complete:
            expired = list(Approval.objects.filter(promotion=promotion, voided_at__isnull=True, expires_at__lte=now))
            _void_and_record(promotion, approvals=expired, reason="expired", now=now, context=context)
            return False
        if promotion.status != Status.SCHEDULED:
            return False
        refusal = _start_refusal(promotion, now=now, count=count)
        if refusal is not None:
            return False
        job = _enqueue(DeploymentJobKind.IMPORT, promotion, context)
        _move(promotion, to=Status.QUEUED, now=now, doing="queued", run_job=job)
        _audit(
            context,
            "promotion.queued",
            promotion,
            before={"status": Status.SCHEDULED},
            after={"status": Status.QUEUED, "run_job": job.pk, **_approvals_facts(count)},
        )
    return True
