"""The solution registry: solutions, their immutable versions and cached diffs between versions.

Nothing here is ever deleted: there is no delete path for solutions, versions or artifacts (every
foreign key onto them is PROTECT). An artifact may be needed as long as an environment has that
version installed or a promotion (or an approval bound to its SHA-256) references it; until a
retention policy can prove neither is the case, keeping everything is the only safe rule.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from solutions.choices import Flavour, SourceCredentialKind, SourceKind


class Solution(models.Model):
    """A Dataverse solution the portal manages, owned by one team.

    `home_environment` is the development environment it is exported from; `pipeline` is the one
    whose development environment is that home (set at registration, None when no pipeline starts
    there yet). The publisher is copied from the first package seen; later packages must match it.
    """

    unique_name = models.CharField(max_length=100)
    display_name = models.CharField(max_length=255, blank=True)
    publisher_unique_name = models.CharField(max_length=100, blank=True)
    publisher_prefix = models.CharField(max_length=20, blank=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="solutions")
    pipeline = models.ForeignKey(
        "deployments.Pipeline", on_delete=models.PROTECT, null=True, blank=True, related_name="solutions"
    )
    home_environment = models.ForeignKey(
        "environments.Environment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="home_solutions",
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["unique_name"]
        constraints = [
            # Dataverse compares unique names case-insensitively.
            models.UniqueConstraint(Lower("unique_name"), name="solution_unique_name_ci"),
        ]
        indexes = [
            # Lists order by the exact name (solutions, and versions grouped by solution); the unique
            # index above is on lower(name) and cannot serve that order, which made every version
            # page sort all versions.
            models.Index(fields=["unique_name"], name="solution_unique_name_order_idx"),
        ]

    def __str__(self) -> str:
        return self.unique_name


class SolutionVersion(models.Model):
    """One version of a solution: identity (solution, version_key), with a managed and an unmanaged slot.

    `version` is the text as first declared in solution.xml (`1.4`), `version_key` its four-part
    form (`1.4.0.0`); the integer parts order versions numerically (1.10.0.0 > 1.9.0.0). Each slot is
    an artifact: storage path, SHA-256, size, the parsed manifest, when and by whom it was stored.
    A filled slot never changes (services refuse another checksum with `version_exists`); an empty
    slot may be filled later. `source_*` say where the version came from: exported by a job from an
    environment, uploaded by a user, or re-versioned from `restores_version` for a rollback.
    """

    solution = models.ForeignKey(Solution, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=50)
    version_key = models.CharField(max_length=50)
    major = models.PositiveIntegerField()
    minor = models.PositiveIntegerField()
    build = models.PositiveIntegerField()
    revision = models.PositiveIntegerField()
    release_notes = models.TextField(blank=True)
    # Counts per component kind etc., small enough for list pages (the full manifests stay in the slots).
    manifest_summary = models.JSONField(default=dict, blank=True)

    source_kind = models.CharField(max_length=20, choices=SourceKind.choices)
    source_environment = models.ForeignKey(
        "environments.Environment", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    source_job = models.ForeignKey("jobs.Job", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    restores_version = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversioned_as"
    )
    # Provenance of a version built from source control: the repository, the ref asked for, the commit it
    # resolved to and the folder packed (empty for every other source kind).
    source_repository_url = models.CharField(max_length=500, blank=True)
    source_ref = models.CharField(max_length=255, blank=True)
    source_commit = models.CharField(max_length=40, blank=True)
    source_folder = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    managed_path = models.CharField(max_length=500, blank=True)
    managed_sha256 = models.CharField(max_length=64, blank=True)
    managed_size = models.BigIntegerField(null=True, blank=True)
    managed_manifest = models.JSONField(null=True, blank=True)
    managed_uploaded_at = models.DateTimeField(null=True, blank=True)
    managed_uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    unmanaged_path = models.CharField(max_length=500, blank=True)
    unmanaged_sha256 = models.CharField(max_length=64, blank=True)
    unmanaged_size = models.BigIntegerField(null=True, blank=True)
    unmanaged_manifest = models.JSONField(null=True, blank=True)
    unmanaged_uploaded_at = models.DateTimeField(null=True, blank=True)
    unmanaged_uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["solution", "-major", "-minor", "-build", "-revision"]
        constraints = [
            models.UniqueConstraint(fields=["solution", "version_key"], name="solution_version_unique"),
            models.CheckConstraint(
                condition=~Q(managed_sha256="") | ~Q(unmanaged_sha256=""), name="solution_version_has_an_artifact"
            ),
            # A slot is all filled or all empty.
            models.CheckConstraint(
                condition=(Q(managed_sha256="") & Q(managed_path="") & Q(managed_size__isnull=True))
                | (~Q(managed_sha256="") & ~Q(managed_path="") & Q(managed_size__isnull=False)),
                name="solution_version_managed_slot_whole",
            ),
            models.CheckConstraint(
                condition=(Q(unmanaged_sha256="") & Q(unmanaged_path="") & Q(unmanaged_size__isnull=True))
                | (~Q(unmanaged_sha256="") & ~Q(unmanaged_path="") & Q(unmanaged_size__isnull=False)),
                name="solution_version_unmanaged_slot_whole",
            ),
        ]
        indexes = [
            # The exact order of a solution's versions (selectors.VERSION_ORDER, then pk), so lists read
            # versions from the index in order instead of sorting: a deep page of the versions list
            # (OFFSET 150,000) walks solutions by name and each one's versions from here.
            models.Index(
                fields=["solution", "-major", "-minor", "-build", "-revision", "id"], name="solution_version_order_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.solution.unique_name} {self.version}"

    def slot(self, flavour: str) -> ArtifactSlot:
        """The artifact slot of `flavour` (managed or unmanaged) as a small read-only view."""
        Flavour(flavour)  # ValueError for anything else
        return ArtifactSlot(
            flavour=flavour,
            path=getattr(self, f"{flavour}_path"),
            sha256=getattr(self, f"{flavour}_sha256"),
            size=getattr(self, f"{flavour}_size"),
            uploaded_at=getattr(self, f"{flavour}_uploaded_at"),
            uploaded_by_id=getattr(self, f"{flavour}_uploaded_by_id"),
        )

    def slots(self) -> list[ArtifactSlot]:
        """Both slots, managed first."""
        return [self.slot(flavour) for flavour in Flavour.values]

    @property
    def flavours(self) -> list[str]:
        """The flavours stored for this version."""
        return [slot.flavour for slot in self.slots() if slot.stored]

    def manifest(self, flavour: str) -> dict[str, Any] | None:
        Flavour(flavour)
        manifest: dict[str, Any] | None = getattr(self, f"{flavour}_manifest")
        return manifest


class ArtifactSlot:
    """One flavour of a version as read from its row (not a model; slots are columns of SolutionVersion)."""

    __slots__ = ("flavour", "path", "sha256", "size", "uploaded_at", "uploaded_by_id")

    def __init__(
        self, *, flavour: str, path: str, sha256: str, size: int | None, uploaded_at: Any, uploaded_by_id: int | None
    ) -> None:
        self.flavour = flavour
        self.path = path
        self.sha256 = sha256
        self.size = size
        self.uploaded_at = uploaded_at
        self.uploaded_by_id = uploaded_by_id

    @property
    def stored(self) -> bool:
        return bool(self.sha256)

    def __repr__(self) -> str:
        return f"ArtifactSlot({self.flavour}, sha256={self.sha256[:12] or '-'})"


class VersionDiff(models.Model):
    """A computed component-level diff between two artifacts, keyed by their SHA-256s (old → new).

    Artifacts are immutable, so a diff of the same two files never changes: it is computed once and
    read from here afterwards. This is a cache of derived data, not a record, so it is not audited.
    """

    old_sha256 = models.CharField(max_length=64)
    new_sha256 = models.CharField(max_length=64)
    result = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["old_sha256", "new_sha256"], name="version_diff_unique_pair"),
        ]

    def __str__(self) -> str:
        return f"diff {self.old_sha256[:12]} → {self.new_sha256[:12]}"


class SourceBinding(models.Model):
    """The Git repository a solution's versions are committed to and built from (docs/source-control.md).

    A binding belongs to one solution, or to a pipeline, whose solutions without a binding of their own use it
    (each in its own folder). `url` is https (with a token), ssh (with a private key) or, outside production, a
    local path under ALM_GIT_LOCAL_ROOT. The secret is encrypted (alm_portal/crypto.py) and write-only: no page,
    API response or audit event shows it. Versions go to `<root_folder>/<UniqueName>/src/` on `branch`.
    """

    solution = models.OneToOneField(
        Solution, on_delete=models.PROTECT, null=True, blank=True, related_name="source_binding"
    )
    pipeline = models.OneToOneField(
        "deployments.Pipeline", on_delete=models.PROTECT, null=True, blank=True, related_name="source_binding"
    )
    url = models.CharField(max_length=500)
    branch = models.CharField(max_length=200, default="main")
    root_folder = models.CharField(max_length=200, default="solutions")
    username = models.CharField(max_length=100, blank=True)
    credential_kind = models.CharField(
        max_length=10, choices=SourceCredentialKind.choices, default=SourceCredentialKind.NONE
    )
    secret_ciphertext = models.TextField(blank=True)
    # Where a build from source is imported unmanaged and exported managed (the ALM Accelerator's build
    # environment); without one, a build registers the unmanaged package only.
    build_environment = models.ForeignKey(
        "environments.Environment", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(solution__isnull=False, pipeline__isnull=True)
                | Q(solution__isnull=True, pipeline__isnull=False),
                name="source_binding_of_a_solution_or_a_pipeline",
            ),
        ]

    def __str__(self) -> str:
        owner = self.solution.unique_name if self.solution is not None else f"pipeline {self.pipeline_id}"
        return f"{owner} → {self.url}#{self.branch}"

    def folder_for(self, solution: Solution) -> str:
        """Where `solution`'s unpacked source lives in the repository."""
        root = self.root_folder.strip("/")
        return f"{root}/{solution.unique_name}/src" if root else f"{solution.unique_name}/src"

    @property
    def folder(self) -> str:
        """The folder of the bound solution; a pipeline's binding names the pattern its solutions' folders follow."""
        if self.solution_id is not None:
            return self.folder_for(self.solution)  # type: ignore[arg-type]
        root = self.root_folder.strip("/")
        return f"{root}/<UniqueName>/src" if root else "<UniqueName>/src"


class VersionCommit(models.Model):
    """A version as committed to a repository: the record of provenance from the registry to Git.

    One row per version, repository and set of flavours committed (a flavour stored later is committed again).
    `folder_tree` is the Git tree of the folder as the portal wrote it; the next commit compares the branch's
    folder with it, and `diverged` records that somebody else had changed the folder in between (source drift).
    Rows outlive the binding: unbinding keeps the history of what was committed where.
    """

    version = models.ForeignKey(SolutionVersion, on_delete=models.PROTECT, related_name="source_commits")
    repository_url = models.CharField(max_length=500)
    branch = models.CharField(max_length=200)
    folder = models.CharField(max_length=300)
    flavours = models.CharField(max_length=30)
    commit = models.CharField(max_length=40)
    tag = models.CharField(max_length=255)
    parent = models.CharField(max_length=40, blank=True)
    folder_tree = models.CharField(max_length=40)
    diverged = models.BooleanField(default=False)
    job = models.ForeignKey("jobs.Job", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    committed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-committed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "repository_url", "flavours"], name="version_commit_once_per_repository"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} @ {self.commit[:12]}"
