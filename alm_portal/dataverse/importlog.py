"""Parse the import log (``importjob.data``) into per-component results.

docs/dataverse.md §8.3: the documented paths are ``//solutionManifest/UniqueName``,
``//solutionManifest/result/@result`` and, per component, an element whose first ``result`` child has ``result``
(``success`` or other), ``errorcode`` and ``errortext``. The rest of the shape (root attributes, component element
names) comes from third-party fixtures and is treated generically: every element with a direct ``<result>`` child is one
component result, its element name is the component type.

The XML comes from a remote system, so it is parsed with defusedxml (no entities, no DTDs, no external
references).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException

from alm_portal.dataverse import unconfirmed
from alm_portal.dataverse.errors import normalize_error_code

__all__ = ["ComponentResult", "ImportLog", "ImportLogError", "MissingDependencyEntry", "parse_import_log"]

#: Component results that mean the component did not import.
FAILURE_RESULTS = frozenset({"failure", "failed", "error"})


class ImportLogError(ValueError):
    """The import log is not well-formed XML (or tried entity tricks)."""


@dataclass(frozen=True)
class ComponentResult:
    """One component line of the import log."""

    component_type: str
    name: str
    result: str
    error_code: str | None
    message: str

    @property
    def failed(self) -> bool:
        return self.result.lower() in FAILURE_RESULTS


@dataclass(frozen=True)
class MissingDependencyEntry:
    """One ``MissingDependency`` of the manifest: the required component and the dependent one (docs/dataverse.md
    §11.2)."""

    required_type: str
    required_name: str
    required_solution: str
    dependent_type: str
    dependent_name: str


@dataclass(frozen=True)
class ImportLog:
    """The parsed import log of one import job."""

    solution_unique_name: str | None
    solution_version: str | None
    managed: bool | None
    result: str | None
    error_code: str | None
    message: str
    components: tuple[ComponentResult, ...] = field(default=())
    missing_dependencies: tuple[MissingDependencyEntry, ...] = field(default=())
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.result is not None and self.result.lower() == "success" and not self.failures

    @property
    def failures(self) -> tuple[ComponentResult, ...]:
        return tuple(component for component in self.components if component.failed)


def _local(tag: object) -> str:
    text = str(tag)
    return text.rsplit("}", 1)[-1] if "}" in text else text


def _child(element: Element, name: str) -> Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _child_text(element: Element, name: str) -> str | None:
    child = _child(element, name)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _component_name(element: Element) -> str:
    for attribute in unconfirmed.IMPORT_LOG_NAME_ATTRIBUTES:
        value = element.get(attribute)
        if value:
            return value
    for child_name in ("UniqueName", "Name", "LocalizedName"):
        text = _child_text(element, child_name)
        if text:
            return text
    return ""


def _result_of(element: Element, result: Element) -> ComponentResult:
    return ComponentResult(
        component_type=_local(element.tag),
        name=_component_name(element),
        result=(result.get("result") or "").strip(),
        error_code=normalize_error_code(result.get("errorcode")),
        message=(result.get("errortext") or "").strip(),
    )


def _missing_dependencies(manifest: Element) -> tuple[MissingDependencyEntry, ...]:
    container = _child(manifest, "MissingDependencies")
    if container is None:
        return ()
    entries = []
    for dependency in container.iter():
        if _local(dependency.tag) != "MissingDependency":
            continue
        required = _child(dependency, "Required")
        dependent = _child(dependency, "Dependent")
        entries.append(
            MissingDependencyEntry(
                required_type=required.get("type", "") if required is not None else "",
                required_name=(required.get("schemaName") or required.get("id") or "") if required is not None else "",
                required_solution=required.get("solution", "") if required is not None else "",
                dependent_type=dependent.get("type", "") if dependent is not None else "",
                dependent_name=(dependent.get("schemaName") or dependent.get("id") or "")
                if dependent is not None
                else "",
            )
        )
    return tuple(entries)


def parse_import_log(data: str | bytes) -> ImportLog:
    """Parse ``importjob.data`` (docs/dataverse.md §8.3) into an :class:`ImportLog`.

    Raises :class:`ImportLogError` for malformed XML or XML using DTDs/entities.
    """
    try:
        root = SafeElementTree.fromstring(data, forbid_dtd=True)
    except (SafeElementTree.ParseError, DefusedXmlException) as exc:
        raise ImportLogError(f"the import log is not acceptable XML: {exc}") from exc

    manifest: Element | None = None
    for element in root.iter():
        if _local(element.tag) == "solutionManifest":
            manifest = element
            break

    unique_name = version = None
    managed: bool | None = None
    result_value = error_code = None
    message = ""
    missing: tuple[MissingDependencyEntry, ...] = ()
    if manifest is not None:
        unique_name = _child_text(manifest, "UniqueName")
        version = _child_text(manifest, "Version")
        managed_text = _child_text(manifest, "Managed")
        managed = None if managed_text is None else managed_text == "1"
        manifest_result = _child(manifest, "result")
        if manifest_result is not None:
            result_value = (manifest_result.get("result") or "").strip() or None
            error_code = normalize_error_code(manifest_result.get("errorcode"))
            message = (manifest_result.get("errortext") or "").strip()
        missing = _missing_dependencies(manifest)

    components: list[ComponentResult] = []
    for element in root.iter():
        if element is manifest or _local(element.tag) in ("result", "MissingDependencies", "MissingDependency"):
            continue
        result = _child(element, "result")
        if result is not None:
            components.append(_result_of(element, result))

    attributes = {name: value for name in unconfirmed.IMPORT_LOG_ROOT_ATTRIBUTES if (value := root.get(name))}
    return ImportLog(
        solution_unique_name=unique_name,
        solution_version=version,
        managed=managed,
        result=result_value,
        error_code=error_code,
        message=message,
        components=tuple(components),
        missing_dependencies=missing,
        attributes=attributes,
    )
