"""The machinery every component kind of a SolutionPackager folder is built from: the state of one unpack or pack,
the ``Component`` contract, and the three common shapes (one file per item, one file for the whole collection, an
item with a data file beside it). ``components.py`` holds the kinds themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..package.errors import PackageError, PackageErrorCode
from . import paths
from .xmldoc import (
    DEFAULT_STYLE,
    Element,
    WriteStyle,
    parse_document,
    with_namespace_declarations,
    without_namespace_declarations,
    write_document,
)

MANAGED_SUFFIX = "_managed"
DATA_SUFFIX = ".data.xml"
# Canvas apps, connectors and model-driven apps are written by newer code in SolutionPackager that gives every empty
# child of the file's root an end tag (``<Publisher></Publisher>`` where customizations.xml has ``<Publisher />``).
END_TAG_STYLE = WriteStyle(empty_root_children_with_end_tag=True)


def layout_error(message: str, **details: object) -> PackageError:
    return PackageError(PackageErrorCode.UNSUPPORTED_LAYOUT, message, details=details)


@dataclass
class UnpackState:
    """What one zip's unpack has read and written so far."""

    entries: dict[str, bytes]
    managed: bool
    declarations: list[tuple[str, str]]
    files: dict[str, bytes] = field(default_factory=dict)
    # Zip entries a component has placed itself (moved or renamed); the rest are copied to the same path.
    placed: set[str] = field(default_factory=set)
    _folded_entries: dict[str, str] = field(default_factory=dict)
    _folded_files: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._folded_entries = {name.casefold(): name for name in self.entries}

    @property
    def suffix(self) -> str:
        return MANAGED_SUFFIX if self.managed else ""

    def put(self, path: str, data: bytes) -> None:
        paths.check_relative(path)
        folded = path.casefold()
        if (folded in self._folded_files and self._folded_files[folded] != path) or path in self.files:
            # Two components on one path (names differing only in case, say) would overwrite each other.
            raise layout_error(
                f"Two parts of the solution would be written to '{path}'; nothing was written.", path=path
            )
        self._folded_files[folded] = path
        self.files[path] = data

    def put_xml(self, path: str, element: Element, *, declare: bool = True, style: WriteStyle = DEFAULT_STYLE) -> None:
        root = with_namespace_declarations(element, self.declarations) if declare else element
        self.put(path, write_document(root, style=style))

    def entry(self, reference: str | None) -> str | None:
        """The zip entry an absolute package path (``/WebResources/x``) names, matched as Dataverse matches."""
        name = paths.package_reference(reference or "")
        return self._folded_entries.get(name.casefold()) if name else None

    def move(self, entry: str, path: str) -> None:
        self.put(path, self.entries[entry])
        self.placed.add(entry)


@dataclass
class PackState:
    """The folder being packed: its files by relative path, and the zip entries built from them."""

    files: dict[str, bytes]
    managed: bool
    entries: dict[str, bytes] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    _folded: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._folded = {path.casefold(): path for path in self.files}

    def find(self, path: str) -> str | None:
        return self._folded.get(path.casefold())

    def under(self, folder: str) -> list[str]:
        """Files below ``folder`` (any depth), matched case-insensitively, in a stable order."""
        prefix = folder.casefold().rstrip("/") + "/"
        return sorted((path for folded, path in self._folded.items() if folded.startswith(prefix)), key=str.casefold)

    def read_xml(self, path: str, declarations: list[tuple[str, str]]) -> Element:
        self.used.add(path)
        root = parse_document(self.files[path], source=path).root
        return without_namespace_declarations(root, declarations)

    def flavoured(self, candidates: list[str]) -> list[str]:
        """The file to pack for each item among ``candidates`` (plain files and their ``_managed`` twins).

        Packing managed takes the twin and refuses an item that has none; packing unmanaged takes the plain file
        and leaves out an item that exists only in managed form. Both files of an item count as read.
        """
        groups: dict[str, dict[bool, str]] = {}
        for path in candidates:
            twin = is_managed_twin(path)
            groups.setdefault(plain_twin_path(path).casefold() if twin else path.casefold(), {})[twin] = path
        chosen = []
        for key in sorted(groups):
            group = groups[key]
            self.used.update(group.values())
            if self.managed and True not in group:
                raise layout_error(
                    f"'{group[False]}' has no managed twin (…{MANAGED_SUFFIX}.xml); the folder cannot be packed as "
                    "managed.",
                    path=group[False],
                )
            if group.get(self.managed) is not None:
                chosen.append(group[self.managed])
        return chosen

    def add_entry(self, name: str, data: bytes) -> None:
        paths.check_relative(name)
        if any(existing.casefold() == name.casefold() for existing in self.entries):
            raise layout_error(f"Two files would become the zip entry '{name}'.", entry=name)
        self.entries[name] = data

    def move(self, path: str, entry: str) -> None:
        self.used.add(path)
        self.add_entry(entry, self.files[path])


