"""Pre-flight before a promotion exists: what the request form shows once a version and a stage are chosen.

It runs the checks that need no call to Dataverse, against what the portal last saw installed in the
target (its inventory) instead of the live target: the stored artifact, the previous stage, version order,
managed flag, a stuck holding solution, dependencies on other solutions, settings coverage and the component
diff with the custom tables and columns an upgrade would delete (row counts are only known once the real
pre-flight has asked the target). Nothing is written. The real pre-flight still runs when the request is
submitted, and approvers see its findings.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.utils import timezone

from alm_portal.dataverse.client import Solution as LiveSolution
from alm_portal.jobs.errors import JobFailed
from deployments import policy
from deployments.choices import ImportMode, PromotionKind, PromotionStatus
from deployments.models import Promotion, Stage
from deployments.preflight.checks import (
    _check_managed,
    _check_settings,
    _check_version_order,
    manifest_missing_dependencies,
)
from deployments.preflight.data_loss import check_diff
from deployments.preflight.inputs import HOLDING_SUFFIX, TargetFacts, current_settings_of
from deployments.preflight.report import BLOCKER, INFO, WARNING, PreflightReport
from environments.models import InventoryInterval
from solutions.choices import SourceKind
from solutions.models import SolutionVersion


def _as_live(row: InventoryInterval) -> LiveSolution:
    """An inventory row in the shape the checks read from Dataverse."""
    return LiveSolution(
        solution_id=uuid.UUID(row.solution_id) if row.solution_id else uuid.UUID(int=0),
        unique_name=row.unique_name,
        friendly_name=row.friendly_name,
        version=row.version,
        is_managed=row.is_managed,
        is_visible=True,
        installed_on=row.installed_on,
        modified_on=None,
        publisher_id=None,
        publisher=None,
        parent_solution_id=None,
        description="",
    )


def _facts_from_inventory(*, stage: Stage, unique_name: str) -> tuple[TargetFacts, set[str], datetime | None]:
    """What the last inventory sync saw in the stage's environment: the solution, its holding solution,
    every installed solution's name (for dependencies) and when the inventory was synced."""
    environment = stage.target_environment
    current = list(
        InventoryInterval.objects.filter(environment_id=environment.pk, valid_to__isnull=True).only(
            "unique_name",
            "friendly_name",
            "version",
            "is_managed",
            "solution_id",
            "installed_on",
        )
    )
    by_name = {row.unique_name.lower(): row for row in current}
    installed = by_name.get(unique_name.lower())
    holding = by_name.get((unique_name + HOLDING_SUFFIX).lower())
    facts = TargetFacts(
        installed=_as_live(installed) if installed is not None else None,
        holding=_as_live(holding) if holding is not None else None,
    )
    return facts, set(by_name), environment.inventory_synced_at


def _note_source_policy(report: PreflightReport, *, version: SolutionVersion, stage: Stage) -> None:
    """The stage's branch rule, without asking the repository (the preview runs as the form changes): a version
    not built from source is refused for certain; for a built one, the request asks whether its commit is there."""
    branch = stage.require_source_branch
    if not branch:
        return
    if version.source_kind == SourceKind.BUILT and version.source_commit:
        report.add(
            "source_policy",
            INFO,
            f"The stage {stage.name!r} accepts only versions built from a commit on the branch {branch!r}: the "
            f"request asks {version.source_repository_url} whether commit {version.source_commit[:12]} is on it.",
        )
        return
    refusal = policy.source_branch_refusal(stage=stage, version=version, on_branch=None)
    if refusal is not None:
        report.add(refusal.code, BLOCKER, refusal.message)


def promotion_preflight_preview(*, version: SolutionVersion, stage: Stage) -> PreflightReport:
    """The pre-flight findings known before submitting a request of `version` into `stage` (see the module
    docstring); the report's status is blocked / warnings / passed as the real one's."""
    report = PreflightReport()
    solution = version.solution
    environment = stage.target_environment
    membership = policy.stage_membership_refusal(solution=solution, stage=stage)
    if membership is not None:
        report.add(membership.code, BLOCKER, membership.message)
        return report
    artifact = policy.artifact_refusal(version=version)
    if artifact is not None:
        report.add(artifact.code, BLOCKER, artifact.message)
        return report
    previous = Stage.objects.filter(pipeline_id=stage.pipeline_id, order__lt=stage.order).order_by("-order").first()
    succeeded = (
        previous is not None
        and Promotion.objects.filter(version=version, stage=previous, status=PromotionStatus.SUCCEEDED).exists()
    )
    gating = policy.gating_refusal(
        kind=PromotionKind.PROMOTION, stage=stage, previous_stage=previous, succeeded_in_previous=succeeded
    )
    if gating is not None:
        report.add(gating.code, BLOCKER, gating.message)
    _note_source_policy(report, version=version, stage=stage)

    facts, installed_names, synced_at = _facts_from_inventory(stage=stage, unique_name=solution.unique_name)
    if synced_at is None:
        report.add(
            "inventory_unknown",
            WARNING,
            f"The portal has not synced the inventory of {environment} yet: what is installed there is unknown "
            "until the pre-flight asks it after you submit.",
        )
    else:
        report.add(
            "inventory_as_of",
            INFO,
            f"Compared with the inventory of {environment} synced {synced_at:%Y-%m-%d %H:%M} UTC; the pre-flight "
            "checks the live environment again after you submit.",
            as_of=synced_at.isoformat(),
        )
    # An unsaved promotion carries what the shared checks read (names, target, stage, version).
    draft = Promotion(
        kind=PromotionKind.PROMOTION,
        solution=solution,
        version=version,
        stage=stage,
        target_environment=environment,
        requested_at=timezone.now(),
    )
    full = SolutionVersion.objects.get(pk=version.pk)  # with its manifest
    manifest: Mapping[str, Any] = full.managed_manifest or {}
    _check_version_order(report, promotion=draft, version=full, facts=facts, strategy="")
    _check_managed(report, promotion=draft, manifest=manifest, facts=facts, strategy="")
    if facts.holding is not None:
        report.add(
            "holding_solution_present",
            BLOCKER,
            f"{environment} has the holding solution {facts.holding.unique_name} {facts.holding.version} from an "
            "upgrade that did not finish; every import fails until it is applied or removed.",
        )
    missing, _ = manifest_missing_dependencies(manifest=manifest, solution_names=installed_names)
    if missing:
        report.add(
            "missing_dependencies",
            BLOCKER,
            f"{environment} lacks {len(missing)} solution(s) the package depends on; the import would fail.",
            manifest=missing,
        )
    try:
        _check_settings(report, manifest=manifest, row=current_settings_of(promotion=draft))
    except JobFailed as problem:  # a stored settings document that no longer parses: the job would fail too
        report.add(problem.code, BLOCKER, problem.message)
    check_diff(report, promotion=draft, version=full, facts=facts, mode=stage.import_mode or ImportMode.UPGRADE)
    return report
