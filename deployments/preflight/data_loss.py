"""The component diff against what the target has, and the custom tables and columns an operation deletes,
with approximate row counts."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils import timezone

from alm_portal.dataverse import errors as dv
from alm_portal.dataverse.client import DataverseClient
from deployments.choices import ImportMode, RollbackStrategy
from deployments.models import Promotion
from deployments.preflight.inputs import TargetFacts
from deployments.preflight.report import INFO, WARNING, PreflightReport
from solutions import selectors as solution_selectors
from solutions.models import SolutionVersion
from solutions.services import version_diff

logger = logging.getLogger(__name__)


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
    try:
        return version_diff(old=old, new=new)
    except Exception as exc:  # a missing artifact or unreadable package: the diff is unknown, not fatal
        logger.warning("diff %s → %s failed: %s", old, new, exc)
        return None


def _refs(items: Sequence[Mapping[str, Any]], limit: int = 200) -> list[dict[str, Any]]:
    return [{"kind": i.get("kind"), "name": i.get("name"), "key": i.get("key")} for i in items[:limit]]


def check_diff(
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


def check_uninstall_data_loss(report: PreflightReport, *, promotion: Promotion, facts: TargetFacts) -> None:
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


def check_holding_data_loss(
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


def count_report_rows(report: PreflightReport, *, client: DataverseClient) -> None:
    entries = [entry for check in report.checks if check.code == "data_loss" for entry in check.details["data_loss"]]
    if not entries:
        return
    try:
        counts, as_of = count_rows(client=client, tables=[str(entry["table"]) for entry in entries])
    except dv.DataverseError as exc:
        logger.info("row counts unavailable: %s", exc)
        return
    fill_row_counts(entries, counts, as_of)
