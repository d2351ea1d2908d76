"""The promotion actions as both doors call them: the detail page's buttons and the API's actions name
the same function here, so a page and the API cannot drift apart (the state machine itself, with its
policy checks and audit events: deployments/workflow)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from deployments import workflow

if TYPE_CHECKING:
    from alm_portal.accounts.models import ApiToken, User
    from alm_portal.audit.context import AuditContext
    from deployments.models import Promotion

PromotionAction = Literal["approve", "reject", "cancel", "retry"]

PROMOTION_ACTIONS: dict[str, Callable[..., Promotion]] = {
    "approve": workflow.promotion_approve,
    "reject": workflow.promotion_reject,
    "cancel": workflow.promotion_cancel,
    "retry": workflow.promotion_retry,
}


def promotion_act(
    *, action: PromotionAction, promotion: Promotion, user: User, comment: str, context: AuditContext
) -> Promotion:
    """Approve, reject, cancel or retry `promotion` as `user`, with the comment sent along. Refusals are
    the workflow's DomainErrors (docs/api.md), answered by each door through alm_portal/refusals.py."""
    return PROMOTION_ACTIONS[action](promotion=promotion, user=user, comment=comment, context=context)


def promotion_approve_as_asked(
    *,
    promotion: Promotion,
    user: User,
    context: AuditContext,
    comment: str = "",
    override_freeze: bool = False,
    reason: str = "",
    token: ApiToken | None = None,
) -> Promotion:
    """An approval as the caller asked for it: an ordinary one, or (`override_freeze`, with a reason) an
    admin's freeze override, one extra approval that lets the promotion start during a freeze (the
    admin scope is checked against `token`, None for a session)."""
    if override_freeze:
        return workflow.promotion_override_freeze(
            promotion=promotion, user=user, reason=reason, context=context, token=token
        )
    return promotion_act(action="approve", promotion=promotion, user=user, comment=comment, context=context)
