"""The checks of a pre-flight run (the codes are listed in deployments/preflight/__init__.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from alm_portal.dataverse import errors as dv
from alm_portal.dataverse import privileges
from alm_portal.dataverse.client import DataverseClient
from deployments.choices import ImportMode, RollbackStrategy
from deployments.models import DeploymentSettings, Promotion
from deployments.preflight.data_loss import (
    check_diff,
    check_holding_data_loss,
    check_uninstall_data_loss,
    count_report_rows,
)
from deployments.preflight.inputs import (
    HOLDING_SUFFIX,
    TargetFacts,
    current_settings_of,
    local_artifact,
    promotion_import_mode,
    promotion_strategy,
    read_target,
    settings_document_of,
)
from deployments.preflight.report import BLOCKER, INFO, WARNING, PreflightReport
from solutions import selectors as solution_selectors
from solutions.models import SolutionVersion

# `solution="Name (1.0.0.3)"` in a MissingDependency names the managed solution that brings the component.
_SOLUTION_REFERENCE = re.compile(r"^\s*(?P<name>[^()]+?)\s*\((?P<version>[^)]*)\)\s*$")


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
        who = client.who_am_i()
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
    check_privileges(report, promotion=promotion, client=client, user_id=who.user_id, manifest=manifest)
    if strategy in (RollbackStrategy.HOLDING_APPLY, RollbackStrategy.HOLDING_REMOVE):
        _check_holding_strategy(report, promotion=promotion, facts=facts, strategy=strategy)
        check_holding_data_loss(report, promotion=promotion, facts=facts, strategy=strategy)
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
            check_uninstall_data_loss(report, promotion=promotion, facts=facts)
        else:
            check_diff(report, promotion=promotion, version=version, facts=facts, mode=mode)
    if count_rows:
        count_report_rows(report, client=client)
    return report


def privilege_operations(*, promotion: Promotion) -> list[str]:
    """The operations (alm_portal.dataverse.privileges names) the promotion runs on its target."""
    strategy = promotion_strategy(promotion=promotion)
    if strategy == RollbackStrategy.HOLDING_APPLY:
        return [privileges.DELETE_AND_PROMOTE]
    if strategy == RollbackStrategy.HOLDING_REMOVE:
        return [privileges.UNINSTALL]
    mode = promotion_import_mode(promotion=promotion) or ImportMode.UPGRADE
    imported = privileges.STAGE_AND_UPGRADE if mode == ImportMode.UPGRADE else privileges.IMPORT
    if strategy == RollbackStrategy.UNINSTALL_REINSTALL:
        return [privileges.UNINSTALL, imported]
    return [imported]


def check_privileges(
    report: PreflightReport,
    *,
    promotion: Promotion,
    client: DataverseClient,
    user_id: uuid.UUID,
    manifest: Mapping[str, Any],
) -> None:
    """Block when the target's deploying identity lacks a privilege the promotion's operations need.

    Reads the identity's privileges (RetrieveUserPrivileges of the WhoAmI user) and compares them with what
    the operations need for this solution's component types (alm_portal.dataverse.privileges): a missing one
    is the blocker ``target_privileges_missing`` naming it and what to grant; privileges that cannot be read
    are the warning ``target_privileges_unknown``.
    """
    environment = promotion.target_environment
    try:
        held = {privilege.name for privilege in client.retrieve_user_privileges(user_id)}
    except dv.TransientError:
        raise
    except dv.DataverseError as exc:
        report.add(
            "target_privileges_unknown",
            WARNING,
            f"The privileges of {environment}'s deploying identity could not be read ({exc.message}); a missing "
            "privilege would only show when Dataverse refuses the import.",
            error_code=exc.code or type(exc).__name__,
        )
        return
    types = privileges.manifest_component_types(manifest)
    missing: dict[str, dict[str, Any]] = {}
    operations = privilege_operations(promotion=promotion)
    for operation in operations:
        for need in privileges.missing(held, operation, types):
            entry = missing.setdefault(
                need.privilege, {"privilege": need.privilege, "needed_by": [], "source": need.source}
            )
            entry["needed_by"].append(privileges.OPERATION_LABELS[operation])
    labels = " and ".join(privileges.OPERATION_LABELS[operation] for operation in operations)
    if not missing:
        report.add(
            "target_privileges",
            INFO,
            f"{environment}'s deploying identity holds every privilege {labels} needs for this solution.",
            user_id=str(user_id),
        )
        return
    names = sorted(missing)
    report.add(
        "target_privileges_missing",
        BLOCKER,
        f"{environment}'s deploying identity lacks {', '.join(names)}, needed by {labels}: "
        f"{privileges.grant_hint(names)}.",
        user_id=str(user_id),
        missing=[missing[name] for name in names],
    )


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
