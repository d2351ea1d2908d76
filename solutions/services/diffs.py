"""Component-level diffs between versions, and against what an environment's inventory says is installed."""

from __future__ import annotations

import tempfile
from datetime import datetime
from typing import Any, Protocol

from django.db import IntegrityError, transaction

from alm_portal.dataverse.package import SolutionManifest, diff_manifests, read_solution_zip
from alm_portal.errors import ValidationFailed
from solutions import selectors
from solutions.choices import Flavour
from solutions.errors import ArtifactMissing
from solutions.models import SolutionVersion, VersionDiff
from solutions.storage import CHUNK_BYTES, artifact_storage


class InstalledSolution(Protocol):
    """What an environment's inventory row says about an installed solution (duck-typed)."""

    version: str
    is_managed: bool
    installed_on: datetime | None


def _diff_flavour(old: SolutionVersion, new: SolutionVersion) -> tuple[str, str]:
    """Which artifacts to compare: managed with managed when both have it (what targets get), else
    unmanaged with unmanaged, else whatever each has."""
    for flavour in (Flavour.MANAGED, Flavour.UNMANAGED):
        if old.slot(flavour).stored and new.slot(flavour).stored:
            return flavour, flavour
    old_flavours, new_flavours = old.flavours, new.flavours
    if not old_flavours or not new_flavours:
        raise ArtifactMissing("Both versions need a stored artifact to be compared.")
    return old_flavours[0], new_flavours[0]


def _manifest_of(version: SolutionVersion, flavour: str) -> SolutionManifest:
    slot = version.slot(flavour)
    if not slot.stored:
        raise ArtifactMissing(f"{version} has no {flavour} artifact.")
    storage = artifact_storage()
    if not storage.exists(slot.path):
        raise ArtifactMissing(f"The {flavour} artifact of {version} is missing from storage; run check_artifacts.")
    with storage.open(slot.path, "rb") as handle, tempfile.TemporaryFile() as local:
        while chunk := handle.read(CHUNK_BYTES):
            local.write(chunk)
        local.seek(0)
        return read_solution_zip(local)


def version_diff(*, old: SolutionVersion, new: SolutionVersion) -> dict[str, Any]:
    """Component-level diff from `old` to `new` (added, removed, changed, data_loss …), cached by the two
    artifacts' SHA-256s. Not audited: it derives data and changes nothing."""
    if old.solution_id != new.solution_id:
        raise ValidationFailed(
            "Only versions of the same solution can be compared.", details={"other": ["Another solution."]}
        )
    old_flavour, new_flavour = _diff_flavour(old, new)
    old_sha, new_sha = old.slot(old_flavour).sha256, new.slot(new_flavour).sha256
    cached = VersionDiff.objects.filter(old_sha256=old_sha, new_sha256=new_sha).first()
    if cached is None:
        with_manifests = SolutionVersion.objects.filter(pk__in=[old.pk, new.pk]).in_bulk()
        diff = diff_manifests(
            _manifest_of(with_manifests[old.pk], old_flavour), _manifest_of(with_manifests[new.pk], new_flavour)
        ).to_dict()
        try:
            with transaction.atomic():
                cached = VersionDiff.objects.create(old_sha256=old_sha, new_sha256=new_sha, result=diff)
        except IntegrityError:  # computed concurrently by another request: same input, same result
            cached = VersionDiff.objects.get(old_sha256=old_sha, new_sha256=new_sha)
    return {
        "old": {"id": old.pk, "version": old.version_key, "flavour": old_flavour, "sha256": old_sha},
        "new": {"id": new.pk, "version": new.version_key, "flavour": new_flavour, "sha256": new_sha},
        "in_registry": True,
        "message": "",
        **cached.result,
    }


def version_diff_against_installed(
    *, version: SolutionVersion, installed: InstalledSolution | None, environment_name: str = ""
) -> dict[str, Any]:
    """What deploying `version` would change in an environment, given its inventory row for the solution.

    When the installed version is in the registry this is version_diff(installed → version). When it
    was installed outside the portal (not in the registry) the diff says so and lists only what the
    inventory knows: installed version, managed flag and install date; no component changes.
    """
    where = environment_name or "the environment"
    if installed is None:
        return {
            "new": {"id": version.pk, "version": version.version_key},
            "installed": None,
            "in_registry": False,
            "message": f"{version.solution.unique_name} is not installed in {where}: everything is new.",
        }
    known = selectors.version_find(solution=version.solution, version=installed.version)
    inventory = {
        "version": installed.version,
        "is_managed": installed.is_managed,
        "installed_on": installed.installed_on.isoformat() if installed.installed_on else None,
    }
    if known is None or not known.flavours:
        return {
            "new": {"id": version.pk, "version": version.version_key},
            "installed": inventory,
            "in_registry": False,
            "message": (
                f"{where} has {version.solution.unique_name} {installed.version}, which is not in the registry "
                "(installed outside the portal): only what the inventory knows is listed, no component changes."
            ),
        }
    return {**version_diff(old=known, new=version), "installed": inventory}
