"""Job kinds and statuses (DESIGN section 4) and the stage options of a pipeline."""

from django.db import models


class JobKind(models.TextChoices):
    EXPORT = "export", "Export"
    PREFLIGHT = "preflight", "Pre-flight"
    IMPORT = "import", "Import"
    UNINSTALL = "uninstall", "Uninstall"
    INVENTORY_SYNC = "inventory_sync", "Inventory sync"
    HEALTH_CHECK = "health_check", "Health check"
    HOLDING_CLEANUP = "holding_cleanup", "Holding solution clean-up"
    # Not a Dataverse operation: a full verification of the audit chain, queued from the API or pages.
    AUDIT_VERIFY = "audit_verify", "Audit chain verification"


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CLAIMED = "claimed", "Claimed"
    SUBMITTING = "submitting", "Submitting"
    POLLING = "polling", "Polling"
    FINISHING = "finishing", "Finishing"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    NEEDS_ATTENTION = "needs_attention", "Needs attention"
    CANCELLED = "cancelled", "Cancelled"


# A worker is (or was) working on these; a lease says whether it still is.
ACTIVE_JOB_STATUSES = (JobStatus.CLAIMED, JobStatus.SUBMITTING, JobStatus.POLLING, JobStatus.FINISHING)
TERMINAL_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.NEEDS_ATTENTION, JobStatus.CANCELLED)

# Dataverse runs one solution operation (import, export, uninstall, publish) at a time per
# environment; these kinds hold the environment's single slot while active.
SOLUTION_OPERATION_KINDS = (JobKind.EXPORT, JobKind.IMPORT, JobKind.UNINSTALL, JobKind.HOLDING_CLEANUP)

# The only moves a job's status may make; Job status changes go through deployments.jobs alone.
JOB_TRANSITIONS: dict[str, tuple[str, ...]] = {
    JobStatus.PENDING: (JobStatus.CLAIMED, JobStatus.CANCELLED),
    JobStatus.CLAIMED: (JobStatus.SUBMITTING, JobStatus.POLLING, JobStatus.FINISHING, *TERMINAL_JOB_STATUSES),
    JobStatus.SUBMITTING: (JobStatus.POLLING, JobStatus.FINISHING, *TERMINAL_JOB_STATUSES),
    JobStatus.POLLING: (JobStatus.FINISHING, *TERMINAL_JOB_STATUSES),
    JobStatus.FINISHING: TERMINAL_JOB_STATUSES,
    JobStatus.NEEDS_ATTENTION: (JobStatus.SUCCEEDED, JobStatus.FAILED),
    JobStatus.SUCCEEDED: (),
    JobStatus.FAILED: (),
    JobStatus.CANCELLED: (),
}


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

# DESIGN section 3: the only moves a promotion may make (deployments/workflow/ enforces them).
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
