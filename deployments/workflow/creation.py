"""Creating a promotion: checks, the row, the first pre-flight (Event: promotion.requested)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.errors import ValidationFailed
from deployments import policy, selectors
from deployments.choices import PromotionKind
from deployments.models import Promotion, Stage
from deployments.policy import raise_if_refused
from deployments.source import source_policy_refusal
from deployments.workflow.transitions import (
    Status,
    _advance_approved,
    _advance_facts,
    _approvals_facts,
    _audit,
    _count,
    _current_settings,
    _job_ref,
    _move,
    _now,
    _restart_preflight,
    _touch,
)
from solutions.models import SolutionVersion


def _previous_stage(stage: Stage) -> Stage | None:
    return Stage.objects.filter(pipeline_id=stage.pipeline_id, order__lt=stage.order).order_by("-order").first()


def _succeeded_in(version: SolutionVersion, stage: Stage | None) -> bool:
    if stage is None:
        return False
    return Promotion.objects.filter(version=version, stage=stage, status=Status.SUCCEEDED).exists()


def _checked_schedule(scheduled_for: datetime | None, *, now: datetime) -> datetime | None:
    if scheduled_for is None:
        return None
    if timezone.is_naive(scheduled_for):
        raise ValidationFailed(
            "scheduled_for needs a time zone.", details={"scheduled_for": ["Give the time with a UTC offset."]}
        )
    if scheduled_for <= now:
        raise ValidationFailed("scheduled_for is in the past.", details={"scheduled_for": ["Must be in the future."]})
    return scheduled_for


def _is_duplicate(exc: IntegrityError) -> bool:
    # PostgreSQL names the index; SQLite names the columns of the unique index instead.
    text = str(exc)
    return "one_open_promotion_per_version_and_stage" in text or (
        "deployments_promotion.kind" in text and "deployments_promotion.stage_id" in text
    )


@contextmanager
def duplicate_refused(*, kind: str, version_id: int, stage_id: int, exclude_id: int | None = None) -> Iterator[None]:
    """Turn a violation of one_open_promotion_per_version_and_stage inside the block into 409
    duplicate_request naming the open promotion; the block runs in its own savepoint."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        if not _is_duplicate(exc):
            raise
        existing = selectors.open_duplicate_of(
            kind=kind, version_id=version_id, stage_id=stage_id, exclude_id=exclude_id
        )
        raise_if_refused(policy.duplicate_refusal(existing=existing))
        raise


def _create(
    *,
    kind: str,
    version: SolutionVersion,
    stage: Stage,
    requested_by: User,
    context: AuditContext,
    now: datetime,
    comment: str = "",
    change_reference: str = "",
    backup_reference: str = "",
    scheduled_for: datetime | None = None,
    rollback_of: Promotion | None = None,
    rollback_strategy: str = "",
) -> Promotion:
    """Create a promotion waiting for approval, start its pre-flight and audit it; in the caller's
    transaction. With 0 approvals required it moves on at once (actor system). A request that loses
    the race with an identical one is refused with duplicate_request (the partial unique index)."""
    with duplicate_refused(kind=kind, version_id=version.pk, stage_id=stage.pk):
        promotion = Promotion.objects.create(
            kind=kind,
            status=Status.PENDING_APPROVAL,
            solution=version.solution,
            version=version,
            stage=stage,
            target_environment=stage.target_environment,
            artifact_sha256=version.managed_sha256,
            requested_by=requested_by,
            requested_at=now,
            comment=comment.strip(),
            change_reference=change_reference.strip(),
            backup_reference=backup_reference.strip(),
            scheduled_for=scheduled_for,
            settings_version=_current_settings(stage),
            attempt=1,
            rollback_of=rollback_of,
            rollback_strategy=rollback_strategy,
            updated_at=now,
        )
    _touch(promotion, now=now, **_restart_preflight(promotion, context=context))
    after: dict[str, Any] = {
        "status": promotion.status,
        "kind": kind,
        "version": version.version,
        "stage": stage.name,
        "target_environment": promotion.target_environment_id,
        "artifact_sha256": promotion.artifact_sha256,
        "settings_version": promotion.settings_version.version if promotion.settings_version else None,
        "preflight_job": _job_ref(promotion.preflight_job),
        "required_approvals": policy.approvals_required(promotion=promotion),
    }
    for name in ("change_reference", "backup_reference", "comment"):
        if getattr(promotion, name):
            after[name] = getattr(promotion, name)
    if scheduled_for is not None:
        after["scheduled_for"] = scheduled_for
    if rollback_of is not None:
        after.update(rollback_of=rollback_of.pk, rollback_strategy=rollback_strategy)
    _audit(context, "promotion.requested", promotion, after=after)

    count = _count(promotion, now=now, approvals=[])
    if count.complete:
        # Nobody has to approve: the portal approves, so the record says who did (nobody, by rule).
        system = AuditContext.system(request_id=context.request_id)
        _move(promotion, to=Status.APPROVED, now=now, doing="approved")
        advance = _advance_approved(promotion, now=now, context=system)
        _audit(
            system,
            "promotion.auto_approved",
            promotion,
            before={"status": Status.PENDING_APPROVAL},
            after={**_advance_facts(advance), **_approvals_facts(count)},
        )
    return promotion


