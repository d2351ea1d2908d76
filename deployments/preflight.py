"""Pre-flight: what importing a promotion's package into its target would do, checked before anyone approves.

One function reads the live target and the registry and returns a report of checks, each with a stable
code and a severity (issue 5):

- ``target_reachable`` / ``target_unreachable``: the target answers WhoAmI with our credential.
- version order against what is installed: ``version_upgrade`` / ``version_new_install`` (info),
  ``already_installed`` and ``version_lower`` (blockers; going lower is only possible through a rollback,
  ``version_rollback`` for the uninstall-and-reinstall strategy).
- ``managed_mismatch``: a managed package over an unmanaged install (or the reverse) always fails.
- ``holding_solution_present``: a stuck ``<name>_Upgrade`` makes every import fail until it is applied or
  removed (rollback strategies ``holding_apply`` / ``holding_remove``, which expect ``holding_solution_found``
  and are blocked by ``holding_solution_missing``).
- dependencies: the package's MissingDependencies that name a solution are checked against the target's
  solutions; StageSolution validates the package on the target itself. ``missing_dependencies`` and
  ``stage_validation_failed`` block; ``dependencies_ok`` (info); ``stage_solution_unavailable`` (warning).
- settings coverage: every connection reference and environment variable of the manifest has a value in
  the stage's current deployment settings: ``settings_complete`` (info), ``settings_incomplete`` (blocker),
  ``settings_package_values`` (warning: the package's own value or default will be used),
  ``settings_unused`` (info).
- the component diff against the registered version matching what the target has installed:
  ``component_diff`` (info) or ``component_diff_unknown`` (warning); in upgrade mode the custom tables and
  columns the upgrade deletes, with approximate row counts and the time they were counted: ``data_loss``
  (warning); in update mode what stays behind: ``components_kept`` (info).

Reads only: nothing here writes to Dataverse (StageSolution validates without installing) and the only
database write is the workflow's, when the job reports the result.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from alm_portal import outbound
from alm_portal.audit.context import AuditContext
from alm_portal.dataverse import errors as dv
from alm_portal.dataverse.client import DataverseClient, RetryPolicy, Timeouts
from alm_portal.dataverse.client import Solution as LiveSolution
from alm_portal.dataverse.settings_document import DeploymentSettings as SettingsDocument
from alm_portal.dataverse.settings_document import DeploymentSettingsError
from deployments.choices import ImportMode, PreflightStatus, PromotionKind, PromotionStatus, RollbackStrategy
from deployments.jobs import JobDeferred, JobFailed
from deployments.models import DeploymentSettings, Job, Promotion
from solutions import selectors as solution_selectors
from solutions.models import SolutionVersion
from solutions.storage import CHUNK_BYTES, artifact_storage

if TYPE_CHECKING:
    from environments.models import Environment

logger = logging.getLogger(__name__)

ClientFactory = Callable[["Environment"], DataverseClient]

# Pre-flight may sleep through a short Retry-After; a longer one defers the job.
PREFLIGHT_RETRY = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=5.0, max_retry_after=5.0)
PREFLIGHT_TIMEOUTS = Timeouts(connect=10.0, read=60.0, transfer_read=600.0)
# An unreachable target is looked at again this many times before pre-flight reports it as a blocker.
PREFLIGHT_TRANSIENT_ATTEMPTS = 5
PREFLIGHT_TRANSIENT_RETRY_SECONDS = 10.0

INFO, WARNING, BLOCKER = "info", "warning", "blocker"
HOLDING_SUFFIX = "_Upgrade"
# `solution="Name (1.0.0.3)"` in a MissingDependency names the managed solution that brings the component.
_SOLUTION_REFERENCE = re.compile(r"^\s*(?P<name>[^()]+?)\s*\((?P<version>[^)]*)\)\s*$")


# --- the report --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreflightCheck:
    """One finding: a stable code, its severity, a sentence for people and the facts behind it."""

    code: str
    severity: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message, "details": self.details}


@dataclass
class PreflightReport:
    """The checks of one pre-flight run; `status` is blocked / warnings / passed by the worst severity."""

    checks: list[PreflightCheck] = field(default_factory=list)
    checked_at: str = field(default_factory=lambda: timezone.now().isoformat())

    def add(self, code: str, severity: str, message: str, **details: Any) -> None:
        self.checks.append(PreflightCheck(code, severity, message, details))

    @property
    def status(self) -> str:
        severities = {check.severity for check in self.checks}
        if BLOCKER in severities:
            return PreflightStatus.BLOCKED
        if WARNING in severities:
            return PreflightStatus.WARNINGS
        return PreflightStatus.PASSED

    @property
    def blockers(self) -> list[PreflightCheck]:
        return [check for check in self.checks if check.severity == BLOCKER]

    def codes(self) -> list[str]:
        return [check.code for check in self.checks]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "checked_at": self.checked_at, "checks": [c.to_dict() for c in self.checks]}


# --- what a promotion does on its target ------------------------------------------------------------------


def promotion_import_mode(*, promotion: Promotion) -> str | None:
    """How the promotion's package is imported: upgrade / update, or None when nothing is imported
    (the holding strategies run DeleteAndPromote or an uninstall instead)."""
    strategy = promotion.rollback_strategy if promotion.kind == PromotionKind.ROLLBACK else ""
    if strategy == RollbackStrategy.REVERSION_UPGRADE:
        return ImportMode.UPGRADE
    if strategy in (RollbackStrategy.REVERSION_UPDATE, RollbackStrategy.UNINSTALL_REINSTALL):
        # Reinstalling after the uninstall is a fresh install; update is the plain ImportSolutionAsync.
        return ImportMode.UPDATE
    if strategy in (RollbackStrategy.HOLDING_APPLY, RollbackStrategy.HOLDING_REMOVE):
        return None
    return promotion.stage.import_mode


def promotion_strategy(*, promotion: Promotion) -> str:
    """The rollback strategy of a rollback promotion, "" for an ordinary promotion."""
    return promotion.rollback_strategy if promotion.kind == PromotionKind.ROLLBACK else ""


def current_settings_of(*, promotion: Promotion) -> DeploymentSettings | None:
    """The newest deployment-settings version of the promotion's stage (what pre-flight checks against)."""
    return DeploymentSettings.objects.filter(stage_id=promotion.stage_id).order_by("-version").first()


