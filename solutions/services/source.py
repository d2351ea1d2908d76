"""Every version in Git (docs/source-control.md): the repository comes from the solution's binding (bindings.py).

- source_commit_enqueue(): called by every use case that gives the registry a version (export, upload,
  rollback re-version, build); a durable job then unpacks the version into `<root>/<UniqueName>/src/` and
  commits, tags and pushes it (source_commit_run).
- Building versions from commits is builds.py.

The Git work itself is alm_portal/sourcecontrol (the git command line, no Django); this module decides what to
commit and records what was committed, each change with its audit event in the same transaction.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from alm_portal import sourcecontrol as git
from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.dataverse.package import PackageError
from alm_portal.dataverse.packager import PackageType, unpack_solution
from alm_portal.jobs.choices import ACTIVE_JOB_STATUSES, JobStatus
from alm_portal.jobs.errors import JobDeferred, JobFailed
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import crash_point, job_enqueue
from solutions.choices import Flavour, SolutionJobKind, SourceKind
from solutions.models import SolutionVersion, VersionCommit
from solutions.services.bindings import binding_for, check_address, git_remote_for, work_dir_for
from solutions.storage import artifact_storage

TRANSIENT_RETRY_SECONDS = 30
MAX_TRANSIENT_ATTEMPTS = 10
# A trailer names the portal's version in every commit: how a replayed job finds its own commit.
VERSION_TRAILER = "ALM-Portal-Version-Id"


def _flavour_set(version: SolutionVersion) -> str:
    return "+".join(version.flavours)


def source_commit_enqueue(*, version: SolutionVersion, context: AuditContext) -> Job | None:
    """Queue the commit of `version` to its solution's repository; nothing when the solution is not bound, the
    version is committed there with the flavours it has, or a commit job for it is already waiting."""
    binding = binding_for(version.solution)
    if binding is None:
        return None
    flavours = _flavour_set(version)
    if VersionCommit.objects.filter(version=version, repository_url=binding.url, flavours=flavours).exists():
        return None
    waiting = (JobStatus.PENDING, *ACTIVE_JOB_STATUSES)
    queued = Job.objects.filter(
        kind=SolutionJobKind.SOURCE_COMMIT, status__in=waiting, params__version_id=version.pk
    ).first()
    if queued is not None:
        return queued
    return job_enqueue(
        kind=SolutionJobKind.SOURCE_COMMIT,
        environment=None,
        params={"version_id": version.pk, "solution_id": version.solution_id, "version": version.version_key},
        context=context,
    )


def read_artifact(version: SolutionVersion, flavour: str) -> bytes:
    with artifact_storage().open(version.slot(flavour).path, "rb") as stored:
        data: bytes = stored.read()
    return data


def _unpacked_files(version: SolutionVersion) -> dict[str, bytes]:
    """The version in SolutionPackager's layout: a "Both" unpack when it has both flavours."""
    flavours = version.flavours
    if len(flavours) == 2:
        unpacked = unpack_solution(
            read_artifact(version, Flavour.UNMANAGED),
            package_type=PackageType.BOTH,
            managed_source=read_artifact(version, Flavour.MANAGED),
        )
    else:
        unpacked = unpack_solution(read_artifact(version, flavours[0]))
    return unpacked.files


def _person_for(user: User | None) -> git.Person:
    if user is None:
        return _committer()
    # The name the portal shows for the person (a display name from the directory first).
    name = user.shown_name
    email = user.email or f"{user.username}@users.alm-portal.invalid"
    return git.Person(name=name, email=email)


def _committer() -> git.Person:
    return git.Person(name=settings.ALM_GIT_COMMITTER_NAME, email=settings.ALM_GIT_COMMITTER_EMAIL)


def _version_author(version: SolutionVersion) -> User | None:
    for flavour in (Flavour.UNMANAGED, Flavour.MANAGED):
        uploaded_by = version.slot(flavour).uploaded_by_id
        if uploaded_by is not None:
            return User.objects.filter(pk=uploaded_by).first()
    return version.created_by