def is_managed_twin(path: str) -> bool:
    return path.rpartition("/")[2].rpartition(".")[0].endswith(MANAGED_SUFFIX)


def plain_twin_path(path: str) -> str:
    """``x_managed.xml`` -> ``x.xml`` (the unmanaged file a managed twin belongs to)."""
    stem, dot, extension = path.rpartition(".")
    return f"{stem[: -len(MANAGED_SUFFIX)]}{dot}{extension}"


class Component:
    """One collection element of customizations.xml and the files it is split into."""

    collection = ""

    def split(self, collection: Element, state: UnpackState) -> list[Element]:
        raise NotImplementedError

    def join(self, collection: Element, state: PackState, declarations: list[tuple[str, str]]) -> None:
        raise NotImplementedError

    # Folders (or files) this component reads when packing; anything else there is copied verbatim.
    def claims(self, path: str) -> bool:
        return False


def text_of(item: Element, path: str) -> str:
    return item.child_text(path) or ""


def expect_element(element: Element, name: str, path: str) -> Element:
    if name and element.name != name:
        raise layout_error(f"{path} must hold <{name}>, not <{element.name}>.", path=path)
    return element


@dataclass
class ItemFiles(Component):
    """One file per item: ``<folder>/<name>.xml`` (Roles, OptionSets, Dashboards, steps, ...)."""

    collection: str = ""
    folder: str = ""
    name_of: Callable[[Element], str] = lambda item: ""
    # Files per item live in their own folder (``AppModules/<name>/AppModule.xml``) when this is set.
    file_in_folder: str | None = None
    declare: bool = True
    style: WriteStyle = DEFAULT_STYLE
    differs_in_managed: bool = False
    extension: str = ".xml"
    # A last change to the item before it is written (model-driven apps sort their component list).
    prepare: Callable[[Element], Element] = lambda item: item
    # The element each file holds (<Role>, <optionset>, ...): a file holding anything else is refused.
    item: str = ""

    def _path(self, item: Element, suffix: str) -> str | None:
        name = self.name_of(item).strip()
        if not name:
            return None
        if self.file_in_folder:
            return paths.join(self.folder, paths.file_name(name), f"{self.file_in_folder}{suffix}{self.extension}")
        return paths.join(self.folder, f"{paths.file_name(name)}{suffix}{self.extension}")

    def split(self, collection: Element, state: UnpackState) -> list[Element]:
        inline = []
        for item in collection.elements():
            path = self._path(item, state.suffix if self.differs_in_managed else "")
            if path is None:
                inline.append(item)  # nothing to name its file after: it stays where it was
                continue
            state.put_xml(path, self.prepare(item), declare=self.declare, style=self.style)
        return inline

    def _item_paths(self, state: PackState) -> list[str]:
        found = []
        for path in state.under(self.folder):
            relative = path[len(self.folder) + 1 :]
            name = plain_twin_path(relative) if self.differs_in_managed and is_managed_twin(relative) else relative
            if self.file_in_folder:
                parts = name.split("/")
                if len(parts) == 2 and parts[1].casefold() == f"{self.file_in_folder}{self.extension}".casefold():
                    found.append(path)
            elif (
                "/" not in name
                and name.casefold().endswith(self.extension.casefold())
                and (self.differs_in_managed or not is_managed_twin(relative))
            ):
                found.append(path)
        return found

    def join(self, collection: Element, state: PackState, declarations: list[tuple[str, str]]) -> None:
        candidates = self._item_paths(state)
        chosen = state.flavoured(candidates) if self.differs_in_managed else candidates
        for path in chosen:
            collection.children.append(expect_element(state.read_xml(path, declarations), self.item, path))

    def claims(self, path: str) -> bool:
        folded = path.casefold()
        if not folded.startswith(self.folder.casefold() + "/"):
            return False
        relative = folded[len(self.folder) + 1 :]
        if self.file_in_folder:
            name = self.file_in_folder.casefold()
            return relative.endswith(f"/{name}.xml") or relative.endswith(f"/{name}{MANAGED_SUFFIX}.xml")
        return "/" not in relative and relative.endswith(self.extension.casefold())