def promotion_request(
    *,
    version: SolutionVersion,
    stage: Stage,
    requested_by: User,
    context: AuditContext,
    comment: str = "",
    change_reference: str = "",
    backup_reference: str = "",
    scheduled_for: datetime | None = None,
) -> Promotion:
    """Ask for `version` to be installed into `stage`'s environment.

    Refused unless the requester may act on the solution (403 permission_denied), the stage belongs
    to the solution's pipeline (400 stage_not_in_pipeline), the version has no open promotion into the
    stage already (409 duplicate_request, details.existing naming it), a managed artifact is stored (409
    artifact_missing), the stage's reference rules hold (400 validation_error), the version
    succeeded in the previous stage (409 previous_stage_not_succeeded, unless the stage says no) and, on a
    stage with `require_source_branch`, was built from a commit on that branch (409 source_policy).
    Creates the promotion waiting for approval, snapshots the stage's deployment settings and
    enqueues a pre-flight job; with 0 required approvals the portal approves it at once.
    """
    solution = version.solution
    raise_if_refused(policy.request_refusal(user=requested_by, solution=solution))
    raise_if_refused(policy.stage_membership_refusal(solution=solution, stage=stage))
    raise_if_refused(
        policy.duplicate_refusal(
            existing=selectors.open_duplicate_of(kind=PromotionKind.PROMOTION, version_id=version.pk, stage_id=stage.pk)
        )
    )
    raise_if_refused(policy.artifact_refusal(version=version))
    raise_if_refused(policy.comment_refusal(comment, required=False))
    raise_if_refused(
        policy.references_refusal(stage=stage, change_reference=change_reference, backup_reference=backup_reference)
    )
    now = _now()
    scheduled_for = _checked_schedule(scheduled_for, now=now)
    previous = _previous_stage(stage)
    raise_if_refused(
        policy.gating_refusal(
            kind=PromotionKind.PROMOTION,
            stage=stage,
            previous_stage=previous,
            succeeded_in_previous=_succeeded_in(version, previous),
        )
    )
    # Asks the repository when the stage has the rule: outside the transaction, no row is locked meanwhile.
    raise_if_refused(source_policy_refusal(stage=stage, version=version))
    with transaction.atomic():
        return _create(
            kind=PromotionKind.PROMOTION,
            version=version,
            stage=stage,
            requested_by=requested_by,
            context=context,
            now=now,
            comment=comment,
            change_reference=change_reference,
            backup_reference=backup_reference,
            scheduled_for=scheduled_for,
        )
