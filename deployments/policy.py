"""Who may do what to a promotion, and when it may start (docs/states.md §1 and docs/roles.md).

Every rule is a pure function of the objects it is given and an explicit time: it returns a Refusal
(a stable code and a sentence for people) or None. The rules never write and never read the clock,
so the workflow decides what to do with a refusal (raise it, or schedule instead of starting) and
tests can put any "now" in. Role and team basics live in alm_portal/accounts/policy.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings

from alm_portal.accounts import policy as account_policy
from alm_portal.accounts.choices import Scope
from alm_portal.errors import Conflict, DomainError, InvalidState, PermissionRefused, ValidationFailed
from deployments.choices import ApprovalDecision, PreflightStatus, PromotionKind, PromotionStatus, RollbackStrategy
from environments.choices import EnvironmentKind
from solutions.choices import SourceKind

if TYPE_CHECKING:
    from alm_portal.accounts.models import User
    from deployments.models import Approval, Promotion, Stage, StageFreeze, StageWindow
    from solutions.models import Solution, SolutionVersion

# Statuses in which a promotion still waits to run: approvals on them are "pending" approvals.
WAITING_STATUSES: tuple[str, ...] = (
    PromotionStatus.PENDING_APPROVAL,
    PromotionStatus.APPROVED,
    PromotionStatus.SCHEDULED,
    PromotionStatus.QUEUED,
)
CANCELLABLE_STATUSES = WAITING_STATUSES
COMMENT_MAX_LENGTH = 2000
# The columns these land in (Promotion.change_reference, Promotion.backup_reference).
CHANGE_REFERENCE_MAX_LENGTH = 100
BACKUP_REFERENCE_MAX_LENGTH = 300

# How each refusal code is answered (docs/api.md). Codes not listed here are 400s.
_ERROR_CLASS_BY_CODE: dict[str, type[DomainError]] = {
    "permission_denied": PermissionRefused,
    "self_approval_forbidden": PermissionRefused,
    "uploader_approval_forbidden": PermissionRefused,
    "invalid_state": InvalidState,
    "already_decided": Conflict,
    "artifact_missing": Conflict,
    "preflight_pending": Conflict,
    "preflight_blocked": Conflict,
    "not_latest_deployment": Conflict,
    "previous_stage_not_succeeded": Conflict,
    "not_frozen": Conflict,
    "duplicate_request": Conflict,
    "source_policy": Conflict,
}


@dataclass(frozen=True)
class Refusal:
    """Why something is not allowed: a stable code, a sentence for people, and optional details."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def error(self) -> DomainError:
        """The domain error that answers this refusal (403, 409 or 400 by code)."""
        error_class = _ERROR_CLASS_BY_CODE.get(self.code, ValidationFailed)
        return error_class(self.message, code=self.code, details=self.details)


