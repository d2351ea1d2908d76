"""Reads of the solution registry: what a user may see, version ordering, "highest version seen"."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from alm_portal.accounts import policy
from alm_portal.accounts.models import User
from alm_portal.dataverse.package import PackageError
from alm_portal.dataverse.package import SolutionVersion as PackageVersion
from alm_portal.errors import ValidationFailed
from alm_portal.jobs.choices import ACTIVE_JOB_STATUSES, JobStatus
from alm_portal.jobs.models import Job
from environments.models import InventoryInterval
from solutions.choices import Flavour, SolutionJobKind
from solutions.errors import ArtifactMissing
from solutions.models import ArtifactSlot, Solution, SolutionVersion, SourceBinding, VersionCommit
from solutions.providers import deployment_reads
from solutions.storage import artifact_storage, stored_digest

VERSION_ORDER = ("-major", "-minor", "-build", "-revision")
# The full manifests are large; lists and most reads never need them.
_MANIFEST_FIELDS = ("managed_manifest", "unmanaged_manifest")
# What a version's API shape shows of others: the restored version of a re-versioned copy is joined
# (read lazily it was one query per re-versioned row), without its manifests.
_VERSION_REFERENCES = ("solution", "created_by", "source_environment", "restores_version")
_RESTORED_MANIFEST_FIELDS = tuple(f"restores_version__{name}" for name in _MANIFEST_FIELDS)


def parse_version(text: str) -> PackageVersion | None:
    """The package reader's version, or None for text that is not a solution version."""
    try:
        return PackageVersion.parse(text)
    except PackageError:
        return None


def solutions_visible_to(*, user: User) -> QuerySet[Solution]:
    """Solutions of the user's teams (every solution for admins and auditors), with what lists show.

    One query whatever the page size: references are joined and the latest version is a subquery.
    """
    latest = SolutionVersion.objects.filter(solution=OuterRef("pk")).order_by(*VERSION_ORDER)
    queryset = (
        Solution.objects.select_related("team", "pipeline", "home_environment")
        .prefetch_related(deployment_reads().deployed_prefetch())
        .annotate(
            latest_version_id=Subquery(latest.values("pk")[:1]),
            latest_version_text=Subquery(latest.values("version")[:1]),
        )
        .order_by("unique_name")
    )
    team_ids = policy.team_ids_visible_to(user)
    if team_ids is not None:
        queryset = queryset.filter(team_id__in=team_ids)
    return queryset


def versions_visible_to(*, user: User, with_manifests: bool = False) -> QuerySet[SolutionVersion]:
    """Versions of the solutions the user may see, newest first within a solution."""
    queryset = SolutionVersion.objects.select_related(*_VERSION_REFERENCES).defer(*_RESTORED_MANIFEST_FIELDS)
    if not with_manifests:
        queryset = queryset.defer(*_MANIFEST_FIELDS)
    team_ids = policy.team_ids_visible_to(user)
    if team_ids is not None:
        queryset = queryset.filter(solution__team_id__in=team_ids)
    return queryset.order_by("solution__unique_name", *VERSION_ORDER, "pk")


def solution_versions(*, solution: Solution) -> QuerySet[SolutionVersion]:
    """A solution's versions, highest first (numeric order: 1.10.0.0 above 1.9.0.0)."""
    return (
        SolutionVersion.objects.filter(solution=solution)
        .select_related(*_VERSION_REFERENCES)
        .defer(*_MANIFEST_FIELDS, *_RESTORED_MANIFEST_FIELDS)
        .order_by(*VERSION_ORDER, "pk")
    )


def solution_find(*, unique_name: str) -> Solution | None:
    """The registered solution with this unique name (compared case-insensitively, as Dataverse does)."""
    return Solution.objects.select_related("team").filter(unique_name__iexact=unique_name).first()


def version_find(*, solution: Solution, version: str) -> SolutionVersion | None:
    """The version of `solution` equivalent to `version` (2-, 3- and 4-part forms are the same version)."""
    parsed = parse_version(version)
    if parsed is None:
        return None
    return SolutionVersion.objects.filter(solution=solution, version_key=parsed.canonical).first()


