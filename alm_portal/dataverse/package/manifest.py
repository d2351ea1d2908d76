"""The solution manifest: what a package is (solution.xml) and what it contains (customizations.xml and files).

Frozen, typed value objects only; ``manifest_parsing`` builds them from the package's XML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum, StrEnum
from typing import Any, ClassVar

from .versions import SolutionVersion


class ComponentKind(StrEnum):
    """The kinds of component the manifest lists and the differ compares."""

    TABLE = "table"
    WORKFLOW = "workflow"
    CANVAS_APP = "canvas_app"
    MODEL_DRIVEN_APP = "model_driven_app"
    SITE_MAP = "site_map"
    OPTION_SET = "option_set"
    CONNECTION_REFERENCE = "connection_reference"
    ENVIRONMENT_VARIABLE = "environment_variable"
    SECURITY_ROLE = "security_role"
    PLUGIN_ASSEMBLY = "plugin_assembly"
    PLUGIN_STEP = "plugin_step"
    WEB_RESOURCE = "web_resource"
    CUSTOM_CONNECTOR = "custom_connector"


@dataclass(frozen=True, kw_only=True)
class Component:
    """Common part of every component: ``key`` identifies it across versions, ``content_hash`` tells "changed"."""

    kind: ClassVar[ComponentKind]
    key: str
    name: str
    content_hash: str


@dataclass(frozen=True, kw_only=True)
class Table(Component):
    """A table (entity). ``columns`` is None when the package carries no column definitions for it (a shell)."""

    kind: ClassVar[ComponentKind] = ComponentKind.TABLE
    schema_name: str
    logical_name: str
    columns: tuple[str, ...] | None


@dataclass(frozen=True, kw_only=True)
class Workflow(Component):
    """A process: classic workflow, business rule, action, business process flow or cloud flow (category 5)."""

    kind: ClassVar[ComponentKind] = ComponentKind.WORKFLOW
    workflow_id: str
    category: int | None
    category_name: str | None
    primary_entity: str | None


@dataclass(frozen=True, kw_only=True)
class CanvasApp(Component):
    """A canvas app; ``app_name`` is its unique (schema) name."""

    kind: ClassVar[ComponentKind] = ComponentKind.CANVAS_APP
    app_name: str


@dataclass(frozen=True, kw_only=True)
class ModelDrivenApp(Component):
    """A model-driven app (AppModule)."""

    kind: ClassVar[ComponentKind] = ComponentKind.MODEL_DRIVEN_APP
    unique_name: str


@dataclass(frozen=True, kw_only=True)
class SiteMap(Component):
    """An app's site map (navigation)."""

    kind: ClassVar[ComponentKind] = ComponentKind.SITE_MAP
    unique_name: str


@dataclass(frozen=True, kw_only=True)
class OptionSet(Component):
    """A global choice (option set) and its option values."""

    kind: ClassVar[ComponentKind] = ComponentKind.OPTION_SET
    option_set_name: str
    values: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class ConnectionReference(Component):
    """A connection reference; each target environment binds it to a connection of ``connector_id``."""

    kind: ClassVar[ComponentKind] = ComponentKind.CONNECTION_REFERENCE
    logical_name: str
    connector_id: str | None


@dataclass(frozen=True, kw_only=True)
class EnvironmentVariable(Component):
    """An environment variable definition, with the value packaged alongside it, if any."""

    kind: ClassVar[ComponentKind] = ComponentKind.ENVIRONMENT_VARIABLE
    schema_name: str
    type_code: int | None
    type_name: str | None
    default_value: str | None
    current_value: str | None
    is_required: bool | None


@dataclass(frozen=True, kw_only=True)
class SecurityRole(Component):
    """A security role."""

    kind: ClassVar[ComponentKind] = ComponentKind.SECURITY_ROLE
    role_id: str | None


@dataclass(frozen=True, kw_only=True)
class PluginAssembly(Component):
    """A plug-in assembly and the plug-in types it registers."""

    kind: ClassVar[ComponentKind] = ComponentKind.PLUGIN_ASSEMBLY
    full_name: str
    assembly_id: str | None
    plugin_types: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PluginStep(Component):
    """An SDK message processing step (plug-in registration)."""

    kind: ClassVar[ComponentKind] = ComponentKind.PLUGIN_STEP
    step_id: str
    primary_entity: str | None
    stage: int | None
    mode: int | None
    plugin_type_name: str | None


