"""Interpreting a package's XML (solution.xml, customizations.xml, split component files) into a manifest.

Identity always comes from the XML inside the package, never from file names: corpus files are misnamed on
purpose (``IncidentReporting_1_0_0_1_managed.zip`` holds version 1.0.0.2).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from .component_types import ENVIRONMENT_VARIABLE_TYPE_NAMES, WORKFLOW_CATEGORY_NAMES, component_type_name
from .errors import PackageError, PackageErrorCode
from .manifest import (
    CanvasApp,
    Component,
    ComponentKind,
    ConnectionReference,
    CustomConnector,
    DependencyNode,
    EnvironmentVariable,
    MissingDependency,
    ModelDrivenApp,
    OptionSet,
    PackageFile,
    PluginAssembly,
    PluginStep,
    Publisher,
    RootComponent,
    SecurityRole,
    SiteMap,
    SolutionManifest,
    Table,
    WebResource,
    Workflow,
)
from .versions import SolutionVersion
from .xmlsafe import content_hash

# ---- reading XML -------------------------------------------------------------------------------------------------

_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def _text(element: Element | None, path: str = "") -> str | None:
    found = element.find(path) if element is not None and path else element
    if found is None or found.get(_XSI_NIL) == "true":
        return None
    text = (found.text or "").strip()
    return text or None


def _attr(element: Element, name: str) -> str | None:
    value = (element.get(name) or "").strip()
    return value or None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _guid(value: str | None) -> str | None:
    return value.strip().strip("{}").lower() if value else None


def _localized(element: Element | None, path: str) -> dict[int, str]:
    names: dict[int, str] = {}
    for item in element.findall(path) if element is not None else []:
        code = _int(item.get("languagecode"))
        if code is not None:
            names[code] = item.get("description") or ""
    return names


def _first(names: Mapping[int, str]) -> str | None:
    return names.get(1033) or next(iter(names.values()), None)


def _invalid(message: str) -> PackageError:
    return PackageError(PackageErrorCode.INVALID_MANIFEST, message)


# ---- components --------------------------------------------------------------------------------------------------

FileHashes = Mapping[str, str]  # case-folded package path without leading "/" -> sha256


def _used_files(element: Element, file_hashes: FileHashes) -> list[tuple[str, str]]:
    # Components point at their files with absolute package paths (/Workflows/x.json, /WebResources/y, ...).
    used = []
    for node in element.iter():
        text = (node.text or "").strip()
        if text.startswith("/") and (found := file_hashes.get(text[1:].casefold())):
            used.append((text[1:].casefold(), found))
    return used


def _hash(element: Element, file_hashes: FileHashes, extra: Iterable[tuple[str, str]] = ()) -> str:
    return content_hash([element], [*_used_files(element, file_hashes), *extra])


# Lists inside a component that Dataverse treats as sets and that an unpacked source folder (SolutionPackager's
# layout, one file per form or view) cannot keep in order: a table's forms and views, a model-driven app's
# components. Their order must not make a component "changed", or a version packed from source would differ from
# the same version exported. Everything else keeps its order (form layouts and option lists are ordered).
_TABLE_SETS = ("FormXml/forms", "SavedQueries/savedqueries", "FormXml")  # inner lists first
_APP_SETS = ("AppModuleComponents",)


def _sets_sorted(element: Element, paths: tuple[str, ...]) -> Element:
    """``element``, or a copy of it in which the children at ``paths`` are in one canonical order."""
    parents = [parent for path in paths for parent in element.findall(path)]
    if all(len(parent) < 2 for parent in parents):
        return element
    copy = deepcopy(element)
    for path in paths:
        for parent in copy.findall(path):
            parent[:] = sorted(parent, key=lambda child: content_hash([child]))
    return copy


def _table(element: Element, file_hashes: FileHashes) -> Table | None:
    entity = element.find("EntityInfo/entity")
    schema = _text(element, "Name") or (entity.get("Name") if entity is not None else None)
    if not schema:
        return None
    name_element = element.find("Name")
    display = name_element.get("LocalizedName") if name_element is not None else None
    columns = None
    if entity is not None:
        logical = {
            (_text(column, "LogicalName") or column.get("PhysicalName") or "").lower()
            for column in entity.findall("attributes/attribute")
        }
        columns = tuple(sorted(logical - {""}))
    return Table(
        key=schema.lower(),
        name=display or schema,
        content_hash=_hash(_sets_sorted(element, _TABLE_SETS), file_hashes),
        schema_name=schema,
        logical_name=schema.lower(),
        columns=columns,
    )


def _workflow(element: Element, file_hashes: FileHashes) -> Workflow | None:
    workflow_id = _guid(element.get("WorkflowId"))
    if not workflow_id:
        return None
    category = _int(_text(element, "Category"))
    return Workflow(
        key=workflow_id,
        name=element.get("Name") or workflow_id,
        content_hash=_hash(element, file_hashes),
        workflow_id=workflow_id,
        category=category,
        category_name=WORKFLOW_CATEGORY_NAMES.get(category) if category is not None else None,
        primary_entity=_text(element, "PrimaryEntity"),
    )


def _canvas_app(element: Element, file_hashes: FileHashes) -> CanvasApp | None:
    app_name = _text(element, "Name")
    if not app_name:
        return None
    return CanvasApp(
        key=app_name.casefold(),
        name=_text(element, "DisplayName") or app_name,
        content_hash=_hash(element, file_hashes),
        app_name=app_name,
    )


def _model_driven_app(element: Element, file_hashes: FileHashes) -> ModelDrivenApp | None:
    unique_name = _text(element, "UniqueName")
    if not unique_name:
        return None
    return ModelDrivenApp(
        key=unique_name.casefold(),
        name=_first(_localized(element, "LocalizedNames/LocalizedName")) or unique_name,
        content_hash=_hash(_sets_sorted(element, _APP_SETS), file_hashes),
        unique_name=unique_name,
    )


def _site_map(element: Element, file_hashes: FileHashes) -> SiteMap | None:
    unique_name = _text(element, "SiteMapUniqueName")
    if not unique_name:
        return None
    return SiteMap(
        key=unique_name.casefold(),
        name=unique_name,
        content_hash=_hash(element, file_hashes),
        unique_name=unique_name,
    )


def _option_set(element: Element, file_hashes: FileHashes) -> OptionSet | None:
    option_set_name = _attr(element, "Name")
    if not option_set_name:
        return None
    values = (_int(option.get("value")) for option in element.findall("options/option"))
    return OptionSet(
        key=option_set_name.casefold(),
        name=element.get("localizedName") or option_set_name,
        content_hash=_hash(element, file_hashes),
        option_set_name=option_set_name,
        values=tuple(sorted(value for value in values if value is not None)),
    )


def _connection_reference(element: Element, file_hashes: FileHashes) -> ConnectionReference | None:
    logical_name = _attr(element, "connectionreferencelogicalname")
    if not logical_name:
        return None
    return ConnectionReference(
        key=logical_name.casefold(),
        name=_text(element, "connectionreferencedisplayname") or logical_name,
        content_hash=_hash(element, file_hashes),
        logical_name=logical_name,
        connector_id=_text(element, "connectorid"),
    )


def packaged_value(data: bytes, *, source: str) -> str | None:
    """The value in an ``environmentvariablevalues.json`` file, if it holds one."""
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError) as exc:
        raise PackageError(
            PackageErrorCode.INVALID_MANIFEST, f"{source} is not valid JSON.", details={"file": source}
        ) from exc
    values = document.get("environmentvariablevalues") if isinstance(document, dict) else None
    value = values.get("environmentvariablevalue") if isinstance(values, dict) else None
    if isinstance(value, list):
        value = value[0] if value else None
    found = value.get("value") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def _environment_variable(
    element: Element, file_hashes: FileHashes, values_file: tuple[str, bytes] | None = None
) -> EnvironmentVariable | None:
    schema_name = _attr(element, "schemaname")
    if not schema_name:
        return None
    type_code = _int(_text(element, "type"))
    display = element.find("displayname")
    extra: list[tuple[str, str]] = []
    current = None
    if values_file is not None:
        path, data = values_file
        current = packaged_value(data, source=path)
        if path.casefold() in file_hashes:
            extra.append((path.casefold(), file_hashes[path.casefold()]))
    required = _text(element, "isrequired")
    return EnvironmentVariable(
        key=schema_name.casefold(),
        name=(display.get("default") if display is not None else None) or schema_name,
        content_hash=_hash(element, file_hashes, extra),
        schema_name=schema_name,
        type_code=type_code,
        type_name=ENVIRONMENT_VARIABLE_TYPE_NAMES.get(type_code) if type_code is not None else None,
        default_value=_text(element, "defaultvalue"),
        current_value=current,
        is_required=None if required is None else required == "1",
    )


def _security_role(element: Element, file_hashes: FileHashes) -> SecurityRole | None:
    role_id = _guid(element.get("id"))
    role_name = _attr(element, "name")
    if not (role_id or role_name):
        return None
    return SecurityRole(
        key=role_id or (role_name or "").casefold(),
        name=role_name or role_id or "",
        content_hash=_hash(element, file_hashes),
        role_id=role_id,
    )


def _plugin_assembly(element: Element, file_hashes: FileHashes) -> PluginAssembly | None:
    full_name = _attr(element, "FullName")
    if not full_name:
        return None
    assembly_name = full_name.split(",")[0].strip()
    types = (plugin_type.get("Name") or "" for plugin_type in element.findall("PluginTypes/PluginType"))
    return PluginAssembly(
        # Unpacked sources omit PluginAssemblyId, so the assembly name is the identity.
        key=assembly_name.casefold(),
        name=assembly_name,
        content_hash=_hash(element, file_hashes),
        full_name=full_name,
        assembly_id=_guid(element.get("PluginAssemblyId")),
        plugin_types=tuple(sorted(name for name in types if name)),
    )


def _plugin_step(element: Element, file_hashes: FileHashes) -> PluginStep | None:
    step_id = _guid(element.get("SdkMessageProcessingStepId"))
    if not step_id:
        return None
    return PluginStep(
        key=step_id,
        name=element.get("Name") or step_id,
        content_hash=_hash(element, file_hashes),
        step_id=step_id,
        primary_entity=_text(element, "PrimaryEntity"),
        stage=_int(_text(element, "Stage")),
        mode=_int(_text(element, "Mode")),
        plugin_type_name=_text(element, "PluginTypeName"),
    )


def _web_resource(element: Element, file_hashes: FileHashes) -> WebResource | None:
    unique_name = _text(element, "Name")
    if not unique_name:
        return None
    return WebResource(
        key=unique_name.casefold(),
        name=_text(element, "DisplayName") or unique_name,
        content_hash=_hash(element, file_hashes),
        unique_name=unique_name,
        web_resource_id=_guid(_text(element, "WebResourceId")),
        web_resource_type=_int(_text(element, "WebResourceType")),
    )


def _custom_connector(element: Element, file_hashes: FileHashes) -> CustomConnector | None:
    connector_name = _text(element, "name")
    if not connector_name:
        return None
    return CustomConnector(
        key=connector_name.casefold(),
        name=_text(element, "displayname") or connector_name,
        content_hash=_hash(element, file_hashes),
        connector_name=connector_name,
        connector_id=_guid(_text(element, "connectorid")),
    )


ComponentBuilder = Callable[[Element, FileHashes], Component | None]

# Where each kind lives inside customizations.xml, the root tag of its split file in unpacked sources, and how
# to build it.
COMPONENT_SOURCES: dict[ComponentKind, tuple[str, str, ComponentBuilder]] = {
    ComponentKind.TABLE: ("Entities/Entity", "Entity", _table),
    ComponentKind.WORKFLOW: ("Workflows/Workflow", "Workflow", _workflow),
    ComponentKind.CANVAS_APP: ("CanvasApps/CanvasApp", "CanvasApp", _canvas_app),
    ComponentKind.MODEL_DRIVEN_APP: ("AppModules/AppModule", "AppModule", _model_driven_app),
    ComponentKind.SITE_MAP: ("AppModuleSiteMaps/AppModuleSiteMap", "AppModuleSiteMap", _site_map),
    ComponentKind.OPTION_SET: ("optionsets/optionset", "optionset", _option_set),
    ComponentKind.CONNECTION_REFERENCE: (
        "connectionreferences/connectionreference",
        "connectionreference",
        _connection_reference,
    ),
    ComponentKind.ENVIRONMENT_VARIABLE: (
        "environmentvariabledefinitions/environmentvariabledefinition",
        "environmentvariabledefinition",
        _environment_variable,
    ),
    ComponentKind.SECURITY_ROLE: ("Roles/Role", "Role", _security_role),
    ComponentKind.PLUGIN_ASSEMBLY: ("SolutionPluginAssemblies/PluginAssembly", "PluginAssembly", _plugin_assembly),
    ComponentKind.PLUGIN_STEP: (
        "SdkMessageProcessingSteps/SdkMessageProcessingStep",
        "SdkMessageProcessingStep",
        _plugin_step,
    ),
    ComponentKind.WEB_RESOURCE: ("WebResources/WebResource", "WebResource", _web_resource),
    ComponentKind.CUSTOM_CONNECTOR: ("Connectors/Connector", "Connector", _custom_connector),
}


@dataclass(frozen=True)
class PackageParts:
    """What a reader found, before interpretation: the same shape for zips and unpacked folders."""

    source_format: str
    solution: Element
    customizations: Element | None
    # Elements of split files (unpacked sources), by kind.
    split_elements: Mapping[ComponentKind, list[Element]]
    # environmentvariabledefinition elements from their own files, with the values file beside them, if any.
    environment_variable_files: list[tuple[Element, tuple[str, bytes] | None]]
    files: tuple[PackageFile, ...]


def _node(element: Element | None) -> DependencyNode:
    get = element.get if element is not None else (lambda _name: None)
    type_code = _int(get("type"))
    return DependencyNode(
        type_code=type_code,
        type_name=component_type_name(type_code) if type_code is not None else None,
        schema_name=get("schemaName"),
        id=_guid(get("id")),
        display_name=get("displayName"),
        solution=get("solution"),
        parent_schema_name=get("parentSchemaName"),
        parent_display_name=get("parentDisplayName"),
    )


def _root_component(element: Element) -> RootComponent:
    type_code = _int(element.get("type"))
    if type_code is None:
        raise _invalid(f"solution.xml has a RootComponent without a numeric type: {dict(element.attrib)}.")
    return RootComponent(
        type_code=type_code,
        type_name=component_type_name(type_code),
        schema_name=_attr(element, "schemaName"),
        id=_guid(element.get("id")),
        behavior=_int(element.get("behavior")),
    )


def build_manifest(parts: PackageParts) -> SolutionManifest:
    """Interpret solution.xml, customizations.xml and component files into a ``SolutionManifest``."""
    root = parts.solution
    manifest = root.find("SolutionManifest")
    if root.tag != "ImportExportXml" or manifest is None:
        raise _invalid("solution.xml is not a solution manifest (no ImportExportXml/SolutionManifest).")
    unique_name = _text(manifest, "UniqueName")
    version_text = _text(manifest, "Version")
    managed = _int(_text(manifest, "Managed"))
    publisher = manifest.find("Publisher")
    if not unique_name or not version_text or managed not in (0, 1, 2) or publisher is None:
        raise _invalid("solution.xml must name the solution (UniqueName, Version, Managed 0/1/2 and a Publisher).")
    publisher_name = _text(publisher, "UniqueName")
    if not publisher_name:
        raise _invalid("solution.xml has a Publisher without a UniqueName.")

    file_hashes = {item.path.casefold(): item.sha256 for item in parts.files}
    found: dict[ComponentKind, dict[str, Component]] = {kind: {} for kind in ComponentKind}

    def add(kind: ComponentKind, component: Component | None) -> None:
        # First definition wins; a repeated key in one package is not something Dataverse exports.
        if component is not None:
            found[kind].setdefault(component.key, component)

    for kind, (path, _tag, builder) in COMPONENT_SOURCES.items():
        inline = parts.customizations.findall(path) if parts.customizations is not None else []
        for element in [*inline, *parts.split_elements.get(kind, [])]:
            add(kind, builder(element, file_hashes))
    for element, values_file in parts.environment_variable_files:
        add(ComponentKind.ENVIRONMENT_VARIABLE, _environment_variable(element, file_hashes, values_file))

    def group(kind: ComponentKind) -> tuple[Any, ...]:
        return tuple(sorted(found[kind].values(), key=lambda component: component.key))

    attributes = {str(name): value for name, value in root.attrib.items()}
    return SolutionManifest(
        source_format=parts.source_format,
        unique_name=unique_name,
        localized_names=_localized(manifest, "LocalizedNames/LocalizedName"),
        version=SolutionVersion.parse(version_text),
        managed=managed,
        publisher=Publisher(
            unique_name=publisher_name,
            localized_names=_localized(publisher, "LocalizedNames/LocalizedName"),
            customization_prefix=_text(publisher, "CustomizationPrefix"),
            option_value_prefix=_int(_text(publisher, "CustomizationOptionValuePrefix")),
        ),
        solution_package_version=attributes.get("SolutionPackageVersion"),
        generated_by=attributes.get("generatedBy"),
        export_version=attributes.get("version"),
        organization_version=attributes.get("OrganizationVersion"),
        root_attributes=attributes,
        root_components=tuple(_root_component(item) for item in manifest.findall("RootComponents/RootComponent")),
        missing_dependencies=tuple(
            MissingDependency(required=_node(item.find("Required")), dependent=_node(item.find("Dependent")))
            for item in manifest.findall("MissingDependencies/MissingDependency")
        ),
        tables=group(ComponentKind.TABLE),
        workflows=group(ComponentKind.WORKFLOW),
        canvas_apps=group(ComponentKind.CANVAS_APP),
        model_driven_apps=group(ComponentKind.MODEL_DRIVEN_APP),
        site_maps=group(ComponentKind.SITE_MAP),
        option_sets=group(ComponentKind.OPTION_SET),
        connection_references=group(ComponentKind.CONNECTION_REFERENCE),
        environment_variables=group(ComponentKind.ENVIRONMENT_VARIABLE),
        security_roles=group(ComponentKind.SECURITY_ROLE),
        plugin_assemblies=group(ComponentKind.PLUGIN_ASSEMBLY),
        plugin_steps=group(ComponentKind.PLUGIN_STEP),
        web_resources=group(ComponentKind.WEB_RESOURCE),
        custom_connectors=group(ComponentKind.CUSTOM_CONNECTOR),
        files=parts.files,
    )
