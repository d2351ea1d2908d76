"""Nudging a worker to look at a job row. Best effort (alm_portal.celery.publish_best_effort): the row is the
record, and the dispatcher re-sends rows that nobody holds, so a lost message only delays a job."""

from __future__ import annotations

from django.db import transaction

from alm_portal import celery as celery_app

# The name alm_portal/jobs/tasks.py registers run_job under (older than this app: messages already in the
# broker use it). The task is looked up by this name, so the engine does not import the tasks module that
# imports the engine; the jobs app's ready() imports that module in every process.
RUN_JOB_TASK = "deployments.run_job"
# Follow-up messages never wait longer than this in the broker (longer waits live in not_before).
MAX_COUNTDOWN_SECONDS = 60


def publish_run_job(job_id: int, *, countdown: float = 0) -> bool:
    """Ask a worker to run job `job_id` now (or after `countdown` seconds); return whether the broker took it."""
    run_job = celery_app.app.tasks[RUN_JOB_TASK]
    return celery_app.publish_best_effort(run_job, args=(job_id,), countdown=min(countdown, MAX_COUNTDOWN_SECONDS))


def publish_run_job_on_commit(job_id: int, countdown: float = 0) -> None:
    """publish_run_job once the caller's transaction commits: a worker never looks before the row is there."""
    transaction.on_commit(lambda: publish_run_job(job_id, countdown=countdown))
