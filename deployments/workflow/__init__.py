"""The promotion state machine (docs/states.md §1): the only code that changes Promotion.status.

Every transition is one function that
- locks the promotion row first (so two people deciding at the same instant queue up instead of
  each counting only their own approval),
- checks policy (deployments/policy.py) and raises the refusal as a domain error,
- changes the status with a conditional UPDATE that must hit exactly one row, allowed by
  PROMOTION_TRANSITIONS (anything else raises InvalidState with details {current, allowed}),
- writes one audit event with before/after in the same transaction, last,
- leaves the broker publish to on_commit, through job_enqueue.

`approved` is transient: the transaction that reaches it moves on to `queued` (an import job is
enqueued) or to `scheduled` (window closed, stage frozen, or scheduled_for later), and
promotions_release_scheduled() (beat) moves due ones on.

The runner (deployments/runner.py) reports through promotion_preflight_finished,
promotion_mark_running, promotion_mark_succeeded, promotion_mark_failed, promotion_set_attention and
promotion_requeue; it is the only caller of those.
"""

from deployments.workflow.cancel_retry import promotion_cancel, promotion_retry
from deployments.workflow.creation import promotion_request
from deployments.workflow.decisions import promotion_approve, promotion_override_freeze, promotion_reject
from deployments.workflow.rollbacks import promotion_mark_rolled_back, rollback_request
from deployments.workflow.runner_reports import (
    job_resolve,
    promotion_mark_failed,
    promotion_mark_running,
    promotion_mark_succeeded,
    promotion_preflight_finished,
    promotion_requeue,
    promotion_resolve_attention,
    promotion_set_attention,
)
from deployments.workflow.scheduling import promotions_release_scheduled
from deployments.workflow.superseding import (
    promotion_cancel_if_overtaken,
    promotion_supersede,
    promotions_supersede_duplicates,
)
from deployments.workflow.transitions import _move as _move  # tested directly
from deployments.workflow.voiding import approvals_void_for_user, promotion_void_approvals, promotions_retarget

__all__ = [
    "approvals_void_for_user",
    "job_resolve",
    "promotion_approve",
    "promotion_cancel",
    "promotion_cancel_if_overtaken",
    "promotion_mark_failed",
    "promotion_mark_rolled_back",
    "promotion_mark_running",
    "promotion_mark_succeeded",
    "promotion_override_freeze",
    "promotion_preflight_finished",
    "promotion_reject",
    "promotion_request",
    "promotion_requeue",
    "promotion_resolve_attention",
    "promotion_retry",
    "promotion_set_attention",
    "promotion_supersede",
    "promotion_void_approvals",
    "promotions_release_scheduled",
    "promotions_retarget",
    "promotions_supersede_duplicates",
    "rollback_request",
]
