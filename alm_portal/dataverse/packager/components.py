"""Where each component kind of customizations.xml lives in a SolutionPackager folder, both ways.

Each kind is a ``Component`` that knows one collection element of customizations.xml (``Entities``,
``Workflows``, ...): ``split`` writes its items to their own files while unpacking and returns what must stay
inline; ``join`` reads those files back into the collection while packing. A collection no component knows stays
in Other/Customizations.xml exactly as it was (connection references, AI models, image configurations, dataflows,
and whatever Dataverse adds next): nothing is dropped.

The layout follows what the eight reference unpacks in tests/fixtures/unpack-pairs show; kinds those folders do
not contain follow Microsoft's "Solution component file reference (SolutionPackager)" page and public repositories
holding SolutionPackager output (docs/solution-packager.md lists which kind rests on which evidence).
"""

from __future__ import annotations

from collections.abc import Iterable

from . import paths
from .component_base import (
    END_TAG_STYLE,
    Component,
    DataFileComponent,
    ItemFiles,
    PackState,
    UnpackState,
    WholeCollectionFile,
    layout_error,
    text_of,
)
from .xmldoc import (
    Element,
    Text,
)


class Entities(Component):
    """``Entities/<Name>/Entity.xml`` with forms, views, the ribbon diff and formulas in files beside it."""

    collection = "Entities"

    def split(self, collection: Element, state: UnpackState) -> list[Element]:
        inline = []
        formula_owner = self._formula_owners(collection, state)
        for entity in collection.elements():
            name = entity.child_text("Name")
            if not name:
                inline.append(entity)
                continue
            folder = paths.join("Entities", paths.file_name(name))
            shell = Element(entity.name, list(entity.attributes), [], entity.self_closing)
            for child in entity.children:
                if isinstance(child, Element) and child.name == "FormXml":
                    self._split_forms(child, folder, state)
                    shell.children.append(child.emptied())
                elif isinstance(child, Element) and child.name == "SavedQueries":
                    self._split_queries(child, folder, state)
                    shell.children.append(child.emptied())
                elif isinstance(child, Element) and child.name == "RibbonDiffXml":
                    state.put_xml(paths.join(folder, "RibbonDiff.xml"), child)
                    shell.children.append(child.emptied())
                else:
                    shell.children.append(child)
            state.put_xml(paths.join(folder, "Entity.xml"), shell)
        for entry, owner in formula_owner.items():
            state.move(entry, paths.join("Entities", paths.file_name(owner), "Formulas", paths.base_name(entry)))
        return inline

    @staticmethod
    def _formula_owners(collection: Element, state: UnpackState) -> dict[str, str]:
        # Formula columns name their definition (/Formulas/<table>-<column>.xaml); the definition and every other
        # file of that table under Formulas/ moves to Entities/<table>/Formulas/.
        owners: dict[str, str] = {}
        prefixes: dict[str, str] = {}
        for entity in collection.elements():
            name = entity.child_text("Name")
            if not name:
                continue
            prefixes[name.casefold() + "-"] = name
            for node in _iter_elements(entity):
                if node.name == "FormulaDefinitionFileName":
                    entry = state.entry(node.text())
                    if entry is not None:
                        owners[entry] = name
        for entry in state.entries:
            folded = entry.casefold()
            if folded.startswith("formulas/") and "/" not in folded[9:] and entry not in owners:
                owner = next((n for prefix, n in prefixes.items() if folded[9:].startswith(prefix)), None)
                if owner is not None:
                    owners[entry] = owner
        return owners

    @staticmethod
    def _split_forms(form_xml: Element, folder: str, state: UnpackState) -> None:
        for group in form_xml.elements():
            form_type = group.get("type") or ""
            if group.name != "forms" or not form_type:
                raise layout_error(f"{folder}: FormXml holds <{group.name}> without a form type; it cannot be split.")
            wrapper = [(key, value) for key, value in group.attributes if key != "type"]
            for form in group.elements():
                form_id = form.child_text("formid")
                if not form_id:
                    raise layout_error(f"{folder}: a {form_type} form has no formid; it cannot be split.")
                document = Element(group.name, list(wrapper), [form], False)
                path = paths.join(
                    folder, "FormXml", paths.file_name(form_type), f"{paths.file_name(form_id)}{state.suffix}.xml"
                )
                state.put_xml(path, document)

    @staticmethod
    def _split_queries(saved_queries: Element, folder: str, state: UnpackState) -> None:
        for group in saved_queries.elements():
            for query in group.elements():
                query_id = query.child_text("savedqueryid")
                if not query_id:
                    raise layout_error(f"{folder}: a saved query has no savedqueryid; it cannot be split.")
                document = Element(group.name, list(group.attributes), [query], False)
                state.put_xml(paths.join(folder, "SavedQueries", f"{paths.file_name(query_id)}.xml"), document)

    def join(self, collection: Element, state: PackState, declarations: list[tuple[str, str]]) -> None:
        for path in state.under("Entities"):
            parts = path.split("/")
            if len(parts) != 3 or parts[2].casefold() != "entity.xml":
                continue
            folder = "/".join(parts[:2])
            entity = state.read_xml(path, declarations)
            for child in entity.elements():
                if child.name == "FormXml":
                    self._join_forms(child, folder, state, declarations)
                elif child.name == "SavedQueries":
                    self._join_queries(child, folder, state, declarations)
                elif child.name == "RibbonDiffXml":
                    ribbon = state.find(f"{folder}/RibbonDiff.xml")
                    if ribbon is not None:
                        loaded = state.read_xml(ribbon, declarations)
                        child.attributes, child.children = loaded.attributes, loaded.children
                        child.self_closing = loaded.self_closing
            collection.children.append(entity)
            for formula in state.under(f"{folder}/Formulas"):
                state.move(formula, f"Formulas/{paths.base_name(formula)}")

    @staticmethod
    def _join_forms(form_xml: Element, folder: str, state: PackState, declarations: list[tuple[str, str]]) -> None:
        by_type: dict[str, list[str]] = {}
        for path in state.under(f"{folder}/FormXml"):
            parts = path.split("/")
            if len(parts) == 5 and parts[4].casefold().endswith(".xml"):
                by_type.setdefault(parts[3], []).append(path)
        for form_type in sorted(by_type, key=str.casefold):
            group: Element | None = None
            for path in state.flavoured(by_type[form_type]):
                loaded = state.read_xml(path, declarations)
                if group is None:
                    group = Element(loaded.name, [("type", form_type), *loaded.attributes], [], False)
                    form_xml.children.append(group)
                group.children.extend(loaded.elements())
        if form_xml.children:
            form_xml.self_closing = False

    @staticmethod
    def _join_queries(saved: Element, folder: str, state: PackState, declarations: list[tuple[str, str]]) -> None:
        group: Element | None = None
        for path in state.under(f"{folder}/SavedQueries"):
            if path.count("/") != 3 or not path.casefold().endswith(".xml"):
                continue
            loaded = state.read_xml(path, declarations)
            if group is None:
                group = Element(loaded.name, list(loaded.attributes), [], False)
                saved.children.append(group)
                saved.self_closing = False
            group.children.extend(loaded.elements())

    def claims(self, path: str) -> bool:
        parts = path.casefold().split("/")
        if not parts or parts[0] != "entities":
            return False
        if len(parts) == 3:
            return parts[2] in ("entity.xml", "ribbondiff.xml")
        if len(parts) == 4:
            return parts[2] in ("savedqueries", "formulas")
        return len(parts) == 5 and parts[2] == "formxml"