def _highest(texts: Iterable[str]) -> PackageVersion | None:
    parsed = [version for version in (parse_version(text) for text in texts) if version is not None]
    return max(parsed, default=None)


def solution_inventory_versions(
    *,
    solution: Solution,
    environment_id: int | None = None,
    exclude_environment_id: int | None = None,
    current_only: bool = False,
) -> list[str]:
    """Versions of this solution that environments' inventories recorded (installed now or at any time
    the portal was watching), optionally for one environment, without one, or only the current ones."""
    rows = InventoryInterval.objects.filter(unique_name__iexact=solution.unique_name)
    if environment_id is not None:
        rows = rows.filter(environment_id=environment_id)
    if exclude_environment_id is not None:
        rows = rows.exclude(environment_id=exclude_environment_id)
    if current_only:
        rows = rows.filter(valid_to__isnull=True)
    return list(rows.values_list("version", flat=True).distinct())


def installed_solution(*, environment_id: int, unique_name: str) -> InventoryInterval | None:
    """The environment's current inventory row for the solution (what its last sync saw), if any."""
    return (
        InventoryInterval.objects.filter(
            environment_id=environment_id, unique_name__iexact=unique_name, valid_to__isnull=True
        )
        .order_by("-valid_from")
        .first()
    )


def solution_highest_version_seen(
    *,
    solution: Solution,
    exclude_environment_id: int | None = None,
    exclude_job_id: int | None = None,
) -> PackageVersion | None:
    """The highest version of `solution` seen anywhere: registry (uploads, exports and re-versioned
    rollback packages alike) and every environment's inventory.

    An export leaves out its own development environment (whose version it is about to use) and its
    own job's registrations (so a second run of the same job finds itself allowed).
    """
    registry = SolutionVersion.objects.filter(solution=solution)
    if exclude_job_id is not None:
        registry = registry.exclude(source_job_id=exclude_job_id)
    texts = list(registry.values_list("version_key", flat=True))
    texts += solution_inventory_versions(solution=solution, exclude_environment_id=exclude_environment_id)
    return _highest(texts)


def solution_next_allowed(*, solution: Solution, part: str = "revision", **exclude: Any) -> str:
    """The lowest version (bumping `part`) above every version seen anywhere; `1.0.0.0` for a new solution."""
    highest = solution_highest_version_seen(solution=solution, **exclude)
    if highest is None:
        return "1.0.0.0"
    return highest.bump(part).canonical


def solution_deployed(*, solution: Solution) -> list[dict[str, Any]]:
    """[{environment: {id, name}, version: {id, version}}]: the newest successful deployment per environment.

    A rolled-back promotion is no longer `succeeded`, so the environment shows what its rollback installed.
    Promotions belong to deployments, which answers (solutions.providers).
    """
    return deployment_reads().deployed(solution)


def artifact_for_download(*, version: SolutionVersion, flavour: str) -> ArtifactSlot:
    """The stored slot of `flavour`; ArtifactMissing (409) when that flavour was never stored."""
    if flavour not in Flavour.values:
        raise ValidationFailed(
            "Unknown flavour.", details={"flavour": [f"Must be one of {', '.join(Flavour.values)}."]}
        )
    slot = version.slot(flavour)
    if not slot.stored:
        raise ArtifactMissing(f"{version} has no {flavour} artifact.", details={"flavour": flavour})
    return slot


@dataclass(frozen=True)
class ArtifactProblem:
    reason: str  # missing | sha256_mismatch | size_mismatch
    version_id: int
    unique_name: str
    version_key: str
    flavour: str
    path: str
    detail: str = ""


@dataclass
class ArtifactCheckReport:
    checked: int = 0
    ok: int = 0
    problems: list[ArtifactProblem] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return sum(1 for problem in self.problems if problem.reason == "missing")

    @property
    def mismatched(self) -> int:
        return len(self.problems) - self.missing


