"""Registering solutions and their artifacts: the one path every package (upload, export, re-version) takes.

A filled slot is never replaced (another checksum is `version_exists`), an identical file is a no-op,
an empty slot of an existing version may be filled. Files go to storage before the row is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from alm_portal.accounts import policy
from alm_portal.accounts.models import Team, User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.dataverse.package import (
    ComponentKind,
    PackageError,
    SolutionManifest,
    read_solution_zip,
)
from alm_portal.errors import ValidationFailed
from environments.choices import EnvironmentKind
from solutions import selectors
from solutions.choices import Flavour
from solutions.errors import InvalidPackage, VersionExists
from solutions.models import Solution, SolutionVersion
from solutions.providers import deployment_reads
from solutions.storage import (
    SpooledFile,
    artifact_name,
    store_artifact,
)

if TYPE_CHECKING:
    from alm_portal.jobs.models import Job
    from environments.models import Environment

DEFAULT_MAX_UPLOAD_BYTES = 500 * 1024 * 1024


def max_upload_bytes() -> int:
    """ALM_MAX_UPLOAD_BYTES, 500 MiB unless configured."""
    return int(settings.ALM_MAX_UPLOAD_BYTES)


class SolutionAlreadyRegistered(ValidationFailed):
    """The unique name is taken (case-insensitively). An upload racing another upload of the same new
    solution catches it and adds its file to the solution the other one registered."""


@dataclass(frozen=True)
class ArtifactOutcome:
    """What registering one artifact did: created the version, filled an empty slot, or nothing (identical)."""

    version: SolutionVersion
    flavour: str
    created: bool
    added: bool

    @property
    def unchanged(self) -> bool:
        return not (self.created or self.added)


def may_change(user: User, solution: Solution) -> bool:
    if not policy.changes_anything(user):
        return False
    team_ids = policy.team_ids_visible_to(user)
    return team_ids is None or solution.team_id in team_ids


def _check_home(home_environment: Environment, team: Team) -> None:
    if home_environment.team_id != team.pk:
        raise ValidationFailed(
            f"{home_environment} belongs to another team; a solution's home environment must be its own team's.",
            details={"home_environment": ["Belongs to another team."]},
        )
    if home_environment.kind in (EnvironmentKind.TEST, EnvironmentKind.PRODUCTION):
        raise ValidationFailed(
            f"{home_environment} is a {home_environment.kind} environment; solutions are exported from development.",
            details={"home_environment": [f"A {home_environment.kind} environment cannot be a home."]},
        )


def _pipeline_for_home(home_environment: Environment | None) -> Any:
    if home_environment is None:
        return None
    pipelines = deployment_reads().pipelines_developing_in(home_environment)
    if len(pipelines) > 1:
        names = ", ".join(pipeline.name for pipeline in pipelines)
        raise ValidationFailed(
            f"Environment {home_environment} is the development environment of several pipelines ({names}), so "
            "the portal cannot tell which one the solution joins. Give each pipeline its own development "
            "environment, or ask an admin to choose.",
            details={"home_environment": [f"Development environment of several pipelines: {names}."]},
        )
    return pipelines[0] if pipelines else None


def solution_register(
    *,
    unique_name: str,
    team: Team,
    context: AuditContext,
    display_name: str = "",
    publisher_unique_name: str = "",
    publisher_prefix: str = "",
    home_environment: Environment | None = None,
    user: User | None = None,
) -> Solution:
    """Register a solution for `team`. It joins the pipeline whose development environment is its home.

    Refused when the name is taken (case-insensitively, as in Dataverse), when the home environment
    belongs to another team or is a test or production environment, or when it starts several pipelines.
    """
    unique_name = unique_name.strip()
    if not unique_name:
        raise ValidationFailed("A solution needs a unique name.", details={"unique_name": ["Required."]})
    if Solution.objects.filter(unique_name__iexact=unique_name).exists():
        raise SolutionAlreadyRegistered(
            f"A solution named {unique_name!r} is already registered.",
            details={"unique_name": ["Already registered."]},
        )
    if home_environment is not None:
        _check_home(home_environment, team)
    pipeline = _pipeline_for_home(home_environment)
    with transaction.atomic():
        solution = Solution.objects.create(
            unique_name=unique_name,
            display_name=display_name or unique_name,
            publisher_unique_name=publisher_unique_name,
            publisher_prefix=publisher_prefix,
            team=team,
            pipeline=pipeline,
            home_environment=home_environment,
            created_by=user,
        )
        record(
            context=context,
            action="solution.registered",
            target=solution,
            related=team,
            after={
                "unique_name": solution.unique_name,
                "display_name": solution.display_name,
                "publisher": publisher_unique_name,
                "team": team.pk,
                "home_environment": home_environment.pk if home_environment is not None else None,
                "pipeline": pipeline.pk if pipeline is not None else None,
            },
        )
    return solution


def manifest_summary(manifest: SolutionManifest) -> dict[str, Any]:
    """The small, list-friendly part of a manifest: identity, counts per component kind, settings names."""
    counts = {kind.value: 0 for kind in ComponentKind}
    for component in manifest.components():
        counts[component.kind.value] += 1
    return {
        "unique_name": manifest.unique_name,
        "display_name": display_name_of(manifest),
        "version": manifest.version.text,
        "publisher": {
            "unique_name": manifest.publisher.unique_name,
            "prefix": manifest.publisher.customization_prefix or "",
        },
        "components": {kind: count for kind, count in counts.items() if count},
        "root_components": len(manifest.root_components),
        "missing_dependencies": len(manifest.missing_dependencies),
        "environment_variables": sorted(item.schema_name for item in manifest.environment_variables),
        "connection_references": sorted(item.logical_name for item in manifest.connection_references),
    }


def display_name_of(manifest: SolutionManifest) -> str:
    names = manifest.localized_names
    return names.get(1033) or next(iter(names.values()), "") or manifest.unique_name


def _flavour_of(manifest: SolutionManifest) -> str:
    if manifest.managed not in (0, 1):
        raise InvalidPackage(
            "The package declares Managed=2 ('both'), which only unpacked sources do; upload an exported zip.",
            details={"file": ["Not an exported solution zip (Managed=2)."]},
        )
    return Flavour.MANAGED if manifest.is_managed else Flavour.UNMANAGED


def read_package(path: Path) -> SolutionManifest:
    try:
        return read_solution_zip(path)
    except PackageError as refusal:
        raise InvalidPackage(refusal.message, details={"file": [refusal.message]}) from None


def _version_exists(
    *, solution: Solution, version_key: str, flavour: str, stored: str, offered: str, **exclude: Any
) -> VersionExists:
    next_allowed = selectors.solution_next_allowed(solution=solution, **exclude)
    return VersionExists(
        f"{solution.unique_name} {version_key} already has a {flavour} artifact with another checksum; stored "
        f"artifacts never change. Give the new build a new version (next allowed: {next_allowed}).",
        details={
            "solution": solution.unique_name,
            "version": version_key,
            "flavour": flavour,
            "stored_sha256": stored,
            "offered_sha256": offered,
            "next_allowed": next_allowed,
        },
    )


def check_publisher(solution: Solution, manifest: SolutionManifest) -> None:
    expected = solution.publisher_unique_name
    found = manifest.publisher.unique_name
    if expected and found and expected.casefold() != found.casefold():
        raise InvalidPackage(
            f"The package's publisher is {found!r}, but {solution.unique_name} is published by {expected!r}.",
            details={"file": [f"Publisher {found!r} does not match {expected!r}."]},
        )


def _fill_identity(
    solution: Solution, *, publisher: str, prefix: str, display_name: str, from_version: str, context: AuditContext
) -> None:
    """Fill what registration by name could not know from a package: the publisher (unique name and
    prefix) and the display name (only while it is the unique name, registration's placeholder). In
    the caller's transaction, under its lock on the solution. Event: solution.identity_filled."""
    found: dict[str, str] = {}
    if not solution.publisher_unique_name and publisher:
        found["publisher_unique_name"] = publisher[:100]
    if not solution.publisher_prefix and prefix:
        found["publisher_prefix"] = prefix[:20]
    display_name = display_name[:255]
    if solution.display_name in ("", solution.unique_name) and display_name and display_name != solution.display_name:
        found["display_name"] = display_name
    if not found:
        return
    before = {name: getattr(solution, name) for name in found}
    Solution.objects.filter(pk=solution.pk).update(**found)
    for name, value in found.items():
        setattr(solution, name, value)
    record(
        context=context,
        action="solution.identity_filled",
        target=solution,
        before=before,
        after={**found, "from_version": from_version},
    )


def solutions_fill_identity(*, context: AuditContext) -> list[int]:
    """For solutions registered by name before their first package filled the publisher and display name
    (the export path did not), take them from their oldest version's manifest; returns the ids filled.
    Safe to run again."""
    filled: list[int] = []
    missing = Solution.objects.filter(
        Q(publisher_unique_name="") | Q(publisher_prefix="") | Q(display_name="") | Q(display_name=F("unique_name"))
    )
    for solution_id in missing.values_list("pk", flat=True):
        with transaction.atomic():
            solution = Solution.objects.select_for_update().get(pk=solution_id)
            oldest = (
                solution.versions.exclude(manifest_summary={}).order_by("major", "minor", "build", "revision").first()
            )
            if oldest is None:
                continue
            summary = oldest.manifest_summary or {}
            publisher = summary.get("publisher") or {}
            before = (solution.publisher_unique_name, solution.publisher_prefix, solution.display_name)
            _fill_identity(
                solution,
                publisher=str(publisher.get("unique_name") or ""),
                prefix=str(publisher.get("prefix") or ""),
                display_name=str(summary.get("display_name") or ""),
                from_version=oldest.version_key,
                context=context,
            )
            if before != (solution.publisher_unique_name, solution.publisher_prefix, solution.display_name):
                filled.append(solution.pk)
    return filled


def artifact_register(
    *,
    solution: Solution,
    manifest: SolutionManifest,
    package: SpooledFile,
    source_kind: str,
    user: User | None,
    context: AuditContext,
    release_notes: str = "",
    source_environment: Environment | None = None,
    source_job: Job | None = None,
    restores_version: SolutionVersion | None = None,
    provenance: dict[str, str] | None = None,
) -> ArtifactOutcome:
    """Store one artifact and put it in its slot: a new version, an empty slot filled, or a no-op.

    `provenance` (source_repository_url, source_ref, source_commit, source_folder) says which commit a version
    built from source control came from; it is written with a new version only.

    The file goes to storage before the transaction (a rollback then leaves an unreferenced file,
    which the next identical attempt reuses); the row is written under a lock on the solution, so two
    concurrent registrations of one version queue instead of racing.
    """
    flavour = _flavour_of(manifest)
    version_key = manifest.version.canonical
    exclude = {"exclude_job_id": source_job.pk} if source_job is not None else {}

    existing = SolutionVersion.objects.filter(solution=solution, version_key=version_key).first()
    if existing is not None:
        stored = existing.slot(flavour).sha256
        if stored == package.sha256:
            return ArtifactOutcome(version=existing, flavour=flavour, created=False, added=False)
        if stored:
            raise _version_exists(
                solution=solution,
                version_key=version_key,
                flavour=flavour,
                stored=stored,
                offered=package.sha256,
                **exclude,
            )

    name = store_artifact(
        package,
        name=artifact_name(
            unique_name=solution.unique_name, version_key=version_key, flavour=flavour, sha256=package.sha256
        ),
    )
    now = timezone.now()
    slot_values = {
        f"{flavour}_path": name,
        f"{flavour}_sha256": package.sha256,
        f"{flavour}_size": package.size,
        f"{flavour}_manifest": manifest.to_dict(),
        f"{flavour}_uploaded_at": now,
        f"{flavour}_uploaded_by": user,
    }
    artifact_after = {
        "flavour": flavour,
        "sha256": package.sha256,
        "size": package.size,
        "path": name,
    }
    with transaction.atomic():
        locked = Solution.objects.select_for_update().filter(pk=solution.pk).first()
        if locked is not None:
            _fill_identity(
                locked,
                publisher=manifest.publisher.unique_name,
                prefix=manifest.publisher.customization_prefix or "",
                display_name=display_name_of(manifest),
                from_version=version_key,
                context=context,
            )
            solution.display_name, solution.publisher_unique_name, solution.publisher_prefix = (
                locked.display_name,
                locked.publisher_unique_name,
                locked.publisher_prefix,
            )
        existing = SolutionVersion.objects.filter(solution=solution, version_key=version_key).first()
        if existing is None:
            major, minor, build, revision = manifest.version.padded
            version = SolutionVersion.objects.create(
                solution=solution,
                version=manifest.version.text,
                version_key=version_key,
                major=major,
                minor=minor,
                build=build,
                revision=revision,
                release_notes=release_notes,
                manifest_summary=manifest_summary(manifest),
                source_kind=source_kind,
                source_environment=source_environment,
                source_job=source_job,
                restores_version=restores_version,
                created_at=now,
                created_by=user,
                **(provenance or {}),
                **slot_values,
            )
            record(
                context=context,
                action="solution_version.created",
                target=version,
                related=solution,
                after={
                    "version": version.version,
                    "version_key": version_key,
                    "source_kind": source_kind,
                    "source_environment": source_environment.pk if source_environment is not None else None,
                    "source_job": source_job.pk if source_job is not None else None,
                    "restores_version": restores_version.pk if restores_version is not None else None,
                    "release_notes": release_notes,
                    **(provenance or {}),
                    **artifact_after,
                },
            )
            return ArtifactOutcome(version=version, flavour=flavour, created=True, added=True)

        stored = existing.slot(flavour).sha256
        if stored == package.sha256:
            return ArtifactOutcome(version=existing, flavour=flavour, created=False, added=False)
        if stored:
            raise _version_exists(
                solution=solution,
                version_key=version_key,
                flavour=flavour,
                stored=stored,
                offered=package.sha256,
                **exclude,
            )
        updates: dict[str, Any] = dict(slot_values)
        notes_before = existing.release_notes
        if release_notes and not notes_before:
            updates["release_notes"] = release_notes
        # Conditional on the slot still being empty: exactly one writer fills a slot, ever.
        changed = SolutionVersion.objects.filter(pk=existing.pk, **{f"{flavour}_sha256": ""}).update(**updates)
        if changed != 1:
            raise IntegrityError(f"slot {flavour} of version {existing.pk} was filled concurrently")
        before: dict[str, Any] = {"flavour": flavour, "sha256": ""}
        if "release_notes" in updates:
            before["release_notes"] = notes_before
            artifact_after["release_notes"] = release_notes
        record(
            context=context,
            action="solution_version.artifact_added",
            target=existing,
            related=solution,
            before=before,
            after=artifact_after,
        )
    existing.refresh_from_db()
    return ArtifactOutcome(version=existing, flavour=flavour, created=False, added=True)
