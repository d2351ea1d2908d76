"""The Dataverse Web API client: typed methods, explicit timeouts, typed errors, streaming package transfer.

The one boundary to Dataverse (docs/architecture.md §3 rule 5). Every method's docstring names the section of
``docs/dataverse.md`` it implements. Behaviour in brief:

* Requests: ``https://<environment>/api/data/v9.2/…`` with the OData headers of docs/dataverse.md §1.2, a bearer
  token from a :class:`~alm_portal.dataverse.auth.TokenProvider` (scope ``<environment url>/.default``),
  ``verify=<bundle>`` on every request, ``allow_redirects=False`` (a 3xx is an error), (connect, read)
  timeouts from :class:`Timeouts`.
* 401: the token is dropped from the provider's cache and the request is sent once more with a new one.
* Retries (:class:`RetryPolicy`): only idempotent calls are retried, on 5xx, connection failures and
  timeouts, with capped exponential backoff and jitter. ``Retry-After`` is always honoured: after a 429 the
  environment gets a process-wide "not before" time (:func:`throttle_not_before`); no request goes to that
  environment before it — the client sleeps through short waits and raises :class:`Throttled` for longer
  ones (``RetryPolicy.max_retry_after``), so a Celery task can persist the time and come back.
* The import submissions (ImportSolutionAsync, StageAndUpgradeAsync) are never retried automatically: an
  answer we did not get becomes :class:`SubmissionOutcomeUnknown` so the job can adopt the operation it may
  have started (docs/states.md §3).
* Packages are streamed both ways: the import body is JSON with the zip as base64, generated while reading
  the file (Content-Length known in advance); an export's base64 is decoded to a file while the response is
  read. Neither ever holds the whole package in memory.
"""

from __future__ import annotations

from alm_portal.dataverse.client.jobs import SystemJobOperations
from alm_portal.dataverse.client.odata import EXPORT_SETTINGS
from alm_portal.dataverse.client.queries import EnvironmentQueries
from alm_portal.dataverse.client.results import (
    AsyncOperation,
    AsyncOperationType,
    Dependency,
    ExportedFile,
    ExportHandle,
    HeldPrivilege,
    ImportHandle,
    ImportJob,
    Publisher,
    Solution,
    SolutionHistoryEntry,
    StageResult,
    ValidationResult,
    WhoAmI,
)
from alm_portal.dataverse.client.solutions import SolutionOperations
from alm_portal.dataverse.client.streaming import Base64JsonBody, base64_json_body
from alm_portal.dataverse.client.streaming import _Base64FieldWriter as _Base64FieldWriter  # tested directly
from alm_portal.dataverse.client.throttle import (
    clear_throttle,
    parse_retry_after,
    restore_throttle_not_before,
    throttle_not_before,
)
from alm_portal.dataverse.client.transport import API_PATH, RetryPolicy, Timeouts

__all__ = [
    "API_PATH",
    "EXPORT_SETTINGS",
    "AsyncOperation",
    "AsyncOperationType",
    "Base64JsonBody",
    "DataverseClient",
    "Dependency",
    "ExportHandle",
    "ExportedFile",
    "HeldPrivilege",
    "ImportHandle",
    "ImportJob",
    "Publisher",
    "RetryPolicy",
    "Solution",
    "SolutionHistoryEntry",
    "StageResult",
    "Timeouts",
    "ValidationResult",
    "WhoAmI",
    "base64_json_body",
    "clear_throttle",
    "parse_retry_after",
    "restore_throttle_not_before",
    "throttle_not_before",
]


class DataverseClient(SolutionOperations, SystemJobOperations, EnvironmentQueries):
    """Typed access to one Dataverse environment's Web API (docs/dataverse.md §1-§12).

    ``environment_url`` is ``https://<org>.<region>.dynamics.com`` (a path prefix is allowed, for the
    emulator). Give either ``token_provider`` or ``credentials`` (then an :class:`MsalTokenProvider` sharing
    the process-wide msal application is used, with the same CA bundle). ``import_job_id_mode`` sends a
    caller-chosen ``ImportJobId`` on the async import actions (docs/states.md §3; off by default, UNCONFIRMED).
    ``sleep`` is injectable so tests and callers control waiting; ``page_size`` is the ``odata.maxpagesize``
    asked for collections (all pages are followed). ``on_throttled`` is called with the Retry-After (seconds,
    or None) for every service-protection 429 received, so the caller can count them durably; an error it
    raises is logged and never fails the call. A client holds one HTTP session: use one per thread or task.
    """
