"""Versions from people and for rollbacks: a package uploaded through a page or the API, validated, stored and
registered (creating its solution when the uploader may), and a managed artifact re-versioned above everything
for a rollback. Both store through ``artifact_register`` (registry.py), the one writer of versions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.db import IntegrityError

from alm_portal.accounts import policy
from alm_portal.accounts.models import Team, User
from alm_portal.audit.context import AuditContext
from alm_portal.dataverse.package import (
    PackageError,
    SolutionManifest,
    reversion_package,
)
from alm_portal.dataverse.package import SolutionVersion as PackageVersion
from alm_portal.errors import PermissionRefused, ValidationFailed
from solutions import selectors
from solutions.choices import Flavour, SourceKind
from solutions.errors import ArtifactMissing, InvalidPackage, PayloadTooLarge, VersionExists
from solutions.models import Solution, SolutionVersion
from solutions.storage import (
    CHUNK_BYTES,
    SpoolTooLarge,
    artifact_storage,
    file_digest,
    spooled,
)

if TYPE_CHECKING:
    from environments.models import Environment
from solutions.services.registry import (
    ArtifactOutcome,
    SolutionAlreadyRegistered,
    artifact_register,
    check_publisher,
    display_name_of,
    max_upload_bytes,
    may_change,
    read_package,
    solution_register,
)
from solutions.services.source import source_commit_enqueue


def solution_version_upload(
    *,
    file: IO[bytes],
    user: User,
    context: AuditContext,
    release_notes: str = "",
    solution: Solution | None = None,
    team: Team | None = None,
    home_environment: Environment | None = None,
) -> ArtifactOutcome:
    """Register an uploaded solution zip as (a flavour of) a version of the solution it declares.

    The file is spooled to a temporary file and hashed in chunks (never held in memory), refused past
    ALM_MAX_UPLOAD_BYTES, read by the safe package reader, then stored and registered. `solution`,
    when given, must be the one the zip declares. A solution the registry does not know yet is
    registered for `team` (or the uploader's only team) with `home_environment`.
    """
    if not policy.changes_anything(user):
        raise PermissionRefused("Auditors cannot upload solutions.")
    limit = max_upload_bytes()
    try:
        with spooled(file, max_bytes=limit) as package:
            manifest = read_package(package.path)
            if solution is not None and manifest.unique_name.casefold() != solution.unique_name.casefold():
                raise InvalidPackage(
                    f"The file holds solution {manifest.unique_name!r}, not {solution.unique_name!r}.",
                    details={"file": [f"This is {manifest.unique_name}, not {solution.unique_name}."]},
                )
            target = solution or selectors.solution_find(unique_name=manifest.unique_name)
            if target is None:
                target = _register_from_manifest(
                    manifest=manifest, user=user, team=team, home_environment=home_environment, context=context
                )
            if not may_change(user, target):
                raise PermissionRefused(
                    f"Solution {target.unique_name} belongs to a team you are not in; you cannot add versions to it."
                )
            check_publisher(target, manifest)
            outcome = artifact_register(
                solution=target,
                manifest=manifest,
                package=package,
                source_kind=SourceKind.UPLOADED,
                user=user,
                context=context,
                release_notes=release_notes,
            )
            if outcome.added:
                source_commit_enqueue(version=outcome.version, context=context)
            return outcome
    except SpoolTooLarge:
        raise PayloadTooLarge(
            f"The file is larger than the upload limit of {limit} bytes.", details={"limit": limit}
        ) from None


def _register_from_manifest(
    *,
    manifest: SolutionManifest,
    user: User,
    team: Team | None,
    home_environment: Environment | None,
    context: AuditContext,
) -> Solution:
    try:
        return solution_register(
            unique_name=manifest.unique_name,
            display_name=display_name_of(manifest),
            publisher_unique_name=manifest.publisher.unique_name,
            publisher_prefix=manifest.publisher.customization_prefix or "",
            team=_team_for_new_solution(user=user, team=team, unique_name=manifest.unique_name),
            home_environment=home_environment,
            user=user,
            context=context,
        )
    except (IntegrityError, SolutionAlreadyRegistered):
        # Registered by a concurrent upload of the same new solution a moment ago (seen by the name check
        # or, inside the race window, by the unique index): use that one.
        found = selectors.solution_find(unique_name=manifest.unique_name)
        if found is None:
            raise
        return found


def _team_for_new_solution(*, user: User, team: Team | None, unique_name: str) -> Team:
    visible = policy.team_ids_visible_to(user)
    if team is not None:
        if visible is not None and team.pk not in visible:
            raise PermissionRefused(f"You are not a member of team {team}.")
        return team
    teams = list(user.teams.all()) if visible is not None else []
    if len(teams) == 1:
        return teams[0]
    raise ValidationFailed(
        f"{unique_name} is not registered yet; choose the team that will own it.",
        details={"team": [f"Required to register the new solution {unique_name}."]},
    )


def solution_version_reversion(
    *, version: SolutionVersion, context: AuditContext, user: User | None = None, new_version: str | None = None
) -> ArtifactOutcome:
    """Register a re-versioned copy of `version`'s managed artifact, for a rollback.

    Dataverse only replaces a managed solution with a strictly higher version, so rolling back to an
    older build means importing its content under a new, higher version. Only solution.xml's Version
    differs from the original (package reader's reversion_package); the copy is registered as source
    `reversioned` with `restores_version`. `new_version` defaults to the next version allowed (above
    everything seen anywhere); one that is not above everything seen is refused (`version_exists`).
    """
    slot = version.slot(Flavour.MANAGED)
    if not slot.stored:
        raise ArtifactMissing(f"{version} has no managed artifact to re-version.", details={"flavour": "managed"})
    solution = version.solution
    highest = selectors.solution_highest_version_seen(solution=solution)
    target = selectors.parse_version(new_version) if new_version else None
    if new_version and target is None:
        raise ValidationFailed("Not a version.", details={"new_version": [f"{new_version!r} is not a version."]})
    if target is None:
        target = PackageVersion.parse(selectors.solution_next_allowed(solution=solution))
    if highest is not None and target <= highest:
        raise VersionExists(
            f"{solution.unique_name} {target.canonical} is not above {highest.canonical}, which exists already.",
            details={
                "solution": solution.unique_name,
                "version": target.canonical,
                "next_allowed": highest.bump("revision").canonical,
            },
        )
    storage = artifact_storage()
    if not storage.exists(slot.path):
        raise ArtifactMissing(f"The managed artifact of {version} is missing from storage; run check_artifacts.")
    with tempfile.TemporaryDirectory(prefix="alm-reversion-") as folder:
        original, copy = Path(folder) / "original.zip", Path(folder) / "reversioned.zip"
        with storage.open(slot.path, "rb") as source, original.open("wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                out.write(chunk)
        try:
            manifest = reversion_package(original, target, copy)
        except PackageError as refusal:
            raise InvalidPackage(refusal.message, details={"file": [refusal.message]}) from None
        outcome = artifact_register(
            solution=solution,
            manifest=manifest,
            package=file_digest(copy),
            source_kind=SourceKind.REVERSIONED,
            user=user,
            context=context,
            release_notes=f"Re-versioned copy of {version.version_key} (managed) for a rollback.",
            restores_version=version,
        )
    if outcome.added:
        source_commit_enqueue(version=outcome.version, context=context)
    return outcome
