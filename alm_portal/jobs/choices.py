"""Job statuses and the moves between them (docs/states.md §3). Job kinds belong to the apps that register them."""

from django.db import models


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


class JobWaitingReason(models.TextChoices):
    """Why a due pending job has not started (blank: nothing holds it back). The label is what people see."""

    SOLUTION_SLOT = "solution_slot", "Waiting for the environment's current solution operation to finish."


# A worker is (or was) working on these; a lease says whether it still is.
ACTIVE_JOB_STATUSES = (JobStatus.CLAIMED, JobStatus.SUBMITTING, JobStatus.POLLING, JobStatus.FINISHING)
TERMINAL_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.NEEDS_ATTENTION, JobStatus.CANCELLED)

# The only moves a job's status may make; Job status changes go through alm_portal.jobs.services alone. An active
# job may stay in its status: a step deferred to a later not_before, or a claim after its worker's lease ran out.
JOB_TRANSITIONS: dict[str, tuple[str, ...]] = {
    JobStatus.PENDING: (JobStatus.CLAIMED, JobStatus.CANCELLED),
    JobStatus.CLAIMED: (
        JobStatus.CLAIMED,
        JobStatus.SUBMITTING,
        JobStatus.POLLING,
        JobStatus.FINISHING,
        *TERMINAL_JOB_STATUSES,
    ),
    JobStatus.SUBMITTING: (JobStatus.SUBMITTING, JobStatus.POLLING, JobStatus.FINISHING, *TERMINAL_JOB_STATUSES),
    JobStatus.POLLING: (JobStatus.POLLING, JobStatus.FINISHING, *TERMINAL_JOB_STATUSES),
    JobStatus.FINISHING: (JobStatus.FINISHING, *TERMINAL_JOB_STATUSES),
    JobStatus.NEEDS_ATTENTION: (JobStatus.SUCCEEDED, JobStatus.FAILED),
    JobStatus.SUCCEEDED: (),
    JobStatus.FAILED: (),
    JobStatus.CANCELLED: (),
}