@dataclass
class WholeCollectionFile(Component):
    """The whole collection in one file under Other/ (EntityMaps, FieldSecurityProfiles, ConnectionRoles)."""

    collection: str = ""
    path: str = ""

    def split(self, collection: Element, state: UnpackState) -> list[Element]:
        items = list(collection.elements())
        if items:
            state.put_xml(self.path, collection)
        return []

    def join(self, collection: Element, state: PackState, declarations: list[tuple[str, str]]) -> None:
        found = state.find(self.path)
        if found is None:
            return
        root = state.read_xml(found, declarations)
        if root.name != collection.name:
            raise layout_error(f"{found} must hold <{collection.name}>, not <{root.name}>.", path=found)
        collection.attributes = root.attributes
        collection.children.extend(root.children)
        collection.self_closing = root.self_closing

    def claims(self, path: str) -> bool:
        return path.casefold() == self.path.casefold()


@dataclass
class DataFileComponent(Component):
    """Items whose content is a file of their own, with the item's XML beside it as ``<file>.data.xml``.

    Workflows (``/Workflows/x.json`` or ``.xaml``), plug-in assemblies (``.dll``) and code components
    (``ControlManifest.xml``) keep their file at the package path the item names; web resources move from the
    flattened zip name (``WebResources/new_scriptjs<GUID>``) to their real name (``WebResources/new_/script.js``).
    """

    collection: str = ""
    folder: str = ""
    file_elements: tuple[str, ...] = ("FileName",)
    file_attribute: str | None = None
    # Web resources: the folder path comes from <Name>, not from the file the item names.
    name_element: str | None = None
    item: str = ""

    def _reference(self, item: Element) -> str | None:
        for name in self.file_elements:
            value = item.child_text(name)
            if value:
                return value
        if self.file_attribute:
            return item.get(self.file_attribute)
        return None

    def split(self, collection: Element, state: UnpackState) -> list[Element]:
        inline = []
        for item in collection.elements():
            reference = self._reference(item)
            zip_path = paths.package_reference(reference or "")
            if zip_path is None or not zip_path.casefold().startswith(self.folder.casefold() + "/"):
                inline.append(item)  # no file of its own under our folder: it stays in Customizations.xml
                continue
            if self.name_element:
                name = item.child_text(self.name_element)
                if not name:
                    inline.append(item)
                    continue
                target = paths.join(self.folder, paths.nested_path(name))
                entry = state.entry(reference)
                if entry is not None:
                    state.move(entry, target)
            else:
                target = paths.join(zip_path)
            state.put_xml(target + DATA_SUFFIX, item)
        return inline

    def _metadata_files(self, state: PackState) -> list[str]:
        # A content file may itself end in .data.xml (a web resource named so): then its metadata is beside it.
        return [
            path
            for path in state.under(self.folder)
            if path.casefold().endswith(DATA_SUFFIX) and state.find(path + DATA_SUFFIX) is None
        ]

    def join(self, collection: Element, state: PackState, declarations: list[tuple[str, str]]) -> None:
        for path in self._metadata_files(state):
            item = expect_element(state.read_xml(path, declarations), self.item, path)
            collection.children.append(item)
            reference = paths.package_reference(self._reference(item) or "")
            if reference is None:
                continue
            content = state.find(path[: -len(DATA_SUFFIX)])
            if content is None:
                raise layout_error(
                    f"{path} names the file /{reference}, but {path[: -len(DATA_SUFFIX)]} is not in the folder.",
                    path=path,
                )
            state.move(content, reference)

    def claims(self, path: str) -> bool:
        return path.casefold().startswith(self.folder.casefold() + "/") and path.casefold().endswith(DATA_SUFFIX)
