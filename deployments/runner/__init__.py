"""The crash-safe import runner: one IMPORT job carries one promotion (or rollback) onto its target.

docs/states.md §3.6, step by step, each step recorded on the job row before the next one starts, so a
worker that dies anywhere leaves a row another worker continues from:

1. The engine claims the job (conditional UPDATE; the environment's single solution-operation slot).
2. ``prepare``: read what the target has (the version this promotion replaces) and plan the Dataverse
   operations: one import (StageAndUpgradeAsync for upgrade, ImportSolutionAsync for update), or for a
   rollback: uninstall then import, DeleteAndPromote, or uninstall of the ``_Upgrade`` holding solution.
3. Mark the promotion running with the previous version; re-check the pre-flight blockers.
4. ``submit:<n>``: re-hash the artifact from storage (``checksum_mismatch`` fails), commit the job as
   submitting with submitted_at and the package SHA-256, then call Dataverse. The returned
   AsyncOperationId / ImportJobKey are stored on the job at once (``poll:<n>``).
5. Poll as a chain of short tasks: each look is one task; the next is a deferral whose interval grows
   with the time already waited, and which honours Retry-After.
6. On completion read the import log, record per-component results, refresh the target's inventory and
   report the outcome to the workflow; on failure keep Dataverse's code, message and log.

A job found with no handle for an operation that may have been sent (``submit:<n>``, or status
submitting) is never resubmitted blindly: the runner looks for the operation it may have started
(asyncoperations of that type created since submitted_at − 5 min, import jobs of the solution since then)
and adopts it; a CustomizationLock then means "still in flight, look again later". It resubmits only when
nothing is found and the target still has what it had before. An operation still running after
ALM_IMPORT_MAX_WAIT (default 6 h) makes the job `needs_attention` and flags the promotion.

Modules: timing (settings and poll intervals), plan (which operations), state (the run's typed state and
step, stored on the job row), submission (sending an operation), polling (looking at it), adoption
(finding a lost operation), results (import log summary, flows, inventory, the run's result), run
(ImportRun and promotion_run). Import from here.
"""

from deployments.runner.adoption import Adoption, find_started_operation, target_unchanged
from deployments.runner.plan import DELETE_AND_PROMOTE, IMPORT, UNINSTALL, PlannedOperation, planned_operations
from deployments.runner.results import MAX_KEPT_LOG_CHARS, import_log_components, import_log_summary
from deployments.runner.run import IMPORT_RETRY, IMPORT_TIMEOUTS, ImportRun, import_client_for, promotion_run
from deployments.runner.state import CompletedOperation, Phase, RunState, RunStep
from deployments.runner.timing import (
    ADOPTION_WINDOW,
    POLL_BACKOFF_SHARE,
    busy_retry_seconds,
    import_job_id_on_async,
    import_max_wait,
    poll_interval,
    poll_max_seconds,
    poll_seconds,
)

__all__ = [
    "ADOPTION_WINDOW",
    "DELETE_AND_PROMOTE",
    "IMPORT",
    "IMPORT_RETRY",
    "IMPORT_TIMEOUTS",
    "MAX_KEPT_LOG_CHARS",
    "POLL_BACKOFF_SHARE",
    "UNINSTALL",
    "Adoption",
    "CompletedOperation",
    "ImportRun",
    "Phase",
    "PlannedOperation",
    "RunState",
    "RunStep",
    "busy_retry_seconds",
    "find_started_operation",
    "import_client_for",
    "import_job_id_on_async",
    "import_log_components",
    "import_log_summary",
    "import_max_wait",
    "planned_operations",
    "poll_interval",
    "poll_max_seconds",
    "poll_seconds",
    "promotion_run",
    "target_unchanged",
]