def settings_document_of(row: DeploymentSettings | None) -> SettingsDocument:
    """The parsed `pac solution create-settings` document of a settings version (empty when there is none)."""
    if row is None:
        return SettingsDocument()
    try:
        return SettingsDocument.from_dict(row.document or {})
    except DeploymentSettingsError as exc:
        raise JobFailed("settings_invalid", f"{row} is not a valid deployment-settings document: {exc}") from None


# --- artifacts ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalArtifact:
    """A local copy of a stored artifact and the SHA-256 of the bytes copied (the re-hash of DESIGN 3)."""

    path: Path
    sha256: str
    size: int


@contextmanager
def local_artifact(*, version: SolutionVersion) -> Iterator[LocalArtifact]:
    """Copy the version's managed artifact from storage to a temporary file, hashing on the way.

    The client streams the upload from a local file; the hash of the very bytes copied is what the
    runner compares with the SHA-256 the approvals were bound to. The file is removed afterwards.
    """
    slot = version.slot("managed")
    if not slot.stored:
        raise JobFailed("artifact_missing", f"{version} has no managed artifact.")
    storage = artifact_storage()
    fd, name = tempfile.mkstemp(prefix="alm-import-", suffix=".zip")
    path = Path(name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            try:
                source = storage.open(slot.path, "rb")
            except FileNotFoundError:
                raise JobFailed(
                    "artifact_missing", f"The managed artifact of {version} is missing from storage."
                ) from None
            with source:
                while chunk := source.read(CHUNK_BYTES):
                    size += len(chunk)
                    digest.update(chunk)
                    out.write(chunk)
        yield LocalArtifact(path=path, sha256=digest.hexdigest(), size=size)
    finally:
        path.unlink(missing_ok=True)


def deployment_client_for(
    environment: Environment,
    *,
    retry_policy: RetryPolicy = PREFLIGHT_RETRY,
    timeouts: Timeouts = PREFLIGHT_TIMEOUTS,
) -> DataverseClient:
    """A client for the target with its active credential, through the environments app (outbound policy,
    pinned connections, the environment's persisted Retry-After)."""
    from environments import clients
    from environments import selectors as environment_selectors

    credential = environment_selectors.active_credential(environment=environment)
    if credential is None:
        raise JobFailed("no_credential", f"{environment} has no active credential.")
    try:
        client, _material = clients.client_for(environment, credential, retry_policy=retry_policy, timeouts=timeouts)
    except outbound.OutboundRefused as refusal:
        raise JobFailed("outbound_refused", refusal.message) from None
    return client


# --- the checks -----------------------------------------------------------------------------------------------


@dataclass
class TargetFacts:
    """What the target has now, read once per pre-flight."""

    installed: LiveSolution | None
    holding: LiveSolution | None
    solution_names: set[str] | None = None


def read_target(*, client: DataverseClient, unique_name: str) -> TargetFacts:
    """The installed solution and any holding solution of `unique_name` (raises the client's errors)."""
    return TargetFacts(
        installed=client.get_solution(unique_name),
        holding=client.get_solution(unique_name + HOLDING_SUFFIX),
    )


def promotion_preflight(
    *,
    promotion: Promotion,
    client: DataverseClient,
    stage_package: bool = True,
    count_rows: bool = True,
    settings_row: DeploymentSettings | None = None,
) -> PreflightReport:
    """Check what importing `promotion` into its target would do (see the module docstring for the codes).

    `stage_package` runs StageSolution (an upload of the whole package) and `count_rows` asks the target
    for row counts; the runner's re-check just before submitting skips both, the pre-flight job does both.
    `settings_row` is the settings version to check (default: the stage's current one). Transient errors
    of the client propagate so the caller can come back later; a refusal (credential, TLS, access) becomes
    the blocker `target_unreachable`.
    """
    report = PreflightReport()
    environment = promotion.target_environment
    unique_name = promotion.solution.unique_name
    try:
        client.who_am_i()
        facts = read_target(client=client, unique_name=unique_name)
    except dv.TransientError:
        raise
    except dv.DataverseError as exc:
        report.add(
            "target_unreachable",
            BLOCKER,
            f"{environment} refused the portal's credential or connection: {exc.message}",
            error_code=exc.code or type(exc).__name__,
        )
        return report
    report.add("target_reachable", INFO, f"{environment} answers with the portal's credential.")

    strategy = promotion_strategy(promotion=promotion)
    version = SolutionVersion.objects.get(pk=promotion.version_id)
    manifest: Mapping[str, Any] = version.managed_manifest or {}
    if strategy in (RollbackStrategy.HOLDING_APPLY, RollbackStrategy.HOLDING_REMOVE):
        _check_holding_strategy(report, promotion=promotion, facts=facts, strategy=strategy)
        _check_holding_data_loss(report, promotion=promotion, facts=facts, strategy=strategy)
    else:
        mode = promotion_import_mode(promotion=promotion) or ImportMode.UPGRADE
        blocked_early = _check_version_order(
            report, promotion=promotion, version=version, facts=facts, strategy=strategy
        )
        blocked_early |= _check_managed(report, promotion=promotion, manifest=manifest, facts=facts, strategy=strategy)
        if facts.holding is not None:
            report.add(
                "holding_solution_present",
                BLOCKER,
                f"{environment} has the holding solution {facts.holding.unique_name} {facts.holding.version} from an "
                "upgrade that did not finish; every import fails until it is applied or removed (rollback "
                "strategies holding_apply / holding_remove).",
                holding=facts.holding.unique_name,
                holding_version=facts.holding.version,
            )
            blocked_early = True
        _check_dependencies(
            report,
            client=client,
            manifest=manifest,
            version=version,
            run_stage=stage_package and not blocked_early and strategy != RollbackStrategy.UNINSTALL_REINSTALL,
        )
        _check_settings(report, manifest=manifest, row=settings_row or current_settings_of(promotion=promotion))
        if strategy == RollbackStrategy.UNINSTALL_REINSTALL:
            _check_uninstall_data_loss(report, promotion=promotion, facts=facts)
        else:
            _check_diff(report, promotion=promotion, version=version, facts=facts, mode=mode)
    if count_rows:
        _count_rows(report, client=client)
    return report


def _check_version_order(
    report: PreflightReport,
    *,
    promotion: Promotion,
    version: SolutionVersion,
    facts: TargetFacts,
    strategy: str,
) -> bool:
    """Add the version-order check; True when it blocks."""
    environment = promotion.target_environment
    new = solution_selectors.parse_version(version.version_key)
    installed = facts.installed
    if installed is None:
        report.add(
            "version_new_install",
            INFO,
            f"{promotion.solution.unique_name} is not installed in {environment}: "
            f"{version.version_key} is a new install.",
            version=version.version_key,
        )
        return False
    current = solution_selectors.parse_version(installed.version)
    details = {"installed_version": installed.version, "version": version.version_key}
    if new is None or current is None:
        report.add(
            "version_unknown", WARNING, f"Cannot compare {installed.version} with {version.version_key}.", **details
        )
        return False
    if strategy == RollbackStrategy.UNINSTALL_REINSTALL:
        report.add(
            "version_rollback",
            INFO,
            f"{installed.version} is uninstalled first, then {version.version_key} is installed (a rollback).",
            **details,
        )
        return False
    if new == current:
        report.add(
            "already_installed",
            BLOCKER,
            f"{environment} has {promotion.solution.unique_name} {installed.version} already: nothing to do.",
            **details,
        )
        return True
    if new < current:
        report.add(
            "version_lower",
            BLOCKER,
            f"{environment} has {installed.version}, higher than {version.version_key}; Dataverse only imports a "
            "higher version. Going back is a rollback (a re-versioned copy of the old content).",
            **details,
        )
        return True
    report.add("version_upgrade", INFO, f"{installed.version} → {version.version_key}.", **details)
    return False


def _check_managed(
    report: PreflightReport,
    *,
    promotion: Promotion,
    manifest: Mapping[str, Any],
    facts: TargetFacts,
    strategy: str,
) -> bool:
    package_managed = manifest.get("managed") == 1
    installed = facts.installed
    if installed is None or strategy == RollbackStrategy.UNINSTALL_REINSTALL:
        return False
    if installed.is_managed == package_managed:
        return False
    installed_kind = "managed" if installed.is_managed else "unmanaged"
    package_kind = "managed" if package_managed else "unmanaged"
    report.add(
        "managed_mismatch",
        BLOCKER,
        f"{promotion.target_environment} has {promotion.solution.unique_name} as an {installed_kind} solution; "
        f"an {package_kind} package cannot replace it.",
        installed_managed=installed.is_managed,
        package_managed=package_managed,
    )
    return True


def _check_holding_strategy(
    report: PreflightReport, *, promotion: Promotion, facts: TargetFacts, strategy: str
) -> None:
    environment = promotion.target_environment
    name = promotion.solution.unique_name
    if facts.holding is None:
        report.add(
            "holding_solution_missing",
            BLOCKER,
            f"{environment} has no holding solution {name}{HOLDING_SUFFIX}: there is nothing to "
            f"{'apply' if strategy == RollbackStrategy.HOLDING_APPLY else 'remove'}.",
        )
        return
    if strategy == RollbackStrategy.HOLDING_APPLY and facts.installed is None:
        report.add(
            "holding_base_missing",
            BLOCKER,
            f"{environment} has {name}{HOLDING_SUFFIX} but not {name} itself: DeleteAndPromote needs both.",
        )
        return
    report.add(
        "holding_solution_found",
        INFO,
        f"{environment} has {name} {facts.installed.version if facts.installed else '-'} and the holding solution "
        f"{facts.holding.unique_name} {facts.holding.version}.",
        installed_version=facts.installed.version if facts.installed else None,
        holding_version=facts.holding.version,
    )


# --- dependencies --------------------------------------------------------------------------------------------


def _dependency_node(node: Mapping[str, Any] | None) -> dict[str, Any]:
    node = node or {}
    return {
        "type": node.get("type_name") or node.get("type_code"),
        "schema_name": node.get("schema_name") or node.get("id"),
        "display_name": node.get("display_name"),
        "solution": node.get("solution"),
    }


def manifest_missing_dependencies(
    *, manifest: Mapping[str, Any], solution_names: set[str]
) -> tuple[list[dict[str, Any]], int]:
    """The manifest's MissingDependencies whose required solution is not installed on the target, and how
    many could not be judged from the solution list (those name no managed solution: StageSolution
    judges them)."""
    missing: list[dict[str, Any]] = []
    unjudged = 0
    for entry in manifest.get("missing_dependencies") or []:
        required = entry.get("required") or {}
        reference = _SOLUTION_REFERENCE.match(str(required.get("solution") or ""))
        if reference is None:
            unjudged += 1
            continue
        if reference.group("name").strip().lower() in solution_names:
            continue
        missing.append({"required": _dependency_node(required), "dependent": _dependency_node(entry.get("dependent"))})
    return missing, unjudged


def _stage_dependency(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "required": {
            "type": item.get("RequiredComponentType"),
            "schema_name": item.get("RequiredComponentSchemaName") or item.get("RequiredComponentId"),
            "display_name": item.get("RequiredComponentDisplayName"),
            "parent": item.get("RequiredComponentParentSchemaName"),
        },
        "dependent": {
            "type": item.get("DependentComponentType"),
            "schema_name": item.get("DependentComponentSchemaName") or item.get("DependentComponentId"),
            "display_name": item.get("DependentComponentDisplayName"),
            "parent": item.get("DependentComponentParentSchemaName"),
        },
    }


def _is_missing_dependency_code(code: str | None) -> bool:
    return dv.error_class_for(None, code, "") is dv.MissingDependencies


def _check_dependencies(
    report: PreflightReport,
    *,
    client: DataverseClient,
    manifest: Mapping[str, Any],
    version: SolutionVersion,
    run_stage: bool,
) -> None:
    names = {solution.unique_name.lower() for solution in client.list_solutions(visible_only=False)}
    from_manifest, unjudged = manifest_missing_dependencies(manifest=manifest, solution_names=names)
    from_stage: list[dict[str, Any]] = []
    stage_errors: list[dict[str, Any]] = []
    stage_ran = False
    if run_stage:
        try:
            with local_artifact(version=version) as artifact:
                staged = client.stage_solution(artifact.path)
        except dv.TransientError:
            raise
        except dv.DataverseError as exc:
            report.add(
                "stage_solution_unavailable",
                WARNING,
                f"StageSolution could not validate the package on the target: {exc.message}",
                error_code=exc.code,
            )
        else:
            stage_ran = True
            from_stage = [_stage_dependency(item) for item in staged.missing_dependencies]
            for result in staged.validation_results:
                if result.result_type.lower() not in ("error", "failure", "failed"):
                    continue
                if _is_missing_dependency_code(result.error_code) and from_stage:
                    continue  # the same finding as the dependency list, said once
                stage_errors.append({"error_code": result.error_code, "message": result.message[:2000]})
    if from_manifest or from_stage:
        count = len(from_manifest) + len(from_stage)
        report.add(
            "missing_dependencies",
            BLOCKER,
            f"The target lacks {count} component(s) or solution(s) the package depends on; the import would fail "
            "(0x8004801D).",
            manifest=from_manifest,
            stage_solution=from_stage,
        )
    elif stage_ran or not unjudged:
        report.add(
            "dependencies_ok",
            INFO,
            "Every dependency of the package is present on the target."
            if stage_ran
            else "Every solution the package depends on is installed on the target.",
            validated_by_stage_solution=stage_ran,
        )
    for error in stage_errors:
        report.add(
            "stage_validation_failed",
            BLOCKER,
            f"StageSolution refused the package on the target: {error['message'][:500]}",
            **error,
        )


# --- settings coverage ----------------------------------------------------------------------------------------


def _check_settings(report: PreflightReport, *, manifest: Mapping[str, Any], row: DeploymentSettings | None) -> None:
    document = settings_document_of(row)
    variables = {v.schema_name.lower(): v for v in document.environment_variables if not v.is_blank}
    references = {r.logical_name.lower(): r for r in document.connection_references if not r.is_blank}
    missing: list[dict[str, Any]] = []
    package_values: list[dict[str, Any]] = []
    for reference in manifest.get("connection_references") or []:
        name = str(reference.get("logical_name") or reference.get("key") or "")
        if name.lower() not in references:
            missing.append({"kind": "connection_reference", "name": name, "connector": reference.get("connector_id")})
    for variable in manifest.get("environment_variables") or []:
        name = str(variable.get("schema_name") or variable.get("key") or "")
        if name.lower() in variables:
            continue
        packaged = variable.get("current_value") if variable.get("current_value") is not None else None
        default = variable.get("default_value")
        if packaged is not None or default is not None:
            package_values.append(
                {"kind": "environment_variable", "name": name, "value_from": "package" if packaged else "default"}
            )
        else:
            missing.append({"kind": "environment_variable", "name": name, "type": variable.get("type_name")})
    where = f"settings v{row.version}" if row is not None else "the stage's deployment settings (none yet)"
    if missing:
        report.add(
            "settings_incomplete",
            BLOCKER,
            f"{len(missing)} connection reference(s) / environment variable(s) have no value in {where}.",
            missing=missing,
            settings_version=row.version if row else None,
        )
    if package_values:
        report.add(
            "settings_package_values",
            WARNING,
            f"{len(package_values)} environment variable(s) have no value in {where}: the value carried by the "
            "package (or its default) will be used.",
            entries=package_values,
        )
    known = {str(r.get("logical_name") or "").lower() for r in manifest.get("connection_references") or []}
    known |= {str(v.get("schema_name") or "").lower() for v in manifest.get("environment_variables") or []}
    unused = [v.schema_name for v in document.environment_variables if v.schema_name.lower() not in known]
    unused += [r.logical_name for r in document.connection_references if r.logical_name.lower() not in known]
    if unused:
        report.add("settings_unused", INFO, f"{len(unused)} setting(s) name nothing in this package.", names=unused)
    if not missing and not package_values:
        report.add(
            "settings_complete",
            INFO,
            f"Every connection reference and environment variable of the package has a value in {where}.",
            settings_version=row.version if row else None,
        )


# --- diff and data loss ---------------------------------------------------------------------------------------


def _is_custom(name: str | None) -> bool:
    """Custom tables and columns carry a publisher prefix (`prefix_name`); system ones never do, and removing
    a system table from a solution does not delete it."""
    return bool(name) and "_" in str(name).strip("_")


def data_loss_entries(diff_data_loss: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The diff's removed tables/columns that carry data: custom ones only, as plan entries without counts."""
    entries = []
    for item in diff_data_loss:
        table, column = item.get("table"), item.get("column")
        if not _is_custom(table if column is None else column):
            continue
        entries.append({"table": table, "column": column, "rows": None, "as_of": None, "approximate": True})
    return entries


def _registered(promotion: Promotion, version_text: str | None) -> SolutionVersion | None:
    if not version_text:
        return None
    return solution_selectors.version_find(solution=promotion.solution, version=version_text)


def _diff(old: SolutionVersion, new: SolutionVersion) -> dict[str, Any] | None:
    from solutions.services import version_diff

    try:
        return version_diff(old=old, new=new)
    except Exception as exc:  # a missing artifact or unreadable package: the diff is unknown, not fatal
        logger.warning("diff %s → %s failed: %s", old, new, exc)
        return None


def _refs(items: Sequence[Mapping[str, Any]], limit: int = 200) -> list[dict[str, Any]]:
    return [{"kind": i.get("kind"), "name": i.get("name"), "key": i.get("key")} for i in items[:limit]]


def _check_diff(
    report: PreflightReport, *, promotion: Promotion, version: SolutionVersion, facts: TargetFacts, mode: str
) -> None:
    installed = facts.installed
    if installed is None:
        report.add(
            "component_diff",
            INFO,
            "Nothing of this solution is installed: every component is new.",
            in_registry=True,
            added=len(version.managed_manifest.get("tables") or []) if version.managed_manifest else None,
        )
        return
    known = _registered(promotion, installed.version)
    diff = _diff(known, version) if known is not None and known.slot("managed").stored else None
    if diff is None:
        report.add(
            "component_diff_unknown",
            WARNING,
            f"{promotion.target_environment} has {installed.version}, which is not in the registry with a managed "
            "artifact: the component changes (and any data an upgrade would delete) are unknown.",
            installed_version=installed.version,
        )
        return
    added, removed, changed = diff.get("added") or [], diff.get("removed") or [], diff.get("changed") or []
    report.add(
        "component_diff",
        INFO,
        f"{installed.version} → {version.version_key}: {len(added)} added, {len(removed)} removed, "
        f"{len(changed)} changed.",
        in_registry=True,
        installed_version=installed.version,
        added=_refs(added),
        removed=_refs(removed),
        changed=_refs(changed),
    )
    if mode == ImportMode.UPGRADE:
        loss = data_loss_entries(diff.get("data_loss") or [])
        if loss:
            report.add(
                "data_loss",
                WARNING,
                f"The upgrade deletes {len(loss)} custom table(s)/column(s) that {version.version_key} no longer has, "
                "with their data.",
                data_loss=loss,
            )
    elif removed:
        report.add(
            "components_kept",
            INFO,
            f"Update mode: {len(removed)} component(s) that {version.version_key} no longer has stay installed.",
            components=_refs(removed),
        )


def _manifest_tables(version: SolutionVersion | None) -> list[Mapping[str, Any]]:
    if version is None or not version.managed_manifest:
        return []
    return list(version.managed_manifest.get("tables") or [])


def _check_uninstall_data_loss(report: PreflightReport, *, promotion: Promotion, facts: TargetFacts) -> None:
    installed = facts.installed
    if installed is None:
        report.add("uninstall_nothing", INFO, "Nothing is installed to uninstall: the old version is only installed.")
        return
    known = _registered(promotion, installed.version)
    tables = [t for t in _manifest_tables(known) if _is_custom(t.get("logical_name"))]
    if known is None:
        report.add(
            "data_loss_unknown",
            WARNING,
            f"Uninstalling {installed.version} deletes every custom table it brought, with its data; that version "
            "is not in the registry, so which tables is unknown.",
        )
        return
    loss = [
        {"table": t.get("logical_name"), "column": None, "rows": None, "as_of": None, "approximate": True}
        for t in tables
    ]
    report.add(
        "data_loss" if loss else "uninstall_no_tables",
        WARNING if loss else INFO,
        f"Uninstalling {installed.version} deletes {len(loss)} custom table(s) and all their rows; reinstalling "
        "creates them again, empty."
        if loss
        else f"{installed.version} brings no custom tables: uninstalling it deletes no table data.",
        data_loss=loss,
    )


def holding_data_loss(
    *, promotion: Promotion, installed_version: str | None, holding_version: str | None, strategy: str
) -> list[dict[str, Any]] | None:
    """What applying or removing a holding solution deletes (None when a version involved is not registered).

    Apply (DeleteAndPromote): the base goes, so what the base has and the holding version lacks goes too.
    Remove (uninstall `<name>_Upgrade`): the custom tables only the holding version brought go.
    """
    base = _registered(promotion, installed_version)
    holding = _registered(promotion, holding_version)
    if base is None or holding is None:
        return None
    if strategy == RollbackStrategy.HOLDING_APPLY:
        diff = _diff(base, holding)
        return None if diff is None else data_loss_entries(diff.get("data_loss") or [])
    base_tables = {str(t.get("logical_name")).lower() for t in _manifest_tables(base)}
    return [
        {"table": t.get("logical_name"), "column": None, "rows": None, "as_of": None, "approximate": True}
        for t in _manifest_tables(holding)
        if _is_custom(t.get("logical_name")) and str(t.get("logical_name")).lower() not in base_tables
    ]


def _check_holding_data_loss(
    report: PreflightReport, *, promotion: Promotion, facts: TargetFacts, strategy: str
) -> None:
    if facts.holding is None:
        return
    loss = holding_data_loss(
        promotion=promotion,
        installed_version=facts.installed.version if facts.installed else None,
        holding_version=facts.holding.version,
        strategy=strategy,
    )
    if loss is None:
        report.add(
            "data_loss_unknown",
            WARNING,
            "The installed or the holding version is not in the registry: what this deletes is unknown.",
        )
    elif loss:
        report.add(
            "data_loss", WARNING, f"This deletes {len(loss)} custom table(s)/column(s) with their data.", data_loss=loss
        )


def count_rows(*, client: DataverseClient, tables: Sequence[str]) -> tuple[dict[str, int], str]:
    """Approximate row counts of `tables` (RetrieveTotalRecordCount: a cached snapshot, not a live count)
    and when they were asked for. Tables the target does not know are left out."""
    as_of = timezone.now().isoformat()
    names = sorted({name for name in tables if name})
    if not names:
        return {}, as_of
    try:
        return client.retrieve_total_record_count(names), as_of
    except dv.NotFound:
        pass  # one unknown table fails the whole call: ask one by one
    counts: dict[str, int] = {}
    for name in names:
        try:
            counts.update(client.retrieve_total_record_count([name]))
        except dv.NotFound:
            continue
    return counts, as_of


def fill_row_counts(entries: list[dict[str, Any]], counts: Mapping[str, int], as_of: str) -> None:
    """Write counts into data-loss entries in place (a column's loss counts its table's rows)."""
    lowered = {name.lower(): value for name, value in counts.items()}
    for entry in entries:
        rows = lowered.get(str(entry.get("table") or "").lower())
        entry["rows"] = rows
        entry["as_of"] = as_of if rows is not None else None
        entry["approximate"] = True


def _count_rows(report: PreflightReport, *, client: DataverseClient) -> None:
    entries = [entry for check in report.checks if check.code == "data_loss" for entry in check.details["data_loss"]]
    if not entries:
        return
    try:
        counts, as_of = count_rows(client=client, tables=[str(entry["table"]) for entry in entries])
    except dv.DataverseError as exc:
        logger.info("row counts unavailable: %s", exc)
        return
    fill_row_counts(entries, counts, as_of)


# --- the job --------------------------------------------------------------------------------------------------


def promotion_for_job(*, job: Job) -> Promotion | None:
    """The promotion a pre-flight or run job works for: `params.promotion_id`, else the row that names the job."""
    queryset = Promotion.objects.select_related("solution", "version", "stage", "target_environment")
    promotion_id = (job.params or {}).get("promotion_id")
    if promotion_id:
        return queryset.filter(pk=promotion_id).first()
    return queryset.filter(preflight_job_id=job.pk).first() or queryset.filter(run_job_id=job.pk).first()


def _transient_wait(exc: dv.TransientError, attempt: int) -> float:
    if exc.retry_after:
        return float(exc.retry_after)
    return min(60.0, PREFLIGHT_TRANSIENT_RETRY_SECONDS * attempt)


def preflight_run(*, job: Job, context: AuditContext, client_factory: ClientFactory | None = None) -> dict[str, Any]:
    """Carry out a PREFLIGHT job: check the promotion against its target and report the result to the workflow
    (`promotion_preflight_finished`). Safe to run again: a result already reported by this job is returned
    as it is, and an unreachable target is looked at again a few times before it becomes a blocker."""
    from deployments import workflow

    promotion = promotion_for_job(job=job)
    if promotion is None:
        raise JobFailed("promotion_not_found", "The promotion of this pre-flight job does not exist.")
    if promotion.preflight_job_id not in (None, job.pk):
        return {"superseded_by_job": promotion.preflight_job_id}
    if promotion.preflight_job_id == job.pk and promotion.preflight_status != PreflightStatus.PENDING:
        return dict(promotion.preflight_result or {})
    if promotion.status in (PromotionStatus.CANCELLED, PromotionStatus.REJECTED):
        return {"skipped": f"promotion is {promotion.status}"}

    try:
        client = (client_factory or deployment_client_for)(promotion.target_environment)
    except JobFailed as refusal:
        report = PreflightReport()
        report.add("target_unreachable", BLOCKER, refusal.message, error_code=refusal.code)
    else:
        try:
            with client:
                report = promotion_preflight(promotion=promotion, client=client)
        except dv.TransientError as exc:
            if job.attempts < PREFLIGHT_TRANSIENT_ATTEMPTS:
                raise JobDeferred(
                    _transient_wait(exc, job.attempts), status=job.status, message=f"Target busy or unreachable: {exc}"
                ) from exc
            report = PreflightReport()
            report.add(
                "target_unreachable",
                BLOCKER,
                f"{promotion.target_environment} did not answer after {job.attempts} attempts: {exc.message}",
                error_code=exc.code or type(exc).__name__,
            )
    result = report.to_dict()
    workflow.promotion_preflight_finished(
        promotion_id=promotion.pk, status=report.status, result=result, context=context
    )
    return result
