"""Reading and rewriting solution zips, the emulator's own small reader (it may not use the portal's).

Only what Dataverse needs to apply the solution rules is read: the manifest in solution.xml (identity,
version, managed flag, publisher, root components, MissingDependencies: docs/dataverse.md §11.2) and the
components declared in customizations.xml and the per-component folders (docs/dataverse.md §11.1, §11.2;
corpus MANIFEST "Format surprises"). XML is parsed with defusedxml; nothing is extracted to disk.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape, quoteattr

from defusedxml import ElementTree as SafeET

from . import errors
from .errors import DataverseError

ROOT_FILES = ("solution.xml", "customizations.xml", "[Content_Types].xml")
MAX_XML_BYTES = 200 * 1024 * 1024  # refuse zip bombs: no single XML part is read beyond this
CONTENT_TYPES_XML = (
    '<?xml version="1.0" encoding="utf-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="xml" ContentType="application/octet-stream" /></Types>'
)  # docs/dataverse.md §11.1


def sha256_hex(data: bytes) -> str:
    """SHA-256 of a package, the key the emulator stores zips and counts imports by."""
    return hashlib.sha256(data).hexdigest()


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.0.0.4"`` → ``(1, 0, 0, 4)``; shorter versions are padded with zeros (UNCONFIRMED normalisation,
    docs/dataverse.md §11.3: "normalisation to 4 parts UNCONFIRMED"; the corpus has 2- and 3-part versions)."""
    parts = text.strip().split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a solution version: {text!r}")
    numbers = [int(p) for p in parts]
    return tuple(numbers + [0] * (4 - len(numbers)))


def normalize_guid(value: str | None) -> str | None:
    """``{6E5A9197-…}`` → ``6e5a9197-…`` (packages write ids with braces, the Web API without)."""
    if not value:
        return None
    return value.strip().strip("{}").lower()