def raise_if_refused(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise refusal.error()


def promotion_reference(promotion: Promotion) -> dict[str, Any]:
    """How a refusal names another promotion: enough to find it and to say what it is."""
    return {
        "id": promotion.pk,
        "kind": promotion.kind,
        "status": promotion.status,
        "solution": promotion.solution.unique_name,
        "version": promotion.version.version_key,
        "stage": promotion.stage.name,
        "requested_by": promotion.requested_by.username,
        "requested_at": promotion.requested_at.isoformat(),
        "url": f"/deploy/promotions/{promotion.pk}/",
    }


def duplicate_refusal(*, existing: Promotion | None) -> Refusal | None:
    """409 duplicate_request when the same version already has an open promotion of the same kind into
    the same stage (Back + resubmit, a POST sent twice): the second would only fail or do nothing."""
    if existing is None:
        return None
    what = "rollback" if existing.kind == PromotionKind.ROLLBACK else "promotion"
    return Refusal(
        "duplicate_request",
        f"{existing.solution.unique_name} {existing.version.version_key} → {existing.stage.name} already has an "
        f"open {what}: #{existing.pk}, {existing.get_status_display().lower()}, requested by "
        f"{existing.requested_by.shown_name} at {existing.requested_at:%Y-%m-%d %H:%M} UTC. "
        f"Follow that one instead of requesting it again.",
        details={"existing": promotion_reference(existing)},
    )


def approval_ttl() -> timedelta:
    """How long an approval stays valid (settings.ALM_APPROVAL_TTL_DAYS, default 30 days)."""
    return timedelta(days=settings.ALM_APPROVAL_TTL_DAYS)


# --- people -----------------------------------------------------------------------------------------


def _is_team_member(user: User, team_id: int) -> bool:
    return user.memberships.filter(team_id=team_id).exists()


def _named_on_stage(user: User, stage: Stage) -> bool:
    """A stage names its approvers directly or through teams."""
    if stage.approver_users.filter(pk=user.pk).exists():
        return True
    return stage.approver_teams.filter(memberships__user=user).exists()


def request_refusal(*, user: User, solution: Solution) -> Refusal | None:
    """Makers, approvers and admins request promotions; makers and approvers only for their team's
    solutions (admins administer everything); auditors never change anything."""
    if not user.is_active:
        return Refusal("permission_denied", "Your account is disabled.")
    if not account_policy.changes_anything(user):
        return Refusal("permission_denied", "Auditors read everything and change nothing.")
    if account_policy.is_admin(user):
        return None
    if account_policy.works_for_own_teams(user) and _is_team_member(user, solution.team_id):
        return None
    return Refusal("permission_denied", f"Only members of {solution.team} may request promotions of {solution}.")


def decision_refusal(*, user: User, promotion: Promotion) -> Refusal | None:
    """Who may approve or reject: approvers and admins named on the stage (directly or through a team),
    never the requester, never the uploader of the artifact."""
    if not user.is_active:
        return Refusal("permission_denied", "Your account is disabled.")
    # Admins administer everything but approve only where a stage names them (docs/roles.md).
    if not account_policy.decides_promotions(user) or not _named_on_stage(user, promotion.stage):
        return Refusal("permission_denied", f"You are not named as an approver of the stage {promotion.stage.name!r}.")
    return four_eyes_refusal(user=user, promotion=promotion)


def four_eyes_refusal(*, user: User, promotion: Promotion) -> Refusal | None:
    """The requester and the uploader of the managed artifact never decide on the promotion."""
    if promotion.requested_by_id == user.pk:
        return Refusal("self_approval_forbidden", "You requested this promotion; someone else must approve it.")
    if promotion.version.managed_uploaded_by_id == user.pk:
        return Refusal(
            "uploader_approval_forbidden", "You uploaded this version's managed artifact; someone else must approve it."
        )
    return None


def already_decided_refusal(*, user: User, live_approvals: Iterable[Approval]) -> Refusal | None:
    """Approvals come from distinct people: one live decision per person per promotion."""
    for approval in live_approvals:
        if approval.approver_id == user.pk:
            return Refusal(
                "already_decided",
                "You have already decided on this promotion.",
                details={"decision": approval.decision, "decided_at": approval.decided_at},
            )
    return None


def preflight_refusal(*, promotion: Promotion) -> Refusal | None:
    """Approve only what pre-flight has looked at, and never what it found a blocker in."""
    if promotion.preflight_status == PreflightStatus.PENDING:
        return Refusal("preflight_pending", "Pre-flight checks have not finished yet; approve once they have.")
    if promotion.preflight_status == PreflightStatus.BLOCKED:
        return Refusal(
            "preflight_blocked",
            "Pre-flight found a blocker; this promotion cannot be approved.",
            details={"checks": promotion.preflight_result.get("checks", [])},
        )
    return None


def requester_or_admin_refusal(*, user: User, promotion: Promotion, action: str) -> Refusal | None:
    """Cancel and retry belong to the requester and to admins."""
    if not account_policy.changes_anything(user):
        return Refusal("permission_denied", f"You may not {action} promotions.")
    if user.pk == promotion.requested_by_id or account_policy.is_admin(user):
        return None
    return Refusal("permission_denied", f"Only the requester or an admin may {action} this promotion.")


def admin_refusal(*, user: User, action: str) -> Refusal | None:
    if account_policy.is_admin(user):
        return None
    return Refusal("permission_denied", f"Only an admin may {action}.")


# Rollback strategies only an admin may choose: uninstalling deletes the solution's tables with their data,
# and finishing (DeleteAndPromote) or removing a holding solution changes the target beyond the version the
# promotion installed. They need the `admin` scope: an admin's session, or an admin's token holding it.
ADMIN_ROLLBACK_STRATEGIES: frozenset[str] = frozenset(
    {RollbackStrategy.UNINSTALL_REINSTALL, RollbackStrategy.HOLDING_APPLY, RollbackStrategy.HOLDING_REMOVE}
)


def rollback_strategy_scope(strategy: str) -> str:
    """The scope a caller needs to request a rollback with `strategy` (the request scope for the rest)."""
    return Scope.ADMIN if strategy in ADMIN_ROLLBACK_STRATEGIES else Scope.REQUEST


def freeze_override_refusal(*, user: User, promotion: Promotion) -> Refusal | None:
    """A freeze override is an admin's extra approval: admin only, and the four-eyes rules still apply."""
    return admin_refusal(user=user, action="override a freeze") or four_eyes_refusal(user=user, promotion=promotion)


def comment_refusal(comment: str, *, field_name: str = "comment", required: bool = True) -> Refusal | None:
    text = (comment or "").strip()
    if required and not text:
        return Refusal("validation_error", "A comment is required.", details={field_name: ["This field is required."]})
    if len(text) > COMMENT_MAX_LENGTH:
        return Refusal(
            "validation_error",
            f"The comment is longer than {COMMENT_MAX_LENGTH} characters.",
            details={field_name: [f"At most {COMMENT_MAX_LENGTH} characters."]},
        )
    return None


# --- what may be promoted where -----------------------------------------------------------------


def artifact_refusal(*, version: SolutionVersion) -> Refusal | None:
    """Only a stored managed artifact is promoted: approvals bind to its SHA-256."""
    if not version.managed_sha256:
        return Refusal(
            "artifact_missing",
            f"{version} has no stored managed artifact; upload or export the managed package first.",
            details={"flavour": "managed"},
        )
    return None


def stage_membership_refusal(*, solution: Solution, stage: Stage) -> Refusal | None:
    if solution.pipeline_id is None or stage.pipeline_id != solution.pipeline_id:
        return Refusal(
            "stage_not_in_pipeline",
            f"The stage {stage.name!r} is not part of the pipeline of {solution}.",
            details={"stage": [f"Not a stage of {solution}'s pipeline."]},
        )
    return None


def gating_refusal(
    *, kind: str, stage: Stage, previous_stage: Stage | None, succeeded_in_previous: bool
) -> Refusal | None:
    """The same version must have succeeded in the previous stage first, unless the stage says no;
    rollbacks are never gated (they restore what the target had)."""
    if kind == PromotionKind.ROLLBACK or not stage.requires_previous_stage or previous_stage is None:
        return None
    if succeeded_in_previous:
        return None
    return Refusal(
        "previous_stage_not_succeeded",
        f"This version has not yet been deployed successfully to the previous stage {previous_stage.name!r}.",
        details={"previous_stage": {"id": previous_stage.pk, "name": previous_stage.name}},
    )


def source_branch_refusal(
    *, stage: Stage, version: SolutionVersion, on_branch: bool | None, unverified: str = ""
) -> Refusal | None:
    """A stage with `require_source_branch` takes only versions built from a commit on that branch.

    `on_branch` is what the repository said about the version's source commit; None when it was not asked
    (the version was not built from source) or could not answer (`unverified` says why): never a yes.
    """
    branch = stage.require_source_branch
    if not branch:
        return None
    details: dict[str, Any] = {
        "branch": branch,
        "source_kind": version.source_kind,
        "repository_url": version.source_repository_url,
        "commit": version.source_commit,
    }
    rule = f"The stage {stage.name!r} accepts only versions built from a commit on the branch {branch!r}"
    if version.source_kind != SourceKind.BUILT or not version.source_commit:
        return Refusal(
            "source_policy",
            f"{rule}; {version} was not built from source (source kind {version.source_kind!r}).",
            details=details,
        )
    if on_branch is None:
        return Refusal(
            "source_policy",
            f"{rule}; whether commit {version.source_commit[:12]} is on it could not be verified: {unverified}",
            details={**details, "reason": unverified},
        )
    if not on_branch:
        return Refusal(
            "source_policy",
            f"{rule}; commit {version.source_commit[:12]} of {version} is not on {branch!r} in "
            f"{version.source_repository_url}.",
            details=details,
        )
    return None


def references_refusal(*, stage: Stage, change_reference: str, backup_reference: str) -> Refusal | None:
    """A change reference (matching the stage's pattern) and a backup reference when the stage asks."""
    errors: dict[str, list[str]] = {}
    change_reference = (change_reference or "").strip()
    backup_reference = (backup_reference or "").strip()
    if stage.change_reference_required and not change_reference:
        errors["change_reference"] = [f"The stage {stage.name!r} requires a change reference."]
    elif (
        change_reference
        and stage.change_reference_pattern
        and not re.fullmatch(stage.change_reference_pattern, change_reference)
    ):
        errors["change_reference"] = [f"Must match the pattern {stage.change_reference_pattern}."]
    if len(change_reference) > CHANGE_REFERENCE_MAX_LENGTH:
        errors["change_reference"] = [f"At most {CHANGE_REFERENCE_MAX_LENGTH} characters."]
    if stage.backup_reference_required and not backup_reference:
        errors["backup_reference"] = [f"The stage {stage.name!r} requires a pre-deployment backup reference."]
    if len(backup_reference) > BACKUP_REFERENCE_MAX_LENGTH:
        errors["backup_reference"] = [f"At most {BACKUP_REFERENCE_MAX_LENGTH} characters."]
    if errors:
        return Refusal("validation_error", "The promotion request is not valid.", details=errors)
    return None


def latest_deployment_refusal(*, promotion: Promotion, latest: Promotion | None) -> Refusal | None:
    """Rollback only the latest succeeded deployment of the solution on that target."""
    if promotion.status != PromotionStatus.SUCCEEDED or latest is None or latest.pk != promotion.pk:
        return Refusal(
            "not_latest_deployment",
            "Only the latest successful deployment of a solution to an environment can be rolled back.",
            details={"latest": ({"id": latest.pk, "version": latest.version.version} if latest else None)},
        )
    return None


# --- approvals ---------------------------------------------------------------------------------------


def approvals_required(*, promotion: Promotion) -> int:
    """The stage's count; a rollback needs at least one approval even where the stage needs none, and so
    does anything into a production environment unless the stage explicitly allows none (a stage saved
    before its environment became production, or before the rule, does not slip through)."""
    stage = promotion.stage
    required = stage.required_approvals
    if promotion.kind == PromotionKind.ROLLBACK:
        return max(1, required)
    # The environment is read only for a stage that needs no approval (no query for all the others).
    if (
        required == 0
        and not stage.production_without_approval
        and promotion.target_environment.kind == EnvironmentKind.PRODUCTION
    ):
        return 1
    return required


def approval_is_valid(approval: Approval, *, promotion: Promotion, at: datetime) -> bool:
    """Live, an approval, unexpired, and bound to the promotion's current artifact and target."""
    return (
        approval.voided_at is None
        and approval.decision == ApprovalDecision.APPROVE
        and approval.expires_at > at
        and approval.artifact_sha256 == promotion.artifact_sha256
        and approval.target_environment_id == promotion.target_environment_id
    )


@dataclass(frozen=True)
class ApprovalCount:
    """The valid approvals of a promotion, ordinary ones and freeze overrides apart."""

    ordinary: tuple[int, ...]
    freeze_overrides: tuple[int, ...]
    required: int

    @property
    def complete(self) -> bool:
        return len(self.ordinary) >= self.required

    @property
    def freeze_overridden(self) -> bool:
        return bool(self.freeze_overrides)


def approvals_count(*, promotion: Promotion, approvals: Iterable[Approval], at: datetime) -> ApprovalCount:
    """Count distinct valid approvers; a freeze override is one extra approval, not one of the N."""
    ordinary: dict[int, None] = {}
    overrides: dict[int, None] = {}
    for approval in approvals:
        if approval_is_valid(approval, promotion=promotion, at=at):
            (overrides if approval.freeze_override else ordinary)[approval.approver_id] = None
    return ApprovalCount(
        ordinary=tuple(ordinary), freeze_overrides=tuple(overrides), required=approvals_required(promotion=promotion)
    )


# --- windows and freezes ---------------------------------------------------------------------------


def zone_of(window: StageWindow) -> ZoneInfo:
    try:
        return ZoneInfo(window.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        # Saved windows were validated; a zone that disappeared from tzdata must not open a window.
        return ZoneInfo("UTC")


def _previous_weekday(weekday: int) -> int:
    return 7 if weekday == 1 else weekday - 1


def window_is_open(window: StageWindow, *, at: datetime) -> bool:
    """Whether `at` falls in the weekly window, read on the window's own wall clock.

    A window whose end is not after its start crosses midnight: it opens on each listed day at the
    start time and closes on the next day at the end time (start == end means 24 hours).
    """
    local = at.astimezone(zone_of(window))
    weekday, clock = local.isoweekday(), local.time().replace(tzinfo=None)
    days = set(window.weekdays)
    if window.start_time < window.end_time:
        return weekday in days and window.start_time <= clock < window.end_time
    started_today = weekday in days and clock >= window.start_time
    started_yesterday = _previous_weekday(weekday) in days and clock < window.end_time
    return started_today or started_yesterday


def windows_open(windows: Sequence[StageWindow], *, at: datetime) -> bool:
    """A stage without windows is always open; otherwise any one of its windows will do."""
    return not windows or any(window_is_open(window, at=at) for window in windows)


def _local_start(day: date, start: time, zone: ZoneInfo) -> datetime:
    # fold=0: in a DST gap or overlap the first reading is used; the next open check decides anyway.
    return datetime.combine(day, start, tzinfo=zone)


def next_window_opening(windows: Sequence[StageWindow], *, after: datetime) -> datetime | None:
    """When the stage's windows next allow a start: `after` itself if one is open, else the earliest
    upcoming opening (None for windows that name no day)."""
    if windows_open(windows, at=after):
        return after
    candidates = []
    for window in windows:
        zone = zone_of(window)
        today = after.astimezone(zone).date()
        for offset in range(8):
            day = today + timedelta(days=offset)
            if day.isoweekday() in window.weekdays:
                opening = _local_start(day, window.start_time, zone)
                if opening > after:
                    candidates.append(opening)
                    break
    return min(candidates) if candidates else None


def active_freeze(freezes: Iterable[StageFreeze], *, at: datetime) -> StageFreeze | None:
    for freeze in freezes:
        if freeze.starts_at <= at < freeze.ends_at:
            return freeze
    return None


def start_refusal(
    *,
    windows: Sequence[StageWindow],
    freezes: Iterable[StageFreeze],
    scheduled_for: datetime | None,
    freeze_overridden: bool,
    at: datetime,
) -> Refusal | None:
    """Why an approved promotion may not start at `at` (it is scheduled instead), or None.

    Checked when approvals complete, when a scheduled promotion is due, and by the runner just
    before it starts an import.
    """
    if scheduled_for is not None and scheduled_for > at:
        return Refusal("scheduled_later", "The requester scheduled this promotion for later.")
    freeze = active_freeze(freezes, at=at)
    if freeze is not None and not freeze_overridden:
        return Refusal(
            "stage_frozen",
            f"The stage is frozen until {freeze.ends_at:%Y-%m-%d %H:%M} UTC: {freeze.reason}",
            details={"freeze": {"id": freeze.pk, "ends_at": freeze.ends_at, "reason": freeze.reason}},
        )
    if not windows_open(windows, at=at):
        return Refusal("window_closed", "The stage's deployment window is closed.")
    return None
