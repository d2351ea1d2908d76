"""The portal cancels promotions that can only fail or do nothing: those overtaken by another deployment
of the same solution to the same target, and duplicates of an open promotion (stored before the partial
unique index one_open_promotion_per_version_and_stage existed).

Such a promotion is cancelled by the system with reason `superseded` (Event: promotion.cancelled, actor
system, after.reason "superseded" and after.superseded_by), never run: running it would fail with
already_installed or version_lower and count as a deployment failure.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from alm_portal.audit.context import AuditContext
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from deployments import policy, selectors
from deployments.choices import OPEN_PROMOTION_STATUSES, SUPERSEDED, PromotionStatus
from deployments.models import Promotion
from deployments.workflow.transitions import Status, _audit, _cancel_job, _locked, _move, _now


def _superseded_text(promotion: Promotion, by: Promotion, *, duplicate: bool) -> str:
    if duplicate:
        return (
            f"A duplicate of promotion #{by.pk} ({by.solution.unique_name} {by.version.version_key} → "
            f"{by.stage.name}, still open): the portal cancelled it; nothing ran."
        )
    left = selectors.installed_version_after(by)
    return (
        f"Overtaken by promotion #{by.pk} ({by.solution.unique_name} {by.version.version_key} → {by.stage.name}, "
        f"succeeded {by.finished_at:%Y-%m-%d %H:%M} UTC): {promotion.target_environment} has {left} since, so "
        f"this request would install nothing new. The portal cancelled it; nothing ran."
    )


def promotion_supersede(
    *, promotion_id: int, by: Promotion, duplicate: bool, context: AuditContext, own_job_id: int | None = None
) -> Promotion | None:
    """Cancel a waiting promotion as superseded by `by` (system actor, reason `superseded`).

    Returns the cancelled promotion, or None when there is nothing to cancel any more: it ended or
    started meanwhile, or its import job was already picked up by a worker other than `own_job_id` (the
    runner's own job, which ends itself). Event: promotion.cancelled.
    """
    system = AuditContext.system(request_id=context.request_id)
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion_id)
        if promotion.status not in policy.CANCELLABLE_STATUSES:
            return None
        before: dict[str, Any] = {"status": promotion.status}
        after: dict[str, Any] = {"status": Status.CANCELLED, "reason": SUPERSEDED, "superseded_by": by.pk}
        if promotion.status == Status.QUEUED and promotion.run_job_id not in (None, own_job_id):
            if not _cancel_job(promotion.run_job_id, context=system, reason="promotion superseded"):
                return None
            after["run_job_cancelled"] = promotion.run_job_id
        _cancel_job(promotion.preflight_job_id, context=system, reason="promotion superseded")
        text = _superseded_text(promotion, by, duplicate=duplicate)
        _move(
            promotion,
            to=Status.CANCELLED,
            now=now,
            doing="cancelled",
            finished_at=now,
            error_code=SUPERSEDED,
            error_message=text,
        )
        after["comment"] = text
        _audit(system, "promotion.cancelled", promotion, before=before, after=after)
    return promotion


def promotion_cancel_if_overtaken(
    *, promotion: Promotion, context: AuditContext, own_job_id: int | None = None
) -> Promotion | None:
    """Pre-flight, approval and the runner ask this before anything else: when a deployment that
    succeeded after `promotion` was requested already left its version (or a higher one) on the target,
    cancel it as superseded and return the deployment that overtook it; None otherwise (also when it
    could not be cancelled any more)."""
    if promotion.status not in policy.CANCELLABLE_STATUSES:
        return None
    overtaken_by = selectors.promotion_overtaken_by(promotion=promotion)
    if overtaken_by is None:
        return None
    cancelled = promotion_supersede(
        promotion_id=promotion.pk, by=overtaken_by, duplicate=False, context=context, own_job_id=own_job_id
    )
    return overtaken_by if cancelled is not None else None


_KEEP_ORDER: dict[str, int] = {
    PromotionStatus.RUNNING: 0,
    PromotionStatus.QUEUED: 2,
    PromotionStatus.SCHEDULED: 3,
    PromotionStatus.APPROVED: 4,
    PromotionStatus.PENDING_APPROVAL: 5,
}


def _keep_rank(promotion: Promotion, claimed_jobs: set[int]) -> tuple[int, Any, int]:
    """Which of a group of duplicates stays open: the one furthest along (a queued one whose import a
    worker holds is as good as running), then the first requested."""
    rank = _KEEP_ORDER[promotion.status]
    if promotion.status == Status.QUEUED and promotion.run_job_id in claimed_jobs:
        rank = 1
    return (rank, promotion.requested_at, promotion.pk)


def promotions_supersede_duplicates(*, context: AuditContext) -> list[int]:
    """Cancel every open promotion that duplicates another open one (same kind, version and stage),
    keeping the one furthest along; returns the ids cancelled. Each is cancelled through
    promotion_supersede, with its own audit event. Runs before the partial unique index is created
    (deployments migration 0007), and is safe to run again (nothing left to cancel)."""
    rows = list(
        Promotion.objects.filter(status__in=OPEN_PROMOTION_STATUSES)
        .select_related("solution", "version", "stage", "target_environment", "requested_by")
        .order_by("pk")
    )
    groups: dict[tuple[str, int, int], list[Promotion]] = {}
    for row in rows:
        groups.setdefault((row.kind, row.version_id, row.stage_id), []).append(row)
    duplicated = [members for members in groups.values() if len(members) > 1]
    if not duplicated:
        return []
    run_jobs = [member.run_job_id for members in duplicated for member in members if member.run_job_id]
    claimed = set(
        Job.objects.filter(pk__in=run_jobs)
        .exclude(status__in=(JobStatus.PENDING, JobStatus.CANCELLED))
        .values_list("pk", flat=True)
    )
    cancelled: list[int] = []
    for members in duplicated:
        keep, *others = sorted(members, key=lambda member: _keep_rank(member, claimed))
        for other in others:
            if promotion_supersede(promotion_id=other.pk, by=keep, duplicate=True, context=context) is not None:
                cancelled.append(other.pk)
    return cancelled
