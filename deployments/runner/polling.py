"""Looking at a submitted operation: its outcome once Dataverse says it ended, else what it is doing.

The system job (asyncoperation) decides; an operation adopted by its import job alone is ended when the
import job has its completedon, and its log says whether it succeeded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from alm_portal.dataverse import errors as dv
from alm_portal.dataverse.client import AsyncOperation, DataverseClient, ImportJob
from alm_portal.dataverse.importlog import ImportLogError
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import crash_point
from deployments.runner.plan import PlannedOperation
from deployments.runner.state import Outcome

logger = logging.getLogger(__name__)


class OperationGone(Exception):
    """The system job of the operation no longer exists and nothing else tells how it ended."""


@dataclass(frozen=True)
class StillRunning:
    """The operation has not ended; `what` is what Dataverse says it is doing."""

    what: str


def read_import_job(*, client: DataverseClient, job: Job, with_log: bool) -> ImportJob | None:
    """The job's import job (with its parsed log when `with_log` and the log is readable), or None."""
    if not job.import_job_id:
        return None
    try:
        return client.get_import_job(job.import_job_id, with_log=with_log)
    except dv.NotFound:
        return None
    except ImportLogError as unreadable:
        logger.warning("job %s: unreadable import log: %s", job.pk, unreadable)
        return client.get_import_job(job.import_job_id, with_log=False)


def look_at_operation(*, client: DataverseClient, job: Job, operation: PlannedOperation) -> Outcome | StillRunning:
    """One look at the operation whose handles are on `job`."""
    async_id = job.async_operation_id
    if not async_id:
        return _look_at_import_job(client=client, job=job)
    try:
        observed: AsyncOperation = client.get_async_operation(async_id)
    except dv.NotFound:
        if operation.is_import and job.import_job_id:
            return _look_at_import_job(client=client, job=job)
        raise OperationGone(
            f"The system job {async_id} of {operation.label} is gone: the outcome is unknown."
        ) from None
    crash_point("mid_poll")
    if observed.is_completed:
        error = observed.error(client.environment_url)
        return Outcome(
            succeeded=observed.succeeded,
            status_code=observed.status_code,
            error_code=error.code if error else None,
            error_message=error.message if error else "",
            completed_on=observed.completed_on,
        )
    return StillRunning(f"Dataverse status {observed.status_code}")


def _look_at_import_job(*, client: DataverseClient, job: Job) -> Outcome | StillRunning:
    """Polling by the import job alone (adopted without a system job): ended when it has completedon."""
    import_job = read_import_job(client=client, job=job, with_log=True)
    crash_point("mid_poll")
    if import_job is not None and import_job.completed_on is not None:
        log = import_job.log
        succeeded = log.succeeded if log is not None else False
        return Outcome(
            succeeded=succeeded,
            status_code=None,
            error_code=None if succeeded or log is None else log.error_code,
            error_message="" if succeeded or log is None else log.message,
            completed_on=import_job.completed_on,
        )
    return StillRunning(f"import progress {import_job.progress if import_job else '?'}%")