class Relationships(Component):
    """Other/Relationships.xml names every relationship in order; Other/Relationships/<Entity>.xml holds them.

    A one-to-many relationship is filed under its referenced (one) table, a many-to-many one under its first table.
    """

    collection = "EntityRelationships"

    @staticmethod
    def _owner(relationship: Element) -> str | None:
        kind = relationship.child_text("EntityRelationshipType")
        owner = relationship.child_text("FirstEntityName" if kind == "ManyToMany" else "ReferencedEntityName")
        return owner or relationship.child_text("ReferencedEntityName") or relationship.child_text("FirstEntityName")

    def split(self, collection: Element, state: UnpackState) -> list[Element]:
        items = list(collection.elements())
        if not items:
            return []
        index = Element(collection.name, list(collection.attributes), [], False)
        by_owner: dict[str, Element] = {}
        inline = []
        for relationship in items:
            owner = self._owner(relationship)
            name = relationship.get("Name")
            if not owner or not name:
                inline.append(relationship)
                continue
            index.children.append(Element(relationship.name, [("Name", name)], [], True))
            group = by_owner.get(owner.casefold())
            if group is None:
                group = Element(collection.name, list(collection.attributes), [], False)
                by_owner[owner.casefold()] = group
                group.attributes.append(("\0owner", owner))  # remembered for the file name, removed below
            group.children.append(relationship)
        state.put_xml("Other/Relationships.xml", index)
        for group in by_owner.values():
            owner = next(value for key, value in group.attributes if key == "\0owner")
            group.attributes = [(key, value) for key, value in group.attributes if key != "\0owner"]
            state.put_xml(paths.join("Other", "Relationships", f"{paths.file_name(owner)}.xml"), group)
        return inline

    def join(self, collection: Element, state: PackState, declarations: list[tuple[str, str]]) -> None:
        found: dict[str, Element] = {}
        order: list[str] = []
        for path in state.under("Other/Relationships"):
            if path.count("/") != 2 or not path.casefold().endswith(".xml"):
                continue
            for relationship in state.read_xml(path, declarations).elements():
                name = relationship.get("Name") or ""
                if name in found:
                    raise layout_error(f"The relationship '{name}' is defined twice under Other/Relationships/.")
                found[name] = relationship
                order.append(name)
        index = state.find("Other/Relationships.xml")
        listed = [item.get("Name") or "" for item in state.read_xml(index, declarations).elements()] if index else []
        missing = [name for name in listed if name not in found]
        if missing:
            raise layout_error(
                f"Other/Relationships.xml lists relationships with no definition: {', '.join(missing[:5])}.",
                missing=missing,
            )
        # The index keeps the order of customizations.xml; relationships it does not list follow in file order.
        for name in [*listed, *(name for name in order if name not in set(listed))]:
            collection.children.append(found[name])

    def claims(self, path: str) -> bool:
        folded = path.casefold()
        return folded == "other/relationships.xml" or (
            folded.startswith("other/relationships/") and folded.count("/") == 2
        )


