"""The import job log in ``importjob.data`` and RetrieveFormattedImportJobResults' spreadsheet.

Shape per docs/dataverse.md §8.3: the documented access paths are ``//solutionManifest/UniqueName``,
``//solutionManifest/result/@result`` and per-component sections like ``//optionSets/optionSet`` with a
``LocalizedName`` attribute whose first child element carries ``result``, ``errorcode`` and
``errortext`` (ALM-API "Tracking import success"). Root attributes and the other section names follow
3P fixtures modelled on real logs (UNCONFIRMED, see unconfirmed.IMPORT_LOG_ROOT_ATTRIBUTES).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from . import unconfirmed
from .package import SolutionPackage

# Log section (package.Component.section) -> (container element, item element)
SECTIONS = {
    "entities": ("entities", "entity"),
    "optionSets": ("optionSets", "optionSet"),
    "entityRelationships": ("entityRelationships", "entityRelationship"),
    "roles": ("roles", "role"),
    "workflows": ("workflows", "workflow"),
    "dashboards": ("dashboards", "dashboard"),
    "webResources": ("webResources", "webResource"),
    "siteMaps": ("siteMaps", "siteMap"),
    "appModules": ("appModules", "appModule"),
    "pluginAssemblies": ("pluginAssemblies", "pluginAssembly"),
    "sdkSteps": ("sdkMessageProcessingSteps", "sdkMessageProcessingStep"),
    "canvasApps": ("canvasApps", "canvasApp"),
    "connectors": ("connectors", "connector"),
    "connectionReferences": ("connectionReferences", "connectionReference"),
    "environmentVariableDefinitions": ("environmentVariableDefinitions", "environmentVariableDefinition"),
    "bots": ("bots", "bot"),
    "botComponents": ("botComponents", "botComponent"),
}


@dataclass
class Outcome:
    """How an import ended: success, or the error code/text and where it was reported."""

    success: bool
    error_code: str = "0"
    error_text: str = ""
    at_manifest: bool = False  # the manifest failed (rules, dependencies): no component was processed
    missing_dependencies_xml: str = ""
    error: Any = None  # the DataverseError behind a failure (what the API and asyncoperation report)


def _stamp(ts: float) -> tuple[str, str]:
    moment = datetime.fromtimestamp(ts, tz=UTC)
    ticks = int((ts + 62135596800) * 10_000_000)  # .NET ticks, as the 3P logs carry them
    return moment.strftime("%H:%M:%S.%f")[:-4], str(ticks)


def _result(outcome_ok: bool, code: str, text: str, ts: float) -> str:
    clock, ticks = _stamp(ts)
    return (
        f'<result result="{"success" if outcome_ok else "failure"}" errorcode="{escape(code)}" '
        f'errortext={quoteattr(text)} datetime="{clock}" datetimeticks="{ticks}" />'
    )


def build_log(package: SolutionPackage, outcome: Outcome, started: float, finished: float) -> str:
    """The XML written to ``importjob.data`` when an import job completes."""
    start_clock, _ = _stamp(started)
    stop_clock, _ = _stamp(finished)
    progress = "100" if outcome.success or not outcome.at_manifest else "0"
    root_attributes = (
        f' start="{start_clock}" stop="{stop_clock}" progress="{progress}" processed="true"'
        if unconfirmed.IMPORT_LOG_ROOT_ATTRIBUTES
        else ""
    )
    component_parts: list[str] = []
    failure_placed = outcome.success  # an injected failure is reported on the first component
    if not outcome.at_manifest:
        grouped: dict[str, list] = {}
        for component in package.components:
            if component.section in SECTIONS:
                grouped.setdefault(component.section, []).append(component)
        for section, components in grouped.items():
            container, item = SECTIONS[section]
            component_parts.append(f"<{container}>")
            for component in components:
                ok = True
                if not failure_placed:
                    ok, failure_placed = False, True
                name = component.name or (component.id or "")
                identifier = f" id={quoteattr(component.id)}" if component.id else ""
                component_parts.append(
                    f"<{item} name={quoteattr(name)} LocalizedName={quoteattr(component.display_name or name)}"
                    f'{identifier} processed="true">'
                    + _result(ok, "0" if ok else outcome.error_code, "" if ok else outcome.error_text, finished)
                    + f"</{item}>"
                )
            component_parts.append(f"</{container}>")
    manifest_ok = outcome.success or failure_placed
    parts = [
        f"<importexportxml{root_attributes}>",
        "<solutionManifests>",
        f'<solutionManifest languagecode="1033" id={quoteattr(package.unique_name)} '
        f'LocalizedName={quoteattr(package.friendly_name)} processed="true">',
        f"<UniqueName>{escape(package.unique_name)}</UniqueName>",
        f"<Version>{escape(package.version)}</Version>",
        f"<Managed>{package.managed}</Managed>",
        f"<Publisher>{escape(package.publisher.unique_name)}</Publisher>",
        _result(
            manifest_ok, "0" if manifest_ok else outcome.error_code, "" if manifest_ok else outcome.error_text, finished
        ),
    ]
    if outcome.missing_dependencies_xml:
        parts.append(outcome.missing_dependencies_xml)
    parts += ["</solutionManifest>", "</solutionManifests>", *component_parts]
    parts.append("</importexportxml>")
    return "".join(parts)


def unreadable_log(code: str, text: str, started: float, finished: float) -> str:
    """The log of a job whose package could not be read (no manifest to report on)."""
    start_clock, _ = _stamp(started)
    stop_clock, _ = _stamp(finished)
    return (
        f'<importexportxml start="{start_clock}" stop="{stop_clock}" progress="0" processed="true">'
        f"<solutionManifests><solutionManifest>{_result(False, code, text, finished)}</solutionManifest>"
        "</solutionManifests></importexportxml>"
    )


def progress_log(package_name: str, progress: float, started: float) -> str:
    """``importjob.data`` while the job runs: the root element and the manifest, not yet processed."""
    clock, _ = _stamp(started)
    return (
        f'<importexportxml start="{clock}" stop="" progress="{progress:.2f}" processed="false">'
        f"<solutionManifests><solutionManifest><UniqueName>{escape(package_name)}</UniqueName>"
        "</solutionManifest></solutionManifests></importexportxml>"
    )


def formatted_results(log_xml: str, solution_name: str) -> str:
    """RetrieveFormattedImportJobResults: "The results are returned in Microsoft Excel format"
    (SpreadsheetML XML, docs/dataverse.md §8.2). One worksheet with the solution row and the log."""
    return (
        '<?xml version="1.0"?><?mso-application progid="Excel.Sheet"?>'
        '<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" '
        'xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet">'
        '<Worksheet ss:Name="Solution"><Table>'
        '<Row><Cell><Data ss:Type="String">Solution</Data></Cell>'
        '<Cell><Data ss:Type="String">Import log</Data></Cell></Row>'
        f'<Row><Cell><Data ss:Type="String">{escape(solution_name)}</Data></Cell>'
        f'<Cell><Data ss:Type="String">{escape(log_xml)}</Data></Cell></Row>'
        "</Table></Worksheet></Workbook>"
    )