@dataclass(frozen=True, kw_only=True)
class WebResource(Component):
    """A web resource; ``unique_name`` is its path-like name (``new_/js/main.js``)."""

    kind: ClassVar[ComponentKind] = ComponentKind.WEB_RESOURCE
    unique_name: str
    web_resource_id: str | None
    web_resource_type: int | None


@dataclass(frozen=True, kw_only=True)
class CustomConnector(Component):
    """A custom connector."""

    kind: ClassVar[ComponentKind] = ComponentKind.CUSTOM_CONNECTOR
    connector_name: str
    connector_id: str | None


@dataclass(frozen=True, kw_only=True)
class Publisher:
    """The solution's publisher."""

    unique_name: str
    localized_names: dict[int, str]
    customization_prefix: str | None
    option_value_prefix: int | None


@dataclass(frozen=True, kw_only=True)
class RootComponent:
    """A ``RootComponent`` of solution.xml; ``behavior`` is absent in exports before SolutionPackageVersion 8.0."""

    type_code: int
    type_name: str
    schema_name: str | None
    id: str | None
    behavior: int | None

    @property
    def identity(self) -> tuple[int, str]:
        """What makes two root components the same one, whatever their order."""
        return (self.type_code, self.id or (self.schema_name or "").casefold())


@dataclass(frozen=True, kw_only=True)
class DependencyNode:
    """One side of a missing dependency."""

    type_code: int | None
    type_name: str | None
    schema_name: str | None
    id: str | None
    display_name: str | None
    solution: str | None
    parent_schema_name: str | None
    parent_display_name: str | None


@dataclass(frozen=True, kw_only=True)
class MissingDependency:
    """A component the solution needs (``required``) that the target must already have, and who needs it."""

    required: DependencyNode
    dependent: DependencyNode


@dataclass(frozen=True, kw_only=True)
class PackageFile:
    """A file in the package, with its decompressed size and SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class SolutionManifest:
    """Everything the portal knows about a solution package without importing it.

    ``managed`` is the number written in solution.xml: 0 unmanaged, 1 managed, 2 both (unpacked sources only).
    ``export_version`` is ``ImportExportXml/@version``, the version of the environment that exported it.
    """

    source_format: str
    unique_name: str
    localized_names: dict[int, str]
    version: SolutionVersion
    managed: int
    publisher: Publisher
    solution_package_version: str | None
    generated_by: str | None
    export_version: str | None
    organization_version: str | None
    root_attributes: dict[str, str]
    root_components: tuple[RootComponent, ...]
    missing_dependencies: tuple[MissingDependency, ...]
    tables: tuple[Table, ...]
    workflows: tuple[Workflow, ...]
    canvas_apps: tuple[CanvasApp, ...]
    model_driven_apps: tuple[ModelDrivenApp, ...]
    site_maps: tuple[SiteMap, ...]
    option_sets: tuple[OptionSet, ...]
    connection_references: tuple[ConnectionReference, ...]
    environment_variables: tuple[EnvironmentVariable, ...]
    security_roles: tuple[SecurityRole, ...]
    plugin_assemblies: tuple[PluginAssembly, ...]
    plugin_steps: tuple[PluginStep, ...]
    web_resources: tuple[WebResource, ...]
    custom_connectors: tuple[CustomConnector, ...]
    files: tuple[PackageFile, ...]

    @property
    def package_type(self) -> str:
        """``unmanaged``, ``managed`` or ``both``."""
        return {0: "unmanaged", 1: "managed", 2: "both"}[self.managed]

    @property
    def is_managed(self) -> bool:
        """True only for a managed package (1); "both" sources are not a managed package."""
        return self.managed == 1

    def components(self) -> tuple[Component, ...]:
        """Every component, all kinds together."""
        groups: tuple[tuple[Component, ...], ...] = (
            self.tables,
            self.workflows,
            self.canvas_apps,
            self.model_driven_apps,
            self.site_maps,
            self.option_sets,
            self.connection_references,
            self.environment_variables,
            self.security_roles,
            self.plugin_assemblies,
            self.plugin_steps,
            self.web_resources,
            self.custom_connectors,
        )
        return tuple(component for group in groups for component in group)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``json.dumps`` works on it as is)."""
        data: dict[str, Any] = to_jsonable(self)
        data["package_type"] = self.package_type
        return data


def to_jsonable(value: object) -> Any:
    """Dataclasses to dicts (components gain their ``kind``), tuples to lists, enum members to values."""
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        data = {item.name: to_jsonable(getattr(value, item.name)) for item in fields(value)}
        if isinstance(value, Component):
            data = {"kind": value.kind.value, **data}
        return data
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [to_jsonable(item) for item in value]
    return value