class Connectors(ItemFiles):
    """``Connectors/<name>.xml``; the connector's files move from the zip's ``Connector/`` to ``Connectors/``."""

    def __init__(self) -> None:
        super().__init__(
            collection="Connectors",
            folder="Connectors",
            name_of=lambda item: text_of(item, "name"),
            style=END_TAG_STYLE,
        )

    def split(self, collection: Element, state: UnpackState) -> list[Element]:
        inline = super().split(collection, state)
        for entry in list(state.entries):
            if entry.casefold().startswith("connector/"):
                state.move(entry, "Connectors/" + entry[len("Connector/") :])
        return inline

    def join(self, collection: Element, state: PackState, declarations: list[tuple[str, str]]) -> None:
        for path in state.under("Connectors"):
            relative = path[len("Connectors/") :]
            if "/" not in relative and relative.casefold().endswith(".xml"):
                item = state.read_xml(path, declarations)
                if item.name == "Connector":
                    collection.children.append(item)
                    continue
                state.used.discard(path)
            state.move(path, "Connector/" + relative)

    def claims(self, path: str) -> bool:
        return path.casefold().startswith("connectors/")


def _iter_elements(element: Element) -> Iterable[Element]:
    stack = [element]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in reversed(node.children) if isinstance(child, Element))


