"""Promotion statuses and moves (docs/states.md §1), the deployment job kinds and the stage options of a pipeline."""

from django.db import models


class DeploymentJobKind(models.TextChoices):
    """The job kinds this app registers with the job engine (deployments/tasks.py)."""

    PREFLIGHT = "preflight", "Pre-flight"
    IMPORT = "import", "Import"
    UNINSTALL = "uninstall", "Uninstall"
    HOLDING_CLEANUP = "holding_cleanup", "Holding solution clean-up"


class ImportMode(models.TextChoices):
    # StageAndUpgradeAsync: removes components the new version no longer has.
    UPGRADE = "upgrade", "Upgrade (remove components the new version lacks)"
    # ImportSolutionAsync without holding: replaces content, keeps removed components.
    UPDATE = "update", "Update (keep components the new version lacks)"


class PromotionKind(models.TextChoices):
    PROMOTION = "promotion", "Promotion"
    ROLLBACK = "rollback", "Rollback"


class PromotionStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval", "Waiting for approval"
    APPROVED = "approved", "Approved"
    SCHEDULED = "scheduled", "Scheduled"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    ROLLED_BACK = "rolled_back", "Rolled back"


# A promotion in one of these is still open: it will (or may still) change its target. At most one open
# promotion of a kind per version and stage (a partial unique index, deployments.models.Promotion);
# succeeded, failed, rejected, cancelled and rolled back are closed.
OPEN_PROMOTION_STATUSES: tuple[str, ...] = (
    PromotionStatus.PENDING_APPROVAL,
    PromotionStatus.APPROVED,
    PromotionStatus.SCHEDULED,
    PromotionStatus.QUEUED,
    PromotionStatus.RUNNING,
)
# Why the portal itself cancelled a promotion (the `reason` of its promotion.cancelled event).
SUPERSEDED = "superseded"

# docs/states.md §1: the only moves a promotion may make (deployments/workflow/ enforces them).
PROMOTION_TRANSITIONS: dict[str, tuple[str, ...]] = {
    PromotionStatus.PENDING_APPROVAL: (PromotionStatus.APPROVED, PromotionStatus.REJECTED, PromotionStatus.CANCELLED),
    # `approved` is transient: the same transaction moves on to queued or scheduled.
    PromotionStatus.APPROVED: (
        PromotionStatus.QUEUED,
        PromotionStatus.SCHEDULED,
        PromotionStatus.PENDING_APPROVAL,
        PromotionStatus.CANCELLED,
    ),
    PromotionStatus.SCHEDULED: (PromotionStatus.QUEUED, PromotionStatus.PENDING_APPROVAL, PromotionStatus.CANCELLED),
    PromotionStatus.QUEUED: (
        PromotionStatus.RUNNING,
        PromotionStatus.SCHEDULED,
        PromotionStatus.PENDING_APPROVAL,
        PromotionStatus.CANCELLED,
        # The runner refuses before it starts (checksum_mismatch, preflight_blocked): nothing ran.
        PromotionStatus.FAILED,
    ),
    PromotionStatus.RUNNING: (PromotionStatus.SUCCEEDED, PromotionStatus.FAILED),
    # Retry re-checks the approvals: still valid → approved (and on), else back to waiting for them.
    PromotionStatus.FAILED: (PromotionStatus.APPROVED, PromotionStatus.PENDING_APPROVAL),
    PromotionStatus.SUCCEEDED: (PromotionStatus.ROLLED_BACK,),
    PromotionStatus.REJECTED: (),
    PromotionStatus.CANCELLED: (),
    PromotionStatus.ROLLED_BACK: (),
}


class ApprovalDecision(models.TextChoices):
    APPROVE = "approve", "Approved"
    REJECT = "reject", "Rejected"


class PreflightStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PASSED = "passed", "Passed"
    WARNINGS = "warnings", "Passed with warnings"
    BLOCKED = "blocked", "Blocked"


class RollbackStrategy(models.TextChoices):
    REVERSION_UPGRADE = "reversion_upgrade", "Re-versioned old content, imported as upgrade"
    REVERSION_UPDATE = "reversion_update", "Re-versioned old content, imported as update"
    UNINSTALL_REINSTALL = "uninstall_reinstall", "Uninstall and reinstall the old version"
    HOLDING_APPLY = "holding_apply", "Apply the stuck holding solution"
    HOLDING_REMOVE = "holding_remove", "Remove the stuck holding solution"
