"""System jobs and import jobs (docs/dataverse.md §7, §8): look one up, find them, poll until completed."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from alm_portal.dataverse import unconfirmed
from alm_portal.dataverse.client.odata import _ASYNC_SELECT, _IMPORT_JOB_SELECT, _odata_datetime, _odata_string, _query
from alm_portal.dataverse.client.results import AsyncOperation, ImportJob, _datetime, _int, _required_uuid, _str
from alm_portal.dataverse.client.transport import DataverseTransport
from alm_portal.dataverse.errors import (
    InvalidResponse,
    PollDeadlineExceeded,
    Throttled,
    TransientError,
    normalize_error_code,
)
from alm_portal.dataverse.importlog import parse_import_log

# Every part of the client logs under the one name the client has always used.
logger = logging.getLogger("alm_portal.dataverse.client")


class SystemJobOperations(DataverseTransport):
    """docs/dataverse.md §7 and §8: system jobs (asyncoperations) and import jobs."""

    # -- system jobs (docs/dataverse.md §7) --

    @staticmethod
    def _async_operation(record: Mapping[str, Any]) -> AsyncOperation:
        state = _int(record.get("statecode"))
        status = _int(record.get("statuscode"))
        if state is None or status is None:
            raise InvalidResponse("asyncoperation without statecode/statuscode")
        return AsyncOperation(
            async_operation_id=_required_uuid(record.get("asyncoperationid"), "asyncoperationid"),
            name=_str(record.get("name")),
            operation_type=_int(record.get("operationtype")),
            state_code=state,
            status_code=status,
            message=_str(record.get("message")),
            friendly_message=_str(record.get("friendlymessage")),
            error_code=normalize_error_code(record.get("errorcode")),
            created_on=_datetime(record.get("createdon")),
            started_on=_datetime(record.get("startedon")),
            completed_on=_datetime(record.get("completedon")),
        )

    def get_async_operation(self, async_operation_id: uuid.UUID | str) -> AsyncOperation:
        """docs/dataverse.md §7.1/§7.2: ``GET asyncoperations(<id>)``; a 404 raises :class:`NotFound`."""
        return self._async_operation(self._get(f"asyncoperations({async_operation_id})?$select={_ASYNC_SELECT}"))

    def find_async_operations(
        self, operation_type: int, created_since: datetime, *, name_contains: str | None = None
    ) -> list[AsyncOperation]:
        """docs/dataverse.md §7.1: system jobs of one type created since a time, newest first (crash adoption,
        docs/states.md §3)."""
        filters = [f"operationtype eq {int(operation_type)}", f"createdon ge {_odata_datetime(created_since)}"]
        if name_contains:
            filters.append(f"contains(name,{_odata_string(name_contains)})")
        params = {"$select": _ASYNC_SELECT, "$filter": " and ".join(filters), "$orderby": "createdon desc"}
        return [self._async_operation(r) for r in self._get_all("asyncoperations?" + _query(params))]

    def poll_async_operation(
        self,
        async_operation_id: uuid.UUID | str,
        *,
        timeout: float,
        initial_interval: float = unconfirmed.POLL_INITIAL_INTERVAL_SECONDS,
        max_interval: float = unconfirmed.POLL_MAX_INTERVAL_SECONDS,
        backoff_factor: float = unconfirmed.POLL_BACKOFF_FACTOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> Iterator[AsyncOperation]:
        """docs/dataverse.md §7.2: yield each observation of a system job until ``statecode == 3``.

        Waits grow from ``initial_interval`` to ``max_interval``; a throttled or failed read waits at least the
        server's ``Retry-After``. Raises :class:`PollDeadlineExceeded` when the next look would pass
        ``timeout`` seconds from now (the outcome is then unknown, not failed).
        """
        deadline = clock() + timeout
        interval = initial_interval
        last_status: int | None = None
        while True:
            wait = interval
            try:
                operation = self.get_async_operation(async_operation_id)
            except TransientError as exc:
                if isinstance(exc, Throttled):
                    wait = max(interval, exc.retry_after or 0.0)
                logger.info("poll of %s failed transiently (%s); next look in %.1fs", async_operation_id, exc, wait)
            else:
                last_status = operation.status_code
                yield operation
                if operation.is_completed:
                    return
            if clock() + wait > deadline:
                raise PollDeadlineExceeded(
                    f"system job {async_operation_id} not completed within {timeout:.0f}s",
                    last_status=last_status,
                    environment_url=self.environment_url,
                )
            self._sleep(wait)
            interval = min(max_interval, interval * backoff_factor)

    def wait_for_async_operation(
        self, async_operation_id: uuid.UUID | str, *, timeout: float, **poll: Any
    ) -> AsyncOperation:
        """docs/dataverse.md §7.2: poll until completed and return the final observation (check ``succeeded``)."""
        final: AsyncOperation | None = None
        for final in self.poll_async_operation(async_operation_id, timeout=timeout, **poll):  # noqa: B007
            pass
        assert final is not None
        return final

    # -- import jobs (docs/dataverse.md §8) --

    def _import_job(self, record: Mapping[str, Any], *, parse_log: bool) -> ImportJob:
        data = record.get("data")
        text = data if isinstance(data, str) and data else None
        progress = record.get("progress")
        return ImportJob(
            import_job_id=_required_uuid(record.get("importjobid"), "importjobid"),
            solution_name=_str(record.get("solutionname")),
            progress=float(progress) if isinstance(progress, int | float) else None,
            created_on=_datetime(record.get("createdon")),
            started_on=_datetime(record.get("startedon")),
            completed_on=_datetime(record.get("completedon")),
            data=text,
            log=parse_import_log(text) if parse_log and text else None,
        )

    def get_import_job(self, import_job_id: uuid.UUID | str, *, with_log: bool = True) -> ImportJob:
        """docs/dataverse.md §8.1/§8.3: ``GET importjobs(<id>)`` with ``data`` parsed into per-component results."""
        select = _IMPORT_JOB_SELECT + (",data" if with_log else "")
        return self._import_job(self._get(f"importjobs({import_job_id})?$select={select}"), parse_log=with_log)

    def find_import_jobs(self, solution_name: str, since: datetime) -> list[ImportJob]:
        """docs/dataverse.md §8.1: import jobs of a solution created since a time, newest first (without the log)."""
        params = {
            "$select": _IMPORT_JOB_SELECT,
            "$filter": f"solutionname eq {_odata_string(solution_name)} and createdon ge {_odata_datetime(since)}",
            "$orderby": "createdon desc",
        }
        return [self._import_job(r, parse_log=False) for r in self._get_all("importjobs?" + _query(params))]