class RibbonCustomization(Component):
    """The application ribbon (customizations.xml's own RibbonDiffXml) in Other/RibbonCustomization.xml."""

    collection = "RibbonDiffXml"
    path = "Other/RibbonCustomization.xml"

    def split(self, collection: Element, state: UnpackState) -> list[Element]:
        if collection.children and any(
            not isinstance(child, Text) or child.value.strip() for child in collection.children
        ):
            state.put_xml(self.path, collection)
        return []

    def join(self, collection: Element, state: PackState, declarations: list[tuple[str, str]]) -> None:
        found = state.find(self.path)
        if found is None:
            return
        root = state.read_xml(found, declarations)
        collection.attributes, collection.children, collection.self_closing = (
            root.attributes,
            root.children,
            root.self_closing,
        )

    def claims(self, path: str) -> bool:
        return path.casefold() == self.path.casefold()


def _form_id(item: Element) -> str:
    return text_of(item, "FormId")


def component_sort_key(component: Element) -> tuple[str, str, str]:
    """SolutionPackager's order for component references: type (as text), schema name, id."""
    return (component.get("type") or "", component.get("schemaName") or "", component.get("id") or "")


def _sorted_app_components(app: Element) -> Element:
    app = app.copy()
    components = app.find("AppModuleComponents")
    if components is not None:
        items = [child for child in components.children if isinstance(child, Element)]
        items.sort(key=component_sort_key)
        components.children = [*items]
    return app


COMPONENTS: tuple[Component, ...] = (
    Entities(),
    ItemFiles(collection="Roles", folder="Roles", name_of=lambda item: item.get("name") or "", item="Role"),
    DataFileComponent(
        collection="Workflows", folder="Workflows", file_elements=("JsonFileName", "XamlFileName"), item="Workflow"
    ),
    WholeCollectionFile(collection="FieldSecurityProfiles", path="Other/FieldSecurityProfiles.xml"),
    WholeCollectionFile(collection="EntityMaps", path="Other/EntityMaps.xml"),
    WholeCollectionFile(collection="ConnectionRoles", path="Other/ConnectionRoles.xml"),
    Relationships(),
    ItemFiles(
        collection="optionsets", folder="OptionSets", name_of=lambda item: item.get("Name") or "", item="optionset"
    ),
    ItemFiles(collection="Dashboards", folder="Dashboards", name_of=_form_id, item="Dashboard"),
    DataFileComponent(collection="WebResources", folder="WebResources", name_element="Name", item="WebResource"),
    DataFileComponent(collection="SolutionPluginAssemblies", folder="PluginAssemblies", item="PluginAssembly"),
    ItemFiles(
        collection="SdkMessageProcessingSteps",
        folder="SdkMessageProcessingSteps",
        name_of=lambda item: item.get("SdkMessageProcessingStepId") or "",
        item="SdkMessageProcessingStep",
    ),
    DataFileComponent(collection="CustomControls", folder="Controls", item="CustomControl"),
    ItemFiles(
        collection="AppModuleSiteMaps",
        folder="AppModuleSiteMaps",
        name_of=lambda item: text_of(item, "SiteMapUniqueName"),
        file_in_folder="AppModuleSiteMap",
        differs_in_managed=True,
        item="AppModuleSiteMap",
    ),
    ItemFiles(
        collection="AppModules",
        folder="AppModules",
        name_of=lambda item: text_of(item, "UniqueName"),
        file_in_folder="AppModule",
        declare=False,
        style=END_TAG_STYLE,
        differs_in_managed=True,
        prepare=_sorted_app_components,
        item="AppModule",
    ),
    ItemFiles(
        collection="CanvasApps",
        folder="CanvasApps",
        name_of=lambda item: text_of(item, "Name"),
        style=END_TAG_STYLE,
        extension=".meta.xml",
        item="CanvasApp",
    ),
    Connectors(),
    RibbonCustomization(),
)
BY_COLLECTION = {component.collection: component for component in COMPONENTS}
