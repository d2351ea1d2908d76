"""Writing the end of a step while the database is away: the write is conditional on this worker still
holding the job's lease, so it is tried again, with a growing wait, until the database answers or the
budget runs out."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection

from alm_portal.jobs.models import Job

logger = logging.getLogger(__name__)

# What a lost (or refused, or reset) database connection raises; a deadlock victim is an OperationalError too.
DATABASE_CONNECTION_ERRORS = (OperationalError, InterfaceError)
# Waits between attempts to write the end of a step while the database is away, and the longest wait.
LEASE_WRITE_FIRST_WAIT = 0.5
LEASE_WRITE_MAX_WAIT = 8.0
_Written = TypeVar("_Written")


def _lease_write_budget() -> float:
    """How long a worker keeps trying to write the end of a step while the database is away: well below the
    task's soft time limit (the step itself has used part of it), and never more than a minute."""
    soft_limit = settings.CELERY_TASK_SOFT_TIME_LIMIT or settings.CELERY_TASK_TIME_LIMIT
    return min(60.0, soft_limit / 4)


def _drop_database_connection() -> None:
    """Close this thread's connection, which a lost database leaves broken, so the next query opens a new one.

    Inside a transaction (a test's, or a caller's) closing it would end that transaction: leave it alone."""
    if connection.in_atomic_block:
        return
    # Closing a dead connection may itself fail; it is discarded all the same.
    with contextlib.suppress(DatabaseError):
        connection.close()


def _write_despite_lost_database(write: Callable[[], _Written], *, job: Job, owner: str, what: str) -> _Written | None:
    """Run `write`, the end of a step, which is conditional on `owner` still holding the job's lease.

    If the database connection is lost, close it and try again with a growing wait, for at most
    `_lease_write_budget()` seconds. Retrying is safe: a write that did commit before its answer was lost no
    longer matches its own condition, and neither does one after another worker claimed the job, so nothing
    is written twice and no other worker's claim is overwritten. Returns None when it gave up: the lease then
    runs out as it would have without this, and the dispatcher hands the job to a worker after that."""
    deadline = time.monotonic() + _lease_write_budget()
    wait = LEASE_WRITE_FIRST_WAIT
    attempt = 1
    status_read = job.status
    while True:
        # A write whose commit failed may have changed the job in memory already; each attempt starts from
        # the status this worker read, which is what its conditional UPDATE expects to find.
        job.status = status_read
        try:
            written = write()
        except DATABASE_CONNECTION_ERRORS as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or connection.in_atomic_block:
                logger.warning(
                    "job %s: could not %s after %d attempts (%s: %s); its lease (%s) runs out at %s and the "
                    "dispatcher takes it up then",
                    job.pk,
                    what,
                    attempt,
                    type(exc).__name__,
                    str(exc).strip()[:200],
                    owner,
                    job.lease_expires_at,
                )
                return None
            logger.info("job %s: could not %s (%s); trying again", job.pk, what, type(exc).__name__)
            _drop_database_connection()
            time.sleep(min(wait, remaining))
            wait = min(wait * 2, LEASE_WRITE_MAX_WAIT)
            attempt += 1
            continue
        if attempt > 1:
            logger.warning("job %s: %s on attempt %d, after the database came back", job.pk, what, attempt)
        return written
