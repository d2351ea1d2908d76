"""Voiding approvals: on request, for a disabled approver, and when a stage changes its target."""

from __future__ import annotations

from django.db import transaction

from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.errors import InvalidState
from deployments.choices import DeploymentJobKind
from deployments.models import Approval, Promotion, Stage
from deployments.workflow.transitions import (
    WAITING,
    Status,
    _audit,
    _cancel_job,
    _count,
    _enqueue,
    _job_ref,
    _live_approvals,
    _locked,
    _locked_many,
    _move,
    _now,
    _require_status,
    _restart_preflight,
    _touch,
    _void,
    _void_and_record,
)
from environments.models import Environment


def promotion_void_approvals(
    *, promotion: Promotion, reason: str, context: AuditContext, approver: User | None = None
) -> Promotion:
    """Void the live approvals of a waiting promotion (all, or one approver's); an approved, scheduled
    or queued promotion that no longer has enough goes back to pending_approval.
    Event: promotion.approvals_voided."""
    reason = (reason or "").strip() or "voided"
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion.pk)
        _require_status(promotion, WAITING, "have its approvals voided")
        live = [a for a in _live_approvals(promotion) if approver is None or a.approver_id == approver.pk]
        _void_and_record(promotion, approvals=live, reason=reason, now=now, context=context)
    return promotion


def approvals_void_for_user(*, user: User, context: AuditContext) -> int:
    """Void every live decision `user` gave on promotions that have not started (a disabled user's
    approvals no longer count, docs/states.md §2.3). Runs inside the caller's transaction when there is
    one (user_disable). Returns the number of promotions touched."""
    with transaction.atomic():
        now = _now()
        promotion_ids = Approval.objects.filter(
            approver=user, voided_at__isnull=True, promotion__status__in=WAITING
        ).values_list("promotion_id", flat=True)
        touched = 0
        for promotion in _locked_many(promotion_ids):
            if promotion.status not in WAITING:
                continue
            mine = [approval for approval in _live_approvals(promotion) if approval.approver_id == user.pk]
            if mine:
                _void_and_record(
                    promotion,
                    approvals=mine,
                    reason="approver disabled",
                    now=now,
                    context=context,
                    extra_after={"approver": user.pk},
                )
                touched += 1
    return touched


def promotions_retarget(*, stage: Stage, context: AuditContext) -> int:
    """The stage now targets another environment: every waiting promotion of it is bound to the new
    target, its approvals (bound to the old one) are voided and pre-flight runs again. Called by
    stage_update inside its transaction, after it locked the stage. Returns the number touched."""
    with transaction.atomic():
        now = _now()
        ids = Promotion.objects.filter(stage=stage, status__in=WAITING).values_list("pk", flat=True)
        promotions = _locked_many(ids)
        for promotion in promotions:
            if promotion.status == Status.QUEUED and not _cancel_job(
                promotion.run_job_id, context=context, reason="stage target changed"
            ):
                raise InvalidState(
                    "An import into the stage's current target is starting; change the target once it has finished.",
                    details={"current": Status.RUNNING, "allowed": [str(status) for status in WAITING]},
                )
        target = Environment.objects.get(pk=stage.target_environment_id)
        for promotion in promotions:
            old_target = promotion.target_environment_id
            promotion.target_environment = target
            fields = {"target_environment": target, **_restart_preflight(promotion, context=context)}
            if promotion.status == Status.QUEUED:
                # Its import job is cancelled above; the move back (or on) below decides what runs next.
                fields["run_job"] = None
            voided = _void(_live_approvals(promotion), now=now, reason="target changed")
            before = {"status": promotion.status, "target_environment": old_target}
            _touch(promotion, now=now, **fields)
            count = _count(promotion, now=now)
            if promotion.status in (Status.APPROVED, Status.SCHEDULED, Status.QUEUED) and not count.complete:
                _move(promotion, to=Status.PENDING_APPROVAL, now=now, doing="sent back for approval", run_job=None)
            elif promotion.status == Status.QUEUED:
                # Still approved (0 required): a fresh import job for the new target.
                job = _enqueue(DeploymentJobKind.IMPORT, promotion, context)
                _touch(promotion, now=now, run_job=job)
            _audit(
                context,
                "promotion.approvals_voided",
                promotion,
                before=before,
                after={
                    "status": promotion.status,
                    "target_environment": target.pk,
                    "approvals_voided": voided,
                    "reason": "target changed",
                    "preflight_job": _job_ref(promotion.preflight_job),
                },
            )
    return len(promotions)