def _tag_for(version: SolutionVersion, flavours: str, *, first: bool) -> str:
    # Tags never move: a flavour stored after the first commit gets a commit (and tag) of its own.
    base = f"{version.solution.unique_name}/{version.version_key}"
    return base if first else f"{base}+{flavours.replace('+', '-')}"


def git_failure(exc: git.GitError, job: Job) -> Exception:
    if exc.transient and job.attempts < MAX_TRANSIENT_ATTEMPTS:
        return JobDeferred(TRANSIENT_RETRY_SECONDS, status=job.status, message=f"{exc.message}; retrying")
    return JobFailed(exc.code, exc.message)


def source_commit_run(*, job: Job, context: AuditContext) -> dict[str, Any]:
    """Carry out a commit job; safe to run again after a crash at any point (the tag and the version trailer
    find a commit already pushed, and the row is written once)."""
    version = (
        SolutionVersion.objects.select_related("solution", "created_by").filter(pk=job.params.get("version_id")).first()
    )
    if version is None:
        raise JobFailed("version_not_found", "The version to commit is not registered.")
    binding = binding_for(version.solution)
    if binding is None:
        return {"skipped": f"{version.solution.unique_name} is no longer bound to a repository."}
    flavours = _flavour_set(version)
    done = VersionCommit.objects.filter(version=version, repository_url=binding.url, flavours=flavours).first()
    if done is not None:
        return _commit_result(done)
    previous = VersionCommit.objects.filter(
        version__solution_id=version.solution_id, repository_url=binding.url, branch=binding.branch
    ).first()
    first_of_version = not VersionCommit.objects.filter(version=version, repository_url=binding.url).exists()
    try:
        files = _unpacked_files(version)
    except PackageError as exc:
        raise JobFailed("unpack_failed", f"The version could not be unpacked: {exc}") from exc
    author = _person_for(_version_author(version))
    message = (
        f"{version.solution.unique_name} {version.version_key} ({flavours.replace('+', ' and ')})\n\n"
        f"{version.get_source_kind_display()} into ALM Portal."
    )
    try:
        check_address(binding)
        outcome = git.commit_version(
            git_remote_for(binding),
            branch=binding.branch,
            folder=binding.folder_for(version.solution),
            files=files,
            author=author,
            committer=_committer(),
            message=message,
            trailers={VERSION_TRAILER: f"{version.pk}/{flavours}"},
            tag=_tag_for(version, flavours, first=first_of_version),
            expected_folder_tree=_expected_folder_tree(version, previous),
            work_dir=work_dir_for(binding),
        )
    except git.GitError as exc:
        raise git_failure(exc, job) from exc
    crash_point("after_git_push")
    with transaction.atomic():
        committed, created = VersionCommit.objects.get_or_create(
            version=version,
            repository_url=binding.url,
            flavours=flavours,
            defaults={
                "branch": binding.branch,
                "folder": binding.folder_for(version.solution),
                "commit": outcome.commit,
                "tag": outcome.tag,
                "parent": outcome.parent or "",
                "folder_tree": outcome.folder_tree,
                "diverged": outcome.diverged,
                "job": job,
            },
        )
        if created:
            record(
                context=context,
                action="solution_version.committed",
                target=version,
                related=version.solution,
                after={
                    "repository_url": binding.url,
                    "branch": binding.branch,
                    "folder": binding.folder_for(version.solution),
                    "flavours": flavours,
                    "commit": outcome.commit,
                    "tag": outcome.tag,
                    "diverged": outcome.diverged,
                    "pushed": outcome.created,
                },
            )
    return _commit_result(committed)


def _expected_folder_tree(version: SolutionVersion, previous: VersionCommit | None) -> str | None:
    """The folder as the portal last wrote it, to tell changes made outside the portal (source drift). A version
    built from source came from the branch itself, so changes there since are the ones it was built from."""
    if version.source_kind == SourceKind.BUILT or previous is None:
        return None
    return previous.folder_tree


def _commit_result(committed: VersionCommit) -> dict[str, Any]:
    return {
        "version_id": committed.version_id,
        "repository_url": committed.repository_url,
        "branch": committed.branch,
        "commit": committed.commit,
        "tag": committed.tag,
        "diverged": committed.diverged,
    }
