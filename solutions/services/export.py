"""Export as a job: from the home development environment, version bumped there first, both flavours.

solution_export_request() validates and queues (web); solution_export_run() is the job's work
(worker), resumable step by step through the job row, so a second run continues or does nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.dataverse import errors as dv
from alm_portal.dataverse.client import DataverseClient, RetryPolicy, Timeouts
from alm_portal.dataverse.package import PackageError, read_solution_zip
from alm_portal.dataverse.package import SolutionVersion as PackageVersion
from alm_portal.errors import PermissionRefused, ValidationFailed
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.errors import JobDeferred, JobFailed
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_enqueue, job_mark_step, job_progress
from environments import clients
from environments import selectors as environment_selectors
from solutions import selectors
from solutions.choices import Bump, Flavour, SolutionJobKind, SourceKind
from solutions.errors import VersionExists
from solutions.models import Solution, SolutionVersion
from solutions.services.registry import artifact_register, may_change
from solutions.services.source import source_commit_enqueue
from solutions.storage import SpooledFile

if TYPE_CHECKING:
    from environments.models import Environment

ClientFactory = Callable[["Environment"], DataverseClient]
# A busy (CustomizationLock), throttled or unreachable environment: come back later, a bounded number of times.
TRANSIENT_RETRY_SECONDS = 30.0
MAX_TRANSIENT_ATTEMPTS = 20
# Export may wait out a short Retry-After itself; a longer one defers the job.
EXPORT_RETRY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0, max_retry_after=10.0)
EXPORT_TIMEOUTS = Timeouts(connect=10.0, read=120.0, transfer_read=900.0)


def dataverse_client_for(environment: Environment) -> DataverseClient:
    """A client for `environment` with its active credential, through the environments app (which
    applies the outbound-URL policy and pins connections). Export downloads get the long transfer timeout."""
    credential = environment_selectors.active_credential(environment=environment)
    if credential is None:
        raise JobFailed("no_credential", f"{environment} has no active credential to export with.")
    client, _material = clients.client_for(environment, credential, retry_policy=EXPORT_RETRY, timeouts=EXPORT_TIMEOUTS)
    return client


def solution_export_request(*, solution: Solution, bump: str, user: User, context: AuditContext) -> Job:
    """Queue an export of `solution` from its home development environment (a job, 202 on the API).

    `bump` says which version part to increment in development first (revision by default). The new
    version is the bump of the highest version seen anywhere (development's own included), so it is
    always new. `none` exports the version development has, allowed only when it is above every
    version seen anywhere else; when the registry or an inventory already shows that it is not, this
    refuses at once (`version_exists` with `next_allowed`); the job checks again against the live
    environment.
    """
    if bump not in Bump.values:
        raise ValidationFailed(
            f"Unknown bump {bump!r}.", details={"bump": [f"Must be one of {', '.join(Bump.values)}."]}
        )
    if not may_change(user, solution):
        raise PermissionRefused("You cannot export this solution.")
    home = solution.home_environment
    if home is None:
        raise ValidationFailed(
            f"{solution.unique_name} has no home development environment to export from.",
            details={"home_environment": ["Not set."]},
        )
    if bump == Bump.NONE:
        _check_none_allowed_from_inventory(solution=solution, home=home)
    with transaction.atomic():
        job = job_enqueue(
            kind=SolutionJobKind.EXPORT,
            environment=home,
            params={"solution_id": solution.pk, "unique_name": solution.unique_name, "bump": bump},
            context=context,
        )
        record(
            context=context,
            action="solution.export_requested",
            target=solution,
            related=job,
            after={"bump": bump, "environment": home.pk, "job": job.pk},
        )
    return job


def _check_none_allowed_from_inventory(*, solution: Solution, home: Environment) -> None:
    in_dev = selectors.solution_inventory_versions(solution=solution, environment_id=home.pk, current_only=True)
    parsed = [version for version in (selectors.parse_version(text) for text in in_dev) if version is not None]
    if not parsed:
        return  # not known yet: the job decides against the live environment
    dev = max(parsed)
    highest = selectors.solution_highest_version_seen(solution=solution, exclude_environment_id=home.pk)
    if highest is not None and dev <= highest:
        raise _export_version_exists(solution=solution, dev_version=dev.canonical, highest=highest.canonical, home=home)


def _export_version_exists(*, solution: Solution, dev_version: str, highest: str, home: Any) -> VersionExists:
    next_allowed = PackageVersion.parse(highest).bump("revision").canonical
    return VersionExists(
        f"{solution.unique_name} {dev_version} in {home} is not above {highest}, which exists already; export "
        f"with a bump (next allowed: {next_allowed}).",
        details={
            "solution": solution.unique_name,
            "version": dev_version,
            "highest_seen": highest,
            "next_allowed": next_allowed,
        },
    )


def export_poll_seconds() -> float:
    return float(settings.ALM_EXPORT_POLL_SECONDS)


def export_wait_in_task_seconds() -> float:
    return float(settings.ALM_EXPORT_WAIT_IN_TASK_SECONDS)


def _export_max_seconds() -> float:
    return float(settings.ALM_EXPORT_MAX_SECONDS)


def _export_result(version: SolutionVersion, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "solution_id": version.solution_id,
        "version_id": version.pk,
        "version": version.version_key,
        "previous_version": state.get("previous_version"),
        "managed_sha256": version.managed_sha256,
        "unmanaged_sha256": version.unmanaged_sha256,
    }


def solution_export_run(*, job: Job, context: AuditContext, client_factory: ClientFactory | None = None) -> dict:
    """Carry out an export job (called by the EXPORT job handler); safe to run any number of times.

    Steps, each recorded on the job row so that a second run continues instead of repeating:
    1. choose the version (from the live development version and everything seen anywhere) and
       record it; 2. set it in development (skipped when development has it already); 3. for each
       flavour not registered yet: ExportSolutionAsync, poll (deferring the job between looks),
       download to a temporary file while hashing, read the manifest, check it is the expected
       solution, version and flavour, store and register. A run that finds the version registered by
       this job with both flavours returns its result and calls nobody.
    """
    solution = Solution.objects.select_related("home_environment").filter(pk=job.params.get("solution_id")).first()
    if solution is None:
        raise JobFailed("solution_not_found", "The solution of this export is not registered any more.")
    environment = job.environment
    if environment is None:
        raise JobFailed("environment_missing", "The export job names no environment.")
    state: dict[str, Any] = dict(job.result or {})
    done = _export_finished_version(job=job, solution=solution, state=state)
    if done is not None:
        source_commit_enqueue(version=done, context=context)
        return _export_result(done, state)

    user = job.created_by
    client = (client_factory or dataverse_client_for)(environment)
    try:
        if not state.get("target_version"):
            state = _export_choose_version(job=job, solution=solution, client=client)
            job_mark_step(job, status=JobStatus.SUBMITTING, step="version_chosen", result=state)
        _export_set_version(job=job, solution=solution, client=client, state=state, context=context)
        started = state.setdefault("started_at", timezone.now().isoformat())
        for flavour in Flavour.values:
            version = _export_version_of_job(job=job, solution=solution, state=state)
            stored = version.flavours if version is not None else []
            job_progress(job, 10 + 40 * len(stored), f"Exporting {state['target_version']} from {environment}")
            if flavour in stored:
                continue
            if datetime.fromisoformat(started) + timedelta(seconds=_export_max_seconds()) < timezone.now():
                raise JobFailed("export_timeout", f"The export did not finish within {_export_max_seconds():.0f}s.")
            export_flavour(
                job=job,
                solution=solution,
                client=client,
                state=state,
                flavour=flavour,
                user=user,
                context=context,
            )
    except dv.TransientError as exc:
        if job.attempts >= MAX_TRANSIENT_ATTEMPTS:
            raise JobFailed("dataverse_unavailable", f"Gave up after {job.attempts} attempts: {exc}") from exc
        wait = exc.retry_after or TRANSIENT_RETRY_SECONDS
        message = f"Dataverse is busy or unreachable ({exc}); retrying"
        raise JobDeferred(wait, status=job.status, message=message) from exc
    except dv.NotFound as exc:
        raise JobFailed("solution_not_found", f"{solution.unique_name} is not in {environment}: {exc.message}") from exc
    except dv.ManagedUnmanagedMismatch as exc:
        raise JobFailed(
            "solution_managed", f"{solution.unique_name} is managed in {environment}; only unmanaged solutions export."
        ) from exc
    except dv.DataverseError as exc:
        raise JobFailed("dataverse_error", str(exc)) from exc
    finally:
        client.close()
    version = _export_version_of_job(job=job, solution=solution, state=state)
    if version is None or not all(slot.stored for slot in version.slots()):
        raise JobFailed("export_incomplete", "The export ended without both flavours registered.")
    source_commit_enqueue(version=version, context=context)
    return _export_result(version, state)


def _export_finished_version(*, job: Job, solution: Solution, state: dict[str, Any]) -> SolutionVersion | None:
    version = _export_version_of_job(job=job, solution=solution, state=state)
    if version is not None and all(slot.stored for slot in version.slots()):
        return version
    return None


def _export_version_of_job(*, job: Job, solution: Solution, state: dict[str, Any]) -> SolutionVersion | None:
    by_job = SolutionVersion.objects.filter(solution=solution, source_job=job).first()
    if by_job is not None:
        return by_job
    target = state.get("target_version")
    if target:
        return SolutionVersion.objects.filter(solution=solution, version_key=target).first()
    return None


def _export_choose_version(*, job: Job, solution: Solution, client: DataverseClient) -> dict[str, Any]:
    environment = job.environment
    live = client.get_solution(solution.unique_name)
    if live is None:
        raise JobFailed("solution_not_found", f"{solution.unique_name} is not in {environment}.")
    if live.is_managed:
        raise JobFailed(
            "solution_managed", f"{solution.unique_name} is managed in {environment}; only unmanaged solutions export."
        )
    current = selectors.parse_version(live.version)
    if current is None:
        raise JobFailed("invalid_version", f"{environment} reports version {live.version!r}, which is not a version.")
    highest = selectors.solution_highest_version_seen(
        solution=solution, exclude_environment_id=environment.pk if environment else None, exclude_job_id=job.pk
    )
    bump = job.params.get("bump", Bump.REVISION)
    if bump == Bump.NONE:
        if highest is not None and current <= highest:
            refusal = _export_version_exists(
                solution=solution, dev_version=current.canonical, highest=highest.canonical, home=environment
            )
            raise JobFailed("version_exists", refusal.message, details=refusal.details)
        target = current
    else:
        base = max(current, highest) if highest is not None else current
        target = base.bump(bump)
    return {"previous_version": live.version, "target_version": target.canonical, "bump": bump}


def _export_set_version(
    *, job: Job, solution: Solution, client: DataverseClient, state: dict[str, Any], context: AuditContext
) -> None:
    if state.get("version_set"):
        return
    target = state["target_version"]
    live = client.get_solution(solution.unique_name)
    if live is None:
        raise JobFailed("solution_not_found", f"{solution.unique_name} is not in {job.environment}.")
    live_version = selectors.parse_version(live.version)
    if live_version is None or live_version.canonical != target:
        client.update_solution_version(solution.unique_name, target)
        with transaction.atomic():
            record(
                context=context,
                action="solution.version_bumped",
                target=solution,
                related=job.environment,
                before={"version": live.version},
                after={"version": target, "job": job.pk, "bump": state.get("bump")},
            )
    state["version_set"] = True
    job_mark_step(job, status=JobStatus.SUBMITTING, step="version_set", result=state)


def wait_or_defer(client: DataverseClient, async_operation_id: str, *, step: str, message: str) -> Any:
    """Wait for a Dataverse system job within this task's share of time; past it, come back later at `step`
    (the job stays polling, its handle kept) instead of holding a worker."""
    try:
        return client.wait_for_async_operation(
            async_operation_id,
            timeout=export_wait_in_task_seconds(),
            initial_interval=export_poll_seconds(),
            max_interval=max(export_poll_seconds(), 10.0),
        )
    except dv.PollDeadlineExceeded:
        raise JobDeferred(export_poll_seconds(), status=JobStatus.POLLING, step=step, message=message) from None


def export_flavour(
    *,
    job: Job,
    solution: Solution,
    client: DataverseClient,
    state: dict[str, Any],
    flavour: str,
    user: User | None,
    context: AuditContext,
    source_kind: str = SourceKind.EXPORTED,
    provenance: dict[str, str] | None = None,
) -> None:
    """Export one flavour of `state['target_version']` from the job's environment and register it: a step of the
    export job, and of a managed build (source kind "built", with its commit as provenance). Resumable: the
    export's handles are kept in `state` and on the job between deferrals."""
    managed = flavour == Flavour.MANAGED
    exporting = state.get("exporting") or {}
    if exporting.get("flavour") != flavour:
        handle = client.export_solution_async(solution.unique_name, managed=managed)
        exporting = {
            "flavour": flavour,
            "async_operation_id": str(handle.async_operation_id),
            "export_job_id": str(handle.export_job_id),
        }
        state["exporting"] = exporting
        job_mark_step(
            job,
            status=JobStatus.POLLING,
            step=f"export_{flavour}",
            result=state,
            async_operation_id=exporting["async_operation_id"],
        )
    operation = wait_or_defer(
        client,
        exporting["async_operation_id"],
        step=f"export_{flavour}",
        message=f"Exporting {flavour} {state['target_version']}",
    )
    if not operation.succeeded:
        error = operation.error(client.environment_url)
        state.pop("exporting", None)
        raise JobFailed("export_failed", f"Dataverse could not export the {flavour} solution: {error}")

    with tempfile.TemporaryDirectory(prefix="alm-export-") as folder:
        exported = client.download_solution_export_data(exporting["export_job_id"], Path(folder) / f"{flavour}.zip")
        # The client hashed the bytes while decoding them to the file; storing copies them in chunks.
        package = SpooledFile(path=exported.path, sha256=exported.sha256, size=exported.size)
        try:
            manifest = read_solution_zip(exported.path)
        except PackageError as refusal:
            raise JobFailed(
                "invalid_package", f"The exported {flavour} package was refused: {refusal.message}"
            ) from None
        problems = []
        if manifest.unique_name.casefold() != solution.unique_name.casefold():
            problems.append(f"it is {manifest.unique_name}")
        if manifest.version.canonical != state["target_version"]:
            problems.append(f"it has version {manifest.version.text}, not {state['target_version']}")
        if manifest.is_managed != managed:
            problems.append(f"it is {manifest.package_type}")
        if problems:
            raise JobFailed(
                "unexpected_package",
                f"The exported {flavour} package is not the expected one: " + "; ".join(problems) + ".",
            )
        try:
            artifact_register(
                solution=solution,
                manifest=manifest,
                package=package,
                source_kind=source_kind,
                user=user,
                context=context,
                source_environment=job.environment,
                source_job=job,
                provenance=provenance,
            )
        except VersionExists as refusal:
            raise JobFailed("version_exists", refusal.message, details=refusal.details) from None
    state.pop("exporting", None)
    job_mark_step(
        job,
        status=JobStatus.FINISHING if flavour == Flavour.UNMANAGED else JobStatus.POLLING,
        step=f"registered_{flavour}",
        result=state,
    )