def artifacts_check(*, chunk_size: int = 500) -> ArtifactCheckReport:
    """Re-read every stored artifact from storage (streamed) and compare it with its registration.

    Reads only; a problem is reported, never repaired (an artifact is evidence, and approvals are
    bound to its SHA-256).
    """
    storage = artifact_storage()
    report = ArtifactCheckReport()
    rows = (
        SolutionVersion.objects.select_related("solution")
        .only(
            "pk",
            "version_key",
            "solution__unique_name",
            *(f"{flavour}_{column}" for flavour in Flavour.values for column in ("path", "sha256", "size")),
        )
        .order_by("pk")
    )
    for version in rows.iterator(chunk_size=chunk_size):
        for flavour in Flavour.values:
            path = getattr(version, f"{flavour}_path")
            expected_sha256 = getattr(version, f"{flavour}_sha256")
            if not expected_sha256:
                continue
            report.checked += 1

            def problem(
                reason: str,
                detail: str = "",
                *,
                version: SolutionVersion = version,
                flavour: str = flavour,
                path: str = path,
            ) -> ArtifactProblem:
                return ArtifactProblem(
                    reason=reason,
                    version_id=version.pk,
                    unique_name=version.solution.unique_name,
                    version_key=version.version_key,
                    flavour=flavour,
                    path=path,
                    detail=detail,
                )

            if not storage.exists(path):
                report.problems.append(problem("missing"))
                continue
            sha256, size = stored_digest(path, storage=storage)
            if sha256 != expected_sha256:
                report.problems.append(problem("sha256_mismatch", f"expected={expected_sha256} found={sha256}"))
            elif size != getattr(version, f"{flavour}_size"):
                report.problems.append(problem("size_mismatch", f"expected={version.slot(flavour).size} found={size}"))
            else:
                report.ok += 1
    return report


def solution_export_jobs(*, solution: Solution, job_ids: Iterable[int] = ()) -> list[Job]:
    """The solution's export jobs that are waiting or running, and those of `job_ids` whatever their
    status (the ones a page showed running, to say how they ended), oldest first."""
    wanted = Q(status__in=(JobStatus.PENDING, *ACTIVE_JOB_STATUSES)) | Q(pk__in=list(job_ids))
    return list(
        Job.objects.filter(kind=SolutionJobKind.EXPORT, params__solution_id=solution.pk).filter(wanted).order_by("pk")
    )


def versions_of_jobs(*, job_ids: Iterable[int]) -> dict[int, SolutionVersion]:
    """The versions the given export jobs stored, by job id."""
    return {
        version.source_job_id: version
        for version in SolutionVersion.objects.filter(source_job_id__in=list(job_ids))
        if version.source_job_id is not None
    }


def solution_source(*, solution: Solution, commits: int = 5) -> dict[str, Any]:
    """The source-control card of a solution: its binding, its latest commits and whether the source drifted
    (somebody changed the solution's folder outside the portal before the latest commit)."""
    binding = SourceBinding.objects.select_related("build_environment").filter(solution=solution).first()
    if binding is None and solution.pipeline_id is not None:
        binding = (
            SourceBinding.objects.select_related("build_environment", "pipeline")
            .filter(pipeline_id=solution.pipeline_id)
            .first()
        )
    recent = list(
        VersionCommit.objects.filter(version__solution=solution)
        .select_related("version")
        .order_by("-committed_at", "-pk")[:commits]
    )
    builds = list(
        Job.objects.filter(kind=SolutionJobKind.SOURCE_BUILD, params__solution_id=solution.pk).order_by("-pk")[:3]
    )
    return {
        "source_binding": binding,
        "source_folder": binding.folder_for(solution) if binding is not None else "",
        "source_commits": recent,
        "source_drift": recent[0] if recent and recent[0].diverged else None,
        "source_builds": builds,
    }


def source_drift(*, user: User, limit: int = 20) -> list[VersionCommit]:
    """Source drift in solutions the user may see: the solution's newest commit found its folder changed outside
    the portal (docs/source-control.md). It stays until the portal commits the solution again."""
    newer = VersionCommit.objects.filter(
        version__solution_id=OuterRef("version__solution_id"), committed_at__gt=OuterRef("committed_at")
    )
    return list(
        VersionCommit.objects.filter(diverged=True, version__solution__in=solutions_visible_to(user=user).values("pk"))
        .exclude(Exists(newer))
        .select_related("version__solution")
        .order_by("-committed_at", "-pk")[:limit]
    )
