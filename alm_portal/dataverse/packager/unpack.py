"""Unpacking a solution zip into the folder layout SolutionPackager (``pac solution unpack``) writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..package.errors import PackageError, PackageErrorCode
from ..package.zipsafety import ROOT_FILES, PackageSource, ZipLimits, find_root_file, scan_zip
from .component_base import UnpackState, is_managed_twin
from .components import BY_COLLECTION, component_sort_key
from .xmldoc import Document, Element, Text, namespace_declarations, parse_document, write_document

SOLUTION_PATH = "Other/Solution.xml"
CUSTOMIZATIONS_PATH = "Other/Customizations.xml"
CONTENT_TYPES = "[Content_Types].xml"


class PackageType(StrEnum):
    """SolutionPackager's ``/packagetype``: which flavour a folder holds or a zip is."""

    UNMANAGED = "unmanaged"
    MANAGED = "managed"
    BOTH = "both"

    @property
    def managed_value(self) -> str:
        """The text of Solution.xml's ``<Managed>`` for this flavour."""
        return {PackageType.UNMANAGED: "0", PackageType.MANAGED: "1", PackageType.BOTH: "2"}[self]


@dataclass(frozen=True)
class UnpackedSolution:
    """The files of an unpacked solution by relative path (forward slashes), and what the layout could not keep."""

    unique_name: str
    version: str
    package_type: PackageType
    files: dict[str, bytes]
    # "Both" keeps only the unmanaged form of most components; managed content that differs is reported here.
    managed_differences_not_kept: tuple[str, ...] = field(default=())


def _refuse(code: PackageErrorCode, message: str, **details: object) -> PackageError:
    return PackageError(code, message, details=details)


@dataclass(frozen=True)
class _ReadZip:
    entries: dict[str, bytes]
    solution: Document
    customizations: Document
    solution_entry: str
    customizations_entry: str
    content_types_entry: str
    unique_name: str
    version: str
    managed: bool


def _read_zip(source: PackageSource, limits: ZipLimits, label: str) -> _ReadZip:
    scan = scan_zip(source, limits=limits, retain=lambda name: True)
    entries = {entry.name: scan.contents[entry.name] for entry in scan.entries}
    names = {wanted: find_root_file(entries, wanted) for wanted in ROOT_FILES}
    solution_entry, customizations_entry, content_types_entry = (names[wanted] for wanted in ROOT_FILES)
    if solution_entry is None or customizations_entry is None or content_types_entry is None:
        raise _refuse(PackageErrorCode.MISSING_ROOT_FILE, f"{label} is not a solution zip (root files missing).")
    solution = parse_document(entries[solution_entry], source="solution.xml")
    customizations = parse_document(entries[customizations_entry], source="customizations.xml")
    manifest = solution.root.find("SolutionManifest")
    if solution.root.name != "ImportExportXml" or manifest is None:
        raise _refuse(PackageErrorCode.INVALID_MANIFEST, f"{label}: solution.xml is not a solution manifest.")
    if customizations.root.name != "ImportExportXml":
        raise _refuse(PackageErrorCode.INVALID_MANIFEST, f"{label}: customizations.xml is not ImportExportXml.")
    unique_name = manifest.child_text("UniqueName") or ""
    version = manifest.child_text("Version") or ""
    managed = manifest.child_text("Managed")
    if not unique_name or not version or managed not in ("0", "1"):
        raise _refuse(
            PackageErrorCode.INVALID_MANIFEST,
            f"{label}: solution.xml must give UniqueName, Version and Managed 0 or 1.",
        )
    return _ReadZip(
        entries,
        solution,
        customizations,
        solution_entry,
        customizations_entry,
        content_types_entry,
        unique_name,
        version,
        managed == "1",
    )


def solution_xml(solution: Document, package_type: PackageType) -> bytes:
    """Other/Solution.xml: solution.xml with ``<Managed>`` set for the folder and root components sorted."""
    root = solution.root.copy()
    manifest = root.find("SolutionManifest")
    assert manifest is not None  # checked when the zip was read
    managed = manifest.find("Managed")
    if managed is not None:
        managed.children = [Text(package_type.managed_value)]
    components = manifest.find("RootComponents")
    if components is not None:
        items = [child for child in components.children if isinstance(child, Element)]
        others = [child for child in components.children if not isinstance(child, Element | Text)]
        components.children = [*others, *sorted(items, key=component_sort_key)]
    return write_document(Document(root, solution.prolog, solution.epilog))