@dataclass(frozen=True)
class Component:
    """One solution component a package brings (table, column, flow, app, connection reference, …)."""

    type: int | str  # solutioncomponent.componenttype, or an entity name for entity-based components
    name: str  # schema/logical/unique name as the package writes it ("" when only an id is known)
    id: str | None = None  # GUID (lowercase, no braces) when the package gives one
    parent: str | None = None  # parent schema name (columns, relationships)
    display_name: str = ""
    section: str = "other"  # the import log section that reports it (docs/dataverse.md §8.3)

    @property
    def key(self) -> str:
        """Identity of the component inside an org: by id when known, else by type + (parent.)name."""
        if self.id:
            return f"id:{self.id}"
        parent = f"{self.parent.lower()}." if self.parent else ""
        return f"{self.type}:{parent}{self.name.lower()}"

    def to_dict(self) -> dict[str, object]:
        return {
            "type": self.type,
            "name": self.name,
            "id": self.id,
            "parent": self.parent,
            "display_name": self.display_name,
            "section": self.section,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Component:
        return cls(
            type=data["type"],
            name=data["name"],
            id=data.get("id"),
            parent=data.get("parent"),
            display_name=data.get("display_name", ""),
            section=data.get("section", "other"),
        )


@dataclass(frozen=True)
class RootComponent:
    """``<RootComponent type=… schemaName=… id=… behavior=…/>`` (docs/dataverse.md §11.2)."""

    type: int
    schema_name: str | None
    id: str | None
    behavior: int


@dataclass(frozen=True)
class MissingDependency:
    """One ``<MissingDependency>``: the attributes of its ``Required`` and ``Dependent`` elements."""

    required: dict[str, str]
    dependent: dict[str, str]
    packages: tuple[str, ...] = ()

    def required_keys(self) -> list[str]:
        """The component keys that would satisfy this dependency (see ``Component.key``)."""
        req = self.required
        keys = []
        component_id = normalize_guid(req.get("id"))
        if component_id:
            keys.append(f"id:{component_id}")
        for attr, value in req.items():  # entity-based components: type="connectionreference" id.<field>="…"
            if attr.startswith("id.") and value:
                keys.append(f"{req.get('type', '')}:{value.lower()}")
        if req.get("schemaName"):
            parent = f"{req['parentSchemaName'].lower()}." if req.get("parentSchemaName") else ""
            keys.append(f"{req.get('type', '')}:{parent}{req['schemaName'].lower()}")
        return keys

    @property
    def required_solution(self) -> str | None:
        """``solution="MobileOfflineMembership (1.0.0.3)"`` → ``"MobileOfflineMembership"``."""
        value = self.required.get("solution")
        if not value:
            return None
        return value.split(" (")[0].strip()


@dataclass(frozen=True)
class TableDef:
    """A table a package defines or extends, with its columns (logical names)."""

    logical_name: str
    schema_name: str
    display_name: str
    collection_name: str
    entity_set_name: str
    columns: tuple[tuple[str, str], ...]  # (logical name, type as written in customizations.xml)
    custom: bool  # defined by the package (has LocalizedNames), not a system table it only extends

    def to_dict(self) -> dict[str, object]:
        return {
            "logical_name": self.logical_name,
            "schema_name": self.schema_name,
            "display_name": self.display_name,
            "collection_name": self.collection_name,
            "entity_set_name": self.entity_set_name,
            "columns": [list(c) for c in self.columns],
            "custom": self.custom,
        }


@dataclass(frozen=True)
class Publisher:
    unique_name: str
    friendly_name: str
    prefix: str
    option_value_prefix: int
    description: str = ""


@dataclass
class SolutionPackage:
    """What the emulator knows about a solution zip."""

    unique_name: str
    friendly_name: str
    description: str
    version: str
    managed: int  # 0 unmanaged, 1 managed (2 "both" only appears in unpacked sources)
    solution_package_version: str
    publisher: Publisher
    root_components: list[RootComponent]
    missing_dependencies: list[MissingDependency]
    missing_dependencies_xml: str
    components: list[Component]
    tables: list[TableDef]
    sha256: str = ""
    size: int = 0
    file_names: list[str] = field(default_factory=list)

    @property
    def is_managed(self) -> bool:
        return self.managed == 1


def _fail(code: str, message: str) -> DataverseError:
    return DataverseError(400, code, message)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: Element | None, name: str) -> Element | None:
    if element is None:
        return None
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _children(element: Element | None, name: str) -> list[Element]:
    if element is None:
        return []
    return [child for child in element if _local(child.tag) == name]


def _text(element: Element | None, name: str, default: str = "") -> str:
    child = _child(element, name)
    if child is None or child.text is None:
        return default
    return child.text.strip()


def _localized(element: Element | None) -> str:
    """First ``LocalizedName/@description`` under a ``LocalizedNames`` element (1033 preferred)."""
    names = _child(element, "LocalizedNames")
    entries = _children(names, "LocalizedName")
    for entry in entries:
        if entry.get("languagecode") == "1033":
            return entry.get("description", "")
    return entries[0].get("description", "") if entries else ""


def _parse_xml(data: bytes, part: str) -> Element:
    try:
        return SafeET.fromstring(data)
    except Exception as exc:  # defusedxml raises ParseError or its own forbidden-construct errors
        raise _fail(errors.IMPORT_INVALID_XML, f"{errors.IMPORT_INVALID_XML_MESSAGE} ({part}: {exc})") from exc


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_XML_BYTES:
        raise _fail(errors.IMPORT_FILE_TOO_LARGE, errors.IMPORT_FILE_TOO_LARGE_MESSAGE)
    with archive.open(info) as handle:
        data = handle.read(MAX_XML_BYTES + 1)
    if len(data) > MAX_XML_BYTES:
        raise _fail(errors.IMPORT_FILE_TOO_LARGE, errors.IMPORT_FILE_TOO_LARGE_MESSAGE)
    return data


