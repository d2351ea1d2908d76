"""Versions built from source control (docs/source-control.md, "Building a version from a commit").

A build packs `<root>/<UniqueName>/src/` at a branch, tag or commit into the unmanaged package and registers it as
a version whose provenance is that commit. When the solution's binding names a build environment, the build goes
on the way the ALM Accelerator builds: it imports the unmanaged package there and exports it managed, so the
version can be promoted; both flavours carry the commit as provenance. Each step is recorded on the job, so a
build that is deferred (polling) or taken over after a crash continues where it was.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.db import transaction

from alm_portal import sourcecontrol as git
from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.dataverse import errors as dv
from alm_portal.dataverse.client import DataverseClient
from alm_portal.dataverse.package import PackageError
from alm_portal.dataverse.packager import PackageType, pack_files
from alm_portal.errors import PermissionRefused, ValidationFailed
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.errors import JobDeferred, JobFailed, JobNeedsAttention
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_enqueue, job_mark_step, job_progress
from solutions.choices import Flavour, SolutionJobKind, SourceKind
from solutions.errors import VersionExists
from solutions.models import Solution, SolutionVersion, SourceBinding
from solutions.services.bindings import binding_for, check_address, git_remote_for, valid_ref, work_dir_for
from solutions.services.export import (
    MAX_TRANSIENT_ATTEMPTS,
    TRANSIENT_RETRY_SECONDS,
    dataverse_client_for,
    export_flavour,
    wait_or_defer,
)
from solutions.services.registry import artifact_register, max_upload_bytes, may_change
from solutions.services.source import git_failure, read_artifact, source_commit_enqueue
from solutions.storage import file_digest

MAX_REF_LENGTH = 255


def source_build_request(*, solution: Solution, ref: str, user: User, context: AuditContext) -> Job:
    """Queue a build of the solution from `ref` (a branch, tag or commit) of its repository."""
    if not may_change(user, solution):
        raise PermissionRefused(f"You cannot build versions of {solution.unique_name}.")
    binding = binding_for(solution)
    if binding is None:
        raise ValidationFailed(
            f"{solution.unique_name} is not bound to a Git repository; bind it first.",
            details={"solution": ["Not bound to a repository."]},
        )
    ref = ref.strip()
    if not ref or len(ref) > MAX_REF_LENGTH or not valid_ref(ref):
        raise ValidationFailed(
            f"{ref!r} is not a branch, a tag or a commit.",
            details={"ref": ["A branch, tag or commit (hex) is required."]},
        )
    with transaction.atomic():
        job = job_enqueue(
            kind=SolutionJobKind.SOURCE_BUILD,
            # The build environment's slot is held while the build imports and exports there.
            environment=binding.build_environment,
            params={"solution_id": solution.pk, "unique_name": solution.unique_name, "ref": ref},
            context=context,
        )
        record(
            context=context,
            action="solution.build_requested",
            target=solution,
            related=job,
            after={
                "repository_url": binding.url,
                "ref": ref,
                "folder": binding.folder_for(solution),
                "build_environment": binding.build_environment_id,
                "job": job.pk,
            },
        )
    return job


def source_build_run(*, job: Job, context: AuditContext) -> dict[str, Any]:
    """Carry out a build job. Running it again registers nothing new: the same commit packs to the same bytes (an
    identical artifact is a no-op), and a managed flavour already stored is not built again."""
    solution = Solution.objects.filter(pk=job.params.get("solution_id")).first()
    if solution is None:
        raise JobFailed("solution_not_found", "The solution of this build is not registered any more.")
    binding = binding_for(solution)
    if binding is None:
        raise JobFailed("not_bound", f"{solution.unique_name} is no longer bound to a repository.")
    state: dict[str, Any] = dict(job.result or {})
    if not state.get("version_id"):
        state = _build_unmanaged(job=job, solution=solution, binding=binding, context=context)
        job_mark_step(job, status=JobStatus.SUBMITTING, step="unmanaged_registered", result=state)
    version = SolutionVersion.objects.get(pk=state["version_id"])
    if job.environment is not None and not version.slot(Flavour.MANAGED).stored:
        _build_managed(job=job, solution=solution, version=version, state=state, context=context)
        version.refresh_from_db()
    state.pop("importing", None)
    state["flavours"] = version.flavours
    source_commit_enqueue(version=version, context=context)
    return state


def _provenance(state: dict[str, Any]) -> dict[str, str]:
    return {
        "source_repository_url": state["repository_url"],
        "source_ref": state["ref"],
        "source_commit": state["commit"],
        "source_folder": state["folder"],
    }


def _build_unmanaged(*, job: Job, solution: Solution, binding: SourceBinding, context: AuditContext) -> dict[str, Any]:
    ref = str(job.params.get("ref", ""))
    try:
        check_address(binding)
        fetched = git.fetch_folder(
            git_remote_for(binding),
            ref=ref,
            folder=binding.folder_for(solution),
            work_dir=work_dir_for(binding),
            max_bytes=max_upload_bytes(),
        )
    except git.GitError as exc:
        raise git_failure(exc, job) from exc
    where = f"{binding.folder_for(solution)} at {fetched.commit[:12]}"
    if not any(path.casefold() == "other/solution.xml" for path in fetched.files):
        raise JobFailed("pack_failed", f"{where} holds no Other/Solution.xml: it is not an unpacked solution.")
    try:
        packed = pack_files(fetched.files, package_type=PackageType.UNMANAGED)
    except PackageError as exc:
        if "holds a managed solution" in exc.message:
            raise JobFailed(
                "no_unmanaged_source",
                f"{where} holds only a managed solution; a build needs the unmanaged source (unpack with package "
                "type unmanaged or both).",
            ) from exc
        raise JobFailed("pack_failed", f"{where} could not be packed: {exc.message}") from exc
    manifest = packed.manifest
    if manifest.unique_name.casefold() != solution.unique_name.casefold():
        raise JobFailed("wrong_solution", f"{where} holds {manifest.unique_name}, not {solution.unique_name}.")
    state = {
        "solution_id": solution.pk,
        "repository_url": binding.url,
        "folder": binding.folder_for(solution),
        "ref": ref,
        "ref_kind": fetched.ref_kind,
        "commit": fetched.commit,
    }
    with tempfile.TemporaryDirectory(prefix="alm-build-") as scratch:
        path = Path(scratch) / "package.zip"
        path.write_bytes(packed.data)
        try:
            outcome = artifact_register(
                solution=solution,
                manifest=manifest,
                package=file_digest(path),
                source_kind=SourceKind.BUILT,
                user=job.created_by,
                context=context,
                source_job=job,
                provenance=_provenance(state),
            )
        except VersionExists as exc:
            raise JobFailed(
                "version_exists",
                f"{solution.unique_name} {manifest.version.canonical} is already registered with another package; "
                "raise the version in Other/Solution.xml and build again.",
                details=exc.details,
            ) from exc
    return {
        **state,
        "version_id": outcome.version.pk,
        "version": outcome.version.version_key,
        "created": outcome.created,
    }


def _build_managed(
    *, job: Job, solution: Solution, version: SolutionVersion, state: dict[str, Any], context: AuditContext
) -> None:
    """Import the unmanaged package into the build environment, then export it managed and register that."""
    client = dataverse_client_for(job.environment)  # type: ignore[arg-type]
    try:
        if not state.get("imported"):
            job_progress(job, 30, f"Importing {version.version_key} into {job.environment} to build it managed")
            _import_into_build_environment(job=job, version=version, client=client, state=state)
        job_progress(job, 70, f"Exporting {version.version_key} managed from {job.environment}")
        state["target_version"] = version.version_key
        export_flavour(
            job=job,
            solution=solution,
            client=client,
            state=state,
            flavour=Flavour.MANAGED,
            user=job.created_by,
            context=context,
            source_kind=SourceKind.BUILT,
            provenance=_provenance(state),
        )
    except dv.TransientError as exc:
        if job.attempts >= MAX_TRANSIENT_ATTEMPTS:
            raise JobFailed("dataverse_unavailable", f"Gave up after {job.attempts} attempts: {exc}") from exc
        raise JobDeferred(
            exc.retry_after or TRANSIENT_RETRY_SECONDS,
            status=job.status,
            message=f"The build environment is busy or unreachable ({exc}); retrying",
        ) from exc
    except dv.DataverseError as exc:
        raise JobFailed("dataverse_error", f"The build environment refused: {exc}") from exc
    finally:
        client.close()


def _import_into_build_environment(
    *, job: Job, version: SolutionVersion, client: DataverseClient, state: dict[str, Any]
) -> None:
    importing = state.get("importing")
    if not importing:
        with tempfile.TemporaryDirectory(prefix="alm-build-import-") as scratch:
            path = Path(scratch) / "unmanaged.zip"
            path.write_bytes(read_artifact(version, Flavour.UNMANAGED))
            try:
                handle = client.import_solution_async(path, overwrite_unmanaged_customizations=True)
            except dv.SubmissionOutcomeUnknown as exc:
                raise JobNeedsAttention(
                    f"The import into {job.environment} may or may not have started ({exc}); look at the build "
                    "environment's import jobs, then build again."
                ) from exc
        importing = {"async_operation_id": str(handle.async_operation_id)}
        state["importing"] = importing
        job_mark_step(
            job,
            status=JobStatus.POLLING,
            step="build_import",
            result=state,
            async_operation_id=importing["async_operation_id"],
        )
    operation = wait_or_defer(
        client,
        importing["async_operation_id"],
        step="build_import",
        message=f"Importing {version.version_key} into {job.environment} to build it managed",
    )
    if not operation.succeeded:
        state.pop("importing", None)
        raise JobFailed(
            "build_import_failed",
            f"{job.environment} could not import the unmanaged package: {operation.error(client.environment_url)}",
        )
    state.pop("importing", None)
    state["imported"] = True
    job_mark_step(job, status=JobStatus.POLLING, step="build_imported", result=state)