def _unpack_one(read: _ReadZip, package_type: PackageType) -> dict[str, bytes]:
    root = read.customizations.root
    state = UnpackState(read.entries, read.managed, namespace_declarations(root))
    residual = Element(root.name, list(root.attributes), [], root.self_closing)
    for child in root.children:
        component = BY_COLLECTION.get(child.name) if isinstance(child, Element) else None
        if component is None:
            residual.children.append(child)  # a kind SolutionPackager does not split stays as it is
            continue
        assert isinstance(child, Element)
        kept = component.split(child, state)
        placeholder = child.emptied()
        if kept:
            placeholder.children, placeholder.self_closing = list(kept), False
        residual.children.append(placeholder)
    state.put(
        CUSTOMIZATIONS_PATH,
        write_document(Document(residual, read.customizations.prolog, read.customizations.epilog)),
    )
    state.put(SOLUTION_PATH, solution_xml(read.solution, package_type))
    skipped = {read.solution_entry, read.customizations_entry, read.content_types_entry}
    for name, data in read.entries.items():
        if name not in skipped and name not in state.placed and not name.endswith("/"):
            state.put(name, data)
    return state.files


def unpack_solution(
    source: PackageSource,
    *,
    package_type: PackageType | None = None,
    managed_source: PackageSource | None = None,
    limits: ZipLimits | None = None,
) -> UnpackedSolution:
    """Unpack a solution zip (and, for "both", its managed twin) into SolutionPackager's folder layout, in memory.

    ``package_type`` defaults to the flavour the zip carries. "both" needs the unmanaged zip as ``source`` and the
    managed one as ``managed_source`` (in either order; they must be the same solution and version). Every zip is
    read under the package limits (entries, bytes, compression ratio, XML) the product applies to uploads.
    """
    limits = limits or ZipLimits()
    first = _read_zip(source, limits, "The zip")
    if package_type is None:
        package_type = PackageType.MANAGED if first.managed else PackageType.UNMANAGED
    if package_type is not PackageType.BOTH:
        if managed_source is not None:
            raise _refuse(PackageErrorCode.UNSUPPORTED_LAYOUT, "A managed zip is only used with package type 'both'.")
        carried = PackageType.MANAGED if first.managed else PackageType.UNMANAGED
        if carried is not package_type:
            raise _refuse(
                PackageErrorCode.UNSUPPORTED_LAYOUT,
                f"The zip is {carried.value}; it cannot be unpacked as {package_type.value}.",
            )
        files = _unpack_one(first, package_type)
        return UnpackedSolution(first.unique_name, first.version, package_type, _sorted(files))
    if managed_source is None:
        raise _refuse(PackageErrorCode.UNSUPPORTED_LAYOUT, "Package type 'both' needs the managed zip as well.")
    second = _read_zip(managed_source, limits, "The managed zip")
    unmanaged, managed = (second, first) if first.managed else (first, second)
    if unmanaged.managed or not managed.managed:
        raise _refuse(PackageErrorCode.UNSUPPORTED_LAYOUT, "'both' needs one unmanaged and one managed zip.")
    if (unmanaged.unique_name, unmanaged.version) != (managed.unique_name, managed.version):
        raise _refuse(
            PackageErrorCode.UNSUPPORTED_LAYOUT,
            "The two zips are not the same solution version: "
            f"{unmanaged.unique_name} {unmanaged.version} and {managed.unique_name} {managed.version}.",
        )
    files = _unpack_one(unmanaged, PackageType.BOTH)
    managed_files = _unpack_one(managed, PackageType.MANAGED)
    not_kept = []
    for path, data in managed_files.items():
        if is_managed_twin(path):
            files[path] = data
        elif path == SOLUTION_PATH:
            continue
        elif files.get(path) != data:
            # SolutionPackager writes the managed form only of components that differ by design (forms, apps,
            # site maps); anything else the managed zip holds differently is not in a "both" folder.
            not_kept.append(path)
    return UnpackedSolution(unmanaged.unique_name, unmanaged.version, PackageType.BOTH, _sorted(files), tuple(not_kept))


def _sorted(files: dict[str, bytes]) -> dict[str, bytes]:
    return {path: files[path] for path in sorted(files, key=str.casefold)}