def open_zip(data: bytes) -> zipfile.ZipFile:
    """Open a package, refusing anything that is not a readable zip with the three root files (0x80048060)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _fail(errors.IMPORT_BAD_ZIP, errors.IMPORT_BAD_ZIP_MESSAGE) from exc
    present = {name.lower() for name in names}
    if not all(root.lower() in present for root in ROOT_FILES):
        raise _fail(errors.IMPORT_BAD_ZIP, errors.IMPORT_BAD_ZIP_MESSAGE)
    return archive


def _member(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    for info in archive.infolist():
        if info.filename.lower() == name.lower():
            return info
    raise _fail(errors.IMPORT_BAD_ZIP, errors.IMPORT_BAD_ZIP_MESSAGE)


def read_package(data: bytes) -> SolutionPackage:
    """Parse a solution zip; raises ``DataverseError`` with the import error code Dataverse would use."""
    archive = open_zip(data)
    solution_root = _parse_xml(_read_member(archive, _member(archive, "solution.xml")), "solution.xml")
    manifest = _child(solution_root, "SolutionManifest")
    if manifest is None:
        raise _fail(
            errors.IMPORT_XSD_VALIDATION, errors.IMPORT_XSD_VALIDATION_MESSAGE.format(detail="SolutionManifest")
        )
    unique_name = _text(manifest, "UniqueName")
    version = _text(manifest, "Version")
    managed_text = _text(manifest, "Managed", "0")
    if not unique_name:
        raise _fail(errors.IMPORT_XSD_VALIDATION, errors.IMPORT_XSD_VALIDATION_MESSAGE.format(detail="UniqueName"))
    try:
        parse_version(version)
    except ValueError as exc:
        detail = f"The 'Version' element is invalid - The value '{version}' is invalid"
        raise _fail(errors.IMPORT_XSD_VALIDATION, errors.IMPORT_XSD_VALIDATION_MESSAGE.format(detail=detail)) from exc
    if managed_text not in ("0", "1", "2"):
        raise _fail(errors.IMPORT_XSD_VALIDATION, errors.IMPORT_XSD_VALIDATION_MESSAGE.format(detail="Managed"))

    publisher_element = _child(manifest, "Publisher")
    option_prefix = _text(publisher_element, "CustomizationOptionValuePrefix", "10000")
    publisher = Publisher(
        unique_name=_text(publisher_element, "UniqueName"),
        friendly_name=_localized(publisher_element) or _text(publisher_element, "UniqueName"),
        prefix=_text(publisher_element, "CustomizationPrefix"),
        option_value_prefix=int(option_prefix) if option_prefix.isdigit() else 10000,
    )
    roots = [
        RootComponent(
            type=int(rc.get("type", "0")) if rc.get("type", "0").isdigit() else 0,
            schema_name=rc.get("schemaName"),
            id=normalize_guid(rc.get("id")),
            behavior=int(rc.get("behavior", "0")) if rc.get("behavior", "0").isdigit() else 0,
        )
        for rc in _children(_child(manifest, "RootComponents"), "RootComponent")
    ]
    missing_element = _child(manifest, "MissingDependencies")
    missing = []
    for md in _children(missing_element, "MissingDependency"):
        required = _child(md, "Required")
        dependent = _child(md, "Dependent")
        missing.append(
            MissingDependency(
                required=dict(required.attrib) if required is not None else {},
                dependent=dict(dependent.attrib) if dependent is not None else {},
                packages=tuple((p.text or "").strip() for p in _children(required, "package")),
            )
        )
    missing_xml = _missing_dependencies_xml(missing)

    customizations = _parse_xml(_read_member(archive, _member(archive, "customizations.xml")), "customizations.xml")
    components, tables = _components(customizations, archive)
    known = {c.key for c in components}
    for root in roots:  # root components the parser does not model are still the solution's components
        component = Component(type=root.type, name=root.schema_name or "", id=root.id, section="other")
        if component.key not in known:
            components.append(component)
            known.add(component.key)

    descriptions = _child(manifest, "Descriptions")
    description = ""
    for entry in _children(descriptions, "Description"):
        description = entry.get("description", "")
        break
    return SolutionPackage(
        unique_name=unique_name,
        friendly_name=_localized(manifest) or unique_name,
        description=description,
        version=version,
        managed=int(managed_text),
        solution_package_version=solution_root.get("SolutionPackageVersion", ""),
        publisher=publisher,
        root_components=roots,
        missing_dependencies=missing,
        missing_dependencies_xml=missing_xml,
        components=components,
        tables=tables,
        sha256=sha256_hex(data),
        size=len(data),
        file_names=archive.namelist(),
    )


def _missing_dependencies_xml(missing: list[MissingDependency]) -> str:
    """The ``<MissingDependencies>`` XML as the import log quotes it (docs/dataverse.md §1.6, 3P fixture)."""
    parts = ['<MissingDependencies canResolveAllMissingDependencies="False">']
    for md in missing:
        required = " ".join(f"{k}={quoteattr(v)}" for k, v in md.required.items())
        dependent = " ".join(f"{k}={quoteattr(v)}" for k, v in md.dependent.items())
        parts.append(
            '<MissingDependency canResolveMissingDependency="False">'
            f"<Required {required} /><Dependent {dependent} /></MissingDependency>"
        )
    parts.append("</MissingDependencies>")
    return "".join(parts)


def _components(root: Element, archive: zipfile.ZipFile) -> tuple[list[Component], list[TableDef]]:
    """Components declared in customizations.xml and the per-component folders of the zip."""
    components: list[Component] = []
    tables: list[TableDef] = []

    for entity in _children(_child(root, "Entities"), "Entity"):
        name_element = _child(entity, "Name")
        schema = (name_element.text or "").strip() if name_element is not None else ""
        if not schema:
            continue
        info = _child(_child(entity, "EntityInfo"), "entity")
        display = (name_element.get("LocalizedName") if name_element is not None else None) or schema
        columns = []
        for attribute in _children(_child(info, "attributes"), "attribute"):
            logical = _text(attribute, "LogicalName") or _text(attribute, "Name")
            if logical:
                columns.append((logical.lower(), _text(attribute, "Type")))
        # A table the package defines (custom) carries its display name as OriginalName and a publisher
        # prefix; system tables it only extends (Team, SystemUser, Account…) are exported with
        # OriginalName="" (all corpus exports), and CRM 2011 exports have no prefix on system tables.
        custom = "_" in schema and bool(name_element is not None and name_element.get("OriginalName"))
        collection = ""
        for entry in _children(_child(info, "LocalizedCollectionNames"), "LocalizedCollectionName"):
            collection = entry.get("description", "")
            break
        tables.append(
            TableDef(
                logical_name=schema.lower(),
                schema_name=schema,
                display_name=display,
                collection_name=collection or display,
                entity_set_name=_text(info, "EntitySetName") or _default_entity_set(schema.lower()),
                columns=tuple(columns),
                custom=custom,
            )
        )
        components.append(Component(type=1, name=schema, display_name=display, section="entities"))
        for logical, _type in columns:
            components.append(Component(type=2, name=logical, parent=schema, section="attributes"))

    simple_sections = (
        # (container, element, type, name attribute/child, id attribute/child, log section)
        ("optionsets", "optionset", 9, "@Name", None, "optionSets"),
        ("EntityRelationships", "EntityRelationship", 10, "@Name", None, "entityRelationships"),
        ("Roles", "Role", 20, "@name", "@id", "roles"),
        ("Workflows", "Workflow", 29, "@Name", "@WorkflowId", "workflows"),
        ("Dashboards", "Dashboard", 60, "", "FormId", "dashboards"),
        ("WebResources", "WebResource", 61, "Name", "WebResourceId", "webResources"),
        ("AppModuleSiteMaps", "AppModuleSiteMap", 62, "SiteMapUniqueName", None, "siteMaps"),
        ("AppModules", "AppModule", 80, "UniqueName", None, "appModules"),
        ("SolutionPluginAssemblies", "PluginAssembly", 91, "@FullName", "@PluginAssemblyId", "pluginAssemblies"),
        (
            "SdkMessageProcessingSteps",
            "SdkMessageProcessingStep",
            92,
            "@Name",
            "@SdkMessageProcessingStepId",
            "sdkSteps",
        ),
        ("CanvasApps", "CanvasApp", 300, "Name", None, "canvasApps"),
        ("Connectors", "Connector", 372, "name", "connectorid", "connectors"),
    )
    for container, element_name, component_type, name_spec, id_spec, section in simple_sections:
        for element in _children(_child(root, container), element_name):
            name = _spec(element, name_spec) if name_spec else ""
            component_id = normalize_guid(_spec(element, id_spec)) if id_spec else None
            if not name and not component_id:
                continue
            components.append(
                Component(type=component_type, name=name, id=component_id, display_name=name, section=section)
            )

    for reference in _children(_child(root, "connectionreferences"), "connectionreference"):
        logical = reference.get("connectionreferencelogicalname", "")
        if logical:
            components.append(
                Component(
                    type="connectionreference",
                    name=logical,
                    display_name=_text(reference, "connectionreferencedisplayname") or logical,
                    section="connectionReferences",
                )
            )

    # Per-component folders (corpus: environmentvariabledefinitions/, bots/, botcomponents/).
    for info in archive.infolist():
        lowered = info.filename.lower()
        if lowered.startswith("environmentvariabledefinitions/") and lowered.endswith(
            "/environmentvariabledefinition.xml"
        ):
            element = _parse_xml(_read_member(archive, info), info.filename)
            schema = element.get("schemaname", "")
            if schema:
                components.append(
                    Component(type=380, name=schema, display_name=schema, section="environmentVariableDefinitions")
                )
        elif lowered.startswith("bots/") and lowered.endswith("/bot.xml"):
            element = _parse_xml(_read_member(archive, info), info.filename)
            if element.get("schemaname"):
                components.append(Component(type="bot", name=element.get("schemaname", ""), section="bots"))
        elif lowered.startswith("botcomponents/") and lowered.endswith("/botcomponent.xml"):
            element = _parse_xml(_read_member(archive, info), info.filename)
            if element.get("schemaname"):
                components.append(
                    Component(type="botcomponent", name=element.get("schemaname", ""), section="botComponents")
                )
    return components, tables


def _spec(element: Element, spec: str | None) -> str:
    """``"@Attr"`` reads an attribute, ``"Child"`` the text of a child element."""
    if not spec:
        return ""
    if spec.startswith("@"):
        return element.get(spec[1:], "") or ""
    return _text(element, spec)


def _default_entity_set(logical_name: str) -> str:
    """Dataverse pluralises logical names for entity set names (e.g. account → accounts)."""
    if logical_name.endswith("y") and not logical_name.endswith(("ay", "ey", "oy", "uy")):
        return logical_name[:-1] + "ies"
    if logical_name.endswith(("s", "x", "ch", "sh")):
        return logical_name + "es"
    return logical_name + "s"


_MANAGED_RE = re.compile(r"(<SolutionManifest\b.*?<Managed>)\s*\d\s*(</Managed>)", re.DOTALL)
_VERSION_RE = re.compile(r"(<SolutionManifest\b.*?<Version>)[^<]*(</Version>)", re.DOTALL)


def rewrite_manifest(data: bytes, *, managed: bool, version: str) -> bytes:
    """A copy of the zip whose solution.xml says ``<Managed>`` and ``<Version>`` as given.

    Export returns "what the org holds": the stored package, with the managed flag the caller asked for
    and the version the org has now (it may have been changed by PATCH). Everything else is kept byte
    for byte, including a UTF-8 BOM and CRLF line ends.
    """
    source = zipfile.ZipFile(io.BytesIO(data))
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename.lower() == "solution.xml":
                bom = content.startswith(b"\xef\xbb\xbf")
                text = content.decode("utf-8-sig")
                text = _MANAGED_RE.sub(lambda m: f"{m.group(1)}{1 if managed else 0}{m.group(2)}", text, count=1)
                text = _VERSION_RE.sub(lambda m: f"{m.group(1)}{version}{m.group(2)}", text, count=1)
                content = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
            clone = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            clone.compress_type = zipfile.ZIP_DEFLATED
            clone.external_attr = info.external_attr
            target.writestr(clone, content)
    return output.getvalue()


def build_package(
    *,
    unique_name: str,
    friendly_name: str,
    version: str,
    managed: bool,
    publisher: Publisher,
    root_components: list[RootComponent] | None = None,
    customizations_xml: str | None = None,
    missing_dependencies_xml: str = "",
    extra_files: dict[str, bytes] | None = None,
    solution_package_version: str = "9.2",
) -> bytes:
    """Write a minimal, valid solution zip (docs/dataverse.md §11.1/§11.2 shapes, GHA emptySolution sample).

    Used to export solutions the org holds without a stored package (e.g. Default) and by tests that need
    packages the corpus lacks.
    """
    roots = []
    for root in root_components or []:
        attributes = [f'type="{root.type}"']
        if root.schema_name:
            attributes.append(f"schemaName={quoteattr(root.schema_name)}")
        if root.id:
            attributes.append(f'id="{{{root.id}}}"')
        attributes.append(f'behavior="{root.behavior}"')
        roots.append(f"      <RootComponent {' '.join(attributes)} />")
    header = (
        f'<ImportExportXml version="{solution_package_version}.0.0" '
        f'SolutionPackageVersion="{solution_package_version}" '
        'languagecode="1033" generatedBy="CrmLive" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    )
    solution_xml = f"""{header}
  <SolutionManifest>
    <UniqueName>{escape(unique_name)}</UniqueName>
    <LocalizedNames>
      <LocalizedName description={quoteattr(friendly_name)} languagecode="1033" />
    </LocalizedNames>
    <Descriptions />
    <Version>{escape(version)}</Version>
    <Managed>{1 if managed else 0}</Managed>
    <Publisher>
      <UniqueName>{escape(publisher.unique_name)}</UniqueName>
      <LocalizedNames>
        <LocalizedName description={quoteattr(publisher.friendly_name)} languagecode="1033" />
      </LocalizedNames>
      <Descriptions />
      <EMailAddress xsi:nil="true"></EMailAddress>
      <SupportingWebsiteUrl xsi:nil="true"></SupportingWebsiteUrl>
      <CustomizationPrefix>{escape(publisher.prefix)}</CustomizationPrefix>
      <CustomizationOptionValuePrefix>{publisher.option_value_prefix}</CustomizationOptionValuePrefix>
      <Addresses />
    </Publisher>
    <RootComponents>
{chr(10).join(roots)}
    </RootComponents>
    {missing_dependencies_xml or "<MissingDependencies />"}
  </SolutionManifest>
</ImportExportXml>
"""
    customizations = customizations_xml or (
        '<ImportExportXml xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><Entities /><Roles /><Workflows />'
        "<FieldSecurityProfiles /><Templates /><EntityMaps /><EntityRelationships /><OrganizationSettings />"
        "<optionsets /><CustomControls /><AppModules /><EntityDataProviders /><Languages><Language>1033</Language>"
        "</Languages></ImportExportXml>"
    )
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("solution.xml", solution_xml)
        archive.writestr("customizations.xml", customizations)
        archive.writestr("[Content_Types].xml", CONTENT_TYPES_XML)
        for name, content in (extra_files or {}).items():
            archive.writestr(name, content)
    return output.getvalue()
