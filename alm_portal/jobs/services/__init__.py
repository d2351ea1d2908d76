"""The job engine: enqueue, claim, run, defer, finish. The only code that changes Job.status.

Guarantees (docs/architecture.md §1 and docs/states.md §3):
- The row is the record. The broker message only says "look at job N"; publishing is best effort
  after commit, and the dispatcher re-sends rows that nobody holds.
- A claim is a conditional UPDATE that must hit exactly one row, so a message delivered twice, or
  a job published twice, runs once. A worker holds a job through a lease it renews while working.
- Solution operations take the environment's single slot through a partial unique index; a job
  that loses the race stays pending and is retried shortly.
- Waiting is a `not_before` time plus a short follow-up task, never a long countdown.
- A worker that loses the database in the middle of a step gives its lease back as soon as the database
  answers again (within a bounded wait), instead of leaving the job to wait for the lease to run out.

One module per part: enqueue, running (claim, run, finish, defer), lost_database, settling (cancel, resolve
attention), dispatch, with transitions (the one conditional UPDATE) and publishing (nudging a worker) under
them. Callers import from here.
"""

from alm_portal.jobs.errors import JobDeferred, JobFailed, JobNeedsAttention
from alm_portal.jobs.registry import register_job_handler, register_job_kind
from alm_portal.jobs.services.dispatch import jobs_dispatch
from alm_portal.jobs.services.enqueue import job_enqueue
from alm_portal.jobs.services.lost_database import DATABASE_CONNECTION_ERRORS
from alm_portal.jobs.services.running import (
    WAITING_FOR_SLOT,
    RunOutcome,
    crash_point,
    job_mark_step,
    job_progress,
    job_run,
    job_run_now,
)
from alm_portal.jobs.services.settling import job_cancel, job_resolve_attention

__all__ = [
    "DATABASE_CONNECTION_ERRORS",
    "WAITING_FOR_SLOT",
    "JobDeferred",
    "JobFailed",
    "JobNeedsAttention",
    "RunOutcome",
    "crash_point",
    "job_cancel",
    "job_enqueue",
    "job_mark_step",
    "job_progress",
    "job_resolve_attention",
    "job_run",
    "job_run_now",
    "jobs_dispatch",
    "register_job_handler",
    "register_job_kind",
]
