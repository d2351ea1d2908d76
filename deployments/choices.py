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
