"""Rolling back: requesting a rollback and marking what it replaced as rolled back."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction

from alm_portal.accounts import policy as account_policy
from alm_portal.accounts.models import ApiToken, User
from alm_portal.audit.context import AuditContext
from alm_portal.errors import InvalidState, ValidationFailed
from deployments import policy
from deployments import rollback as rollback_artifacts
from deployments.choices import PromotionKind, RollbackStrategy
from deployments.models import Promotion
from deployments.policy import raise_if_refused
from deployments.workflow.creation import _create
from deployments.workflow.transitions import WAITING, Status, _audit, _locked, _move, _now, _require_status

# The whole state machine logs under the one name it has always used.
logger = logging.getLogger("deployments.workflow")


def _mark_rolled_back_in_transaction(
    *, original: Promotion, rollback: Promotion, now: datetime
) -> dict[str, Any] | None:
    """succeeded → rolled_back for `original`; returns the audit after, or None if it was not succeeded."""
    if original.status != Status.SUCCEEDED:
        logger.warning(
            "rollback %s succeeded but promotion %s is %s, not succeeded", rollback.pk, original.pk, original.status
        )
        return None
    _move(original, to=Status.ROLLED_BACK, now=now, doing="rolled back", rolled_back_by=rollback)
    return {"status": Status.ROLLED_BACK, "rolled_back_by": rollback.pk, "strategy": rollback.rollback_strategy}


def _latest_succeeded(promotion: Promotion) -> Promotion | None:
    return (
        Promotion.objects.filter(
            solution_id=promotion.solution_id,
            target_environment_id=promotion.target_environment_id,
            status=Status.SUCCEEDED,
        )
        .select_related("version")
        .order_by("-finished_at", "-pk")
        .first()
    )


def rollback_request(
    *,
    promotion: Promotion,
    strategy: str,
    requested_by: User,
    context: AuditContext,
    confirm: str = "",
    comment: str = "",
    token: ApiToken | None = None,
) -> Promotion:
    """Ask to roll back `promotion` (the latest succeeded deployment of its solution on its target,
    else 409 not_latest_deployment) with `strategy`. Creates a promotion of kind rollback: exempt
    from gating, needing at least one approval from the stage's approvers. The strategies of
    policy.ADMIN_ROLLBACK_STRATEGIES need the admin scope (`token`: the API token the request came
    with, None for a page), checked here for pages and API alike; for `uninstall_reinstall`
    `confirm` must equal the solution's unique name. The version to install comes from
    deployments.rollback.rollback_artifact_for (which re-versions when needed).
    Event: promotion.requested (kind rollback)."""
    if strategy not in RollbackStrategy.values:
        raise ValidationFailed(
            "Unknown rollback strategy.",
            details={"strategy": [f"Must be one of {', '.join(RollbackStrategy.values)}."]},
        )
    raise_if_refused(policy.request_refusal(user=requested_by, solution=promotion.solution))
    account_policy.require_scope(
        user=requested_by,
        token=token,
        scope=policy.rollback_strategy_scope(strategy),
        doing=f"roll back with the strategy {strategy}",
    )
    raise_if_refused(policy.comment_refusal(comment, required=False))
    if strategy == RollbackStrategy.UNINSTALL_REINSTALL and confirm != promotion.solution.unique_name:
        raise ValidationFailed(
            "Uninstalling deletes the solution's tables and their data; confirm with its unique name.",
            details={"confirm": [f"Type {promotion.solution.unique_name} to confirm."]},
        )
    promotion.refresh_from_db()
    raise_if_refused(policy.latest_deployment_refusal(promotion=promotion, latest=_latest_succeeded(promotion)))
    _refuse_second_rollback(promotion)
    # Outside our transaction: it may store a re-versioned package (its own audited registration).
    version = rollback_artifacts.rollback_artifact_for(promotion=promotion, strategy=strategy, context=context)
    raise_if_refused(policy.artifact_refusal(version=version))
    with transaction.atomic():
        now = _now()
        original = _locked(promotion.pk)
        raise_if_refused(policy.latest_deployment_refusal(promotion=original, latest=_latest_succeeded(original)))
        _refuse_second_rollback(original)
        return _create(
            kind=PromotionKind.ROLLBACK,
            version=version,
            stage=original.stage,
            requested_by=requested_by,
            context=context,
            now=now,
            comment=comment,
            rollback_of=original,
            rollback_strategy=strategy,
        )


def _refuse_second_rollback(promotion: Promotion) -> None:
    under_way = promotion.rollbacks.filter(status__in=(*WAITING, Status.RUNNING)).first()
    if under_way is not None:
        raise InvalidState(
            f"Rollback {under_way.pk} of this promotion is already under way.",
            details={"current": promotion.status, "allowed": [Status.SUCCEEDED], "rollback": under_way.pk},
        )


def promotion_mark_rolled_back(*, promotion: Promotion, rollback: Promotion, context: AuditContext) -> Promotion:
    """succeeded → rolled_back, linked to the rollback that replaced it (promotion_mark_succeeded does
    this itself for a successful rollback; this is for callers settling it separately).
    Event: promotion.rolled_back."""
    with transaction.atomic():
        now = _now()
        original = _locked(promotion.pk)
        _require_status(original, (Status.SUCCEEDED,), "rolled back")
        if rollback.rollback_of_id != original.pk or rollback.status != Status.SUCCEEDED:
            raise InvalidState(
                "Only a succeeded rollback of this promotion rolls it back.",
                details={"current": original.status, "allowed": [Status.SUCCEEDED], "rollback": rollback.pk},
            )
        after = _mark_rolled_back_in_transaction(original=original, rollback=rollback, now=now)
        _audit(context, "promotion.rolled_back", original, before={"status": Status.SUCCEEDED}, after=after)
    return original
