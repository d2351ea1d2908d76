"""Packing a SolutionPackager folder back into a solution zip Dataverse imports."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..package.errors import PackageError, PackageErrorCode
from ..package.manifest import SolutionManifest
from ..package.readers import read_solution_zip
from ..package.zipsafety import ZipLimits
from .component_base import PackState, is_managed_twin
from .components import BY_COLLECTION, COMPONENTS
from .unpack import CONTENT_TYPES, CUSTOMIZATIONS_PATH, SOLUTION_PATH, PackageType
from .xmldoc import Document, Element, Text, namespace_declarations, parse_document, write_document

# A fixed timestamp makes the same folder pack to the same bytes (a build from a commit is reproducible).
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_CONTENT_TYPES_NAMESPACE = "http://schemas.openxmlformats.org/package/2006/content-types"
_OCTET_STREAM = "application/octet-stream"
# Folders SolutionPackager itself writes only with options this packer does not offer (localisation).
_UNSUPPORTED_FOLDERS = ("resources/",)


def _refuse(code: PackageErrorCode, message: str, **details: object) -> PackageError:
    return PackageError(code, message, details=details)


@dataclass(frozen=True)
class PackedSolution:
    """A packed zip and the manifest the product's own reader makes of it."""

    data: bytes
    manifest: SolutionManifest
    package_type: PackageType


def read_folder(folder: str | os.PathLike[str], limits: ZipLimits) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, under the package limits; symbolic links are refused."""
    root = Path(folder)
    if not root.is_dir():
        raise _refuse(PackageErrorCode.UNSUPPORTED_LAYOUT, f"'{folder}' is not a folder.")
    files: dict[str, bytes] = {}
    total = 0
    for directory, subdirectories, names in os.walk(root, followlinks=False):
        for name in sorted(subdirectories) + sorted(names):
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise _refuse(
                    PackageErrorCode.SYMLINK, f"'{relative}' in the solution folder is a symbolic link.", entry=relative
                )
            if name not in names:
                continue
            if not stat.S_ISREG(path.lstat().st_mode):
                raise _refuse(
                    PackageErrorCode.UNSUPPORTED_LAYOUT,
                    f"'{relative}' in the solution folder is not a regular file.",
                    entry=relative,
                )
            if len(files) >= limits.max_entries:
                raise _refuse(
                    PackageErrorCode.TOO_MANY_ENTRIES,
                    f"The solution folder has more than {limits.max_entries} files.",
                    limit=limits.max_entries,
                )
            # The size is checked before reading and the bytes read after: a file that grows meanwhile still
            # cannot carry the folder past the limit.
            if total + path.stat().st_size > limits.max_total_bytes:
                raise _too_large(limits)
            with path.open("rb") as handle:
                data = handle.read(limits.max_total_bytes - total + 1)
            total += len(data)
            if total > limits.max_total_bytes:
                raise _too_large(limits)
            files[relative] = data
        subdirectories.sort()
    return files


def _too_large(limits: ZipLimits) -> PackageError:
    return _refuse(
        PackageErrorCode.TOO_LARGE,
        f"The solution folder holds more than {limits.max_total_bytes} bytes.",
        limit=limits.max_total_bytes,
    )


def folder_package_type(files: dict[str, bytes]) -> PackageType:
    """The flavour a folder holds, from Other/Solution.xml's ``<Managed>`` (0, 1, or 2 for "both")."""
    solution = _solution(files)
    manifest = solution.root.find("SolutionManifest")
    value = manifest.child_text("Managed") if manifest is not None else None
    by_value = {"0": PackageType.UNMANAGED, "1": PackageType.MANAGED, "2": PackageType.BOTH}
    if value not in by_value:
        raise _refuse(PackageErrorCode.INVALID_MANIFEST, "Other/Solution.xml must say <Managed> 0, 1 or 2.")
    return by_value[value]


def _find(files: dict[str, bytes], path: str) -> str | None:
    return next((name for name in files if name.casefold() == path.casefold()), None)


def _solution(files: dict[str, bytes]) -> Document:
    found = _find(files, SOLUTION_PATH)
    if found is None:
        raise _refuse(
            PackageErrorCode.MISSING_ROOT_FILE,
            "The folder has no Other/Solution.xml; it is not an unpacked solution.",
            missing=[SOLUTION_PATH],
        )
    document = parse_document(files[found], source=found)
    if document.root.name != "ImportExportXml" or document.root.find("SolutionManifest") is None:
        raise _refuse(PackageErrorCode.INVALID_MANIFEST, "Other/Solution.xml is not a solution manifest.")
    return document


def content_types_xml(entry_names: list[str]) -> bytes:
    """[Content_Types].xml as SolutionPackager writes it when packing.

    .xml parts default to text/xml; every other extension gets a Default of application/octet-stream in order of
    first appearance; parts without an extension, and .xml parts other than the two root files, get an Override.
    """
    parts = [f'<Types xmlns="{_CONTENT_TYPES_NAMESPACE}">', '<Default Extension="xml" ContentType="text/xml" />']
    defaults: set[str] = {"xml"}
    overrides: list[str] = []
    for name in entry_names:
        if name in ("customizations.xml", "solution.xml", CONTENT_TYPES):
            continue
        last = name.rpartition("/")[2]
        extension = last.rpartition(".")[2] if "." in last else ""
        if not extension or extension.casefold() == "xml":
            overrides.append(name)
        elif extension.casefold() not in defaults:
            defaults.add(extension.casefold())
            parts.append(f'<Default Extension="{_attribute(extension)}" ContentType="{_OCTET_STREAM}" />')
    parts.extend(f'<Override PartName="/{_attribute(name)}" ContentType="{_OCTET_STREAM}" />' for name in overrides)
    parts.append("</Types>")
    return ('\ufeff<?xml version="1.0" encoding="utf-8"?>' + "".join(parts)).encode("utf-8")


def _attribute(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _check_leftovers(state: PackState, files: dict[str, bytes]) -> list[str]:
    """Files copied to the zip as they are: everything no component read, outside Other/."""
    verbatim = []
    handled = {SOLUTION_PATH.casefold(), CUSTOMIZATIONS_PATH.casefold()}
    for path in files:
        folded = path.casefold()
        if folded in handled or path in state.used:
            continue
        if any(component.claims(path) for component in COMPONENTS):
            continue  # checked below: a component file nothing read
        if folded.startswith("other/") or folded.startswith(_UNSUPPORTED_FOLDERS):
            raise _refuse(
                PackageErrorCode.UNSUPPORTED_LAYOUT,
                f"'{path}' is not a file this packer knows how to place in the solution; nothing was written.",
                path=path,
            )
        verbatim.append(path)
    return verbatim


def pack_files(
    files: dict[str, bytes], *, package_type: PackageType | None = None, limits: ZipLimits | None = None
) -> PackedSolution:
    """Pack an unpacked solution given as files by relative path; see :func:`pack_folder`."""
    limits = limits or ZipLimits()
    solution = _solution(files)
    held = folder_package_type(files)
    if package_type is None:
        package_type = PackageType.UNMANAGED if held is PackageType.BOTH else held
    if package_type is PackageType.BOTH:
        raise _refuse(PackageErrorCode.UNSUPPORTED_LAYOUT, "Pack one flavour at a time: unmanaged or managed.")
    if held is not PackageType.BOTH and held is not package_type:
        raise _refuse(
            PackageErrorCode.UNSUPPORTED_LAYOUT,
            f"The folder holds a {held.value} solution; it cannot be packed as {package_type.value}.",
        )
    customizations_path = _find(files, CUSTOMIZATIONS_PATH)
    if customizations_path is None:
        raise _refuse(
            PackageErrorCode.MISSING_ROOT_FILE,
            "The folder has no Other/Customizations.xml.",
            missing=[CUSTOMIZATIONS_PATH],
        )
    customizations = parse_document(files[customizations_path], source=customizations_path)
    root = customizations.root
    if root.name != "ImportExportXml":
        raise _refuse(PackageErrorCode.INVALID_MANIFEST, "Other/Customizations.xml must hold <ImportExportXml>.")
    state = PackState(files, package_type is PackageType.MANAGED)
    declarations = namespace_declarations(root)
    for child in root.children:
        if isinstance(child, Element) and child.name in BY_COLLECTION:
            BY_COLLECTION[child.name].join(child, state, declarations)
    verbatim = _check_leftovers(state, files)
    unread = [
        path
        for path in files
        if path not in state.used
        and any(component.claims(path) for component in COMPONENTS)
        and not (is_managed_twin(path) and not state.managed)
    ]
    if unread:
        raise _refuse(
            PackageErrorCode.UNSUPPORTED_LAYOUT,
            f"'{unread[0]}' is not referenced from Other/Customizations.xml (or its table's Entity.xml), so it "
            "would be left out of the solution; nothing was written.",
            paths=unread[:20],
        )
    manifest = solution.root.find("SolutionManifest")
    assert manifest is not None
    managed = manifest.find("Managed")
    if managed is not None:
        managed.children = [Text(package_type.managed_value)]
    entries: dict[str, bytes] = {
        "customizations.xml": write_document(customizations),
        "solution.xml": write_document(solution),
    }
    for name, data in state.entries.items():
        entries[name] = data
    for path in verbatim:
        if path in entries or any(existing.casefold() == path.casefold() for existing in entries):
            raise _refuse(PackageErrorCode.DUPLICATE_NAME, f"Two files would become the zip entry '{path}'.")
        entries[path] = files[path]
    entries[CONTENT_TYPES] = content_types_xml(list(entries))
    data = _zip(entries)
    # The product's own reader, under the same limits, decides whether what we built is a solution.
    manifest_read = read_solution_zip(data, limits=limits)
    return PackedSolution(data, manifest_read, package_type)


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def pack_folder(
    folder: str | os.PathLike[str], *, package_type: PackageType | None = None, limits: ZipLimits | None = None
) -> PackedSolution:
    """Pack a SolutionPackager folder into a solution zip (in memory).

    ``package_type`` defaults to the flavour the folder holds (unmanaged when it holds both). The folder is read
    under the upload limits; files no component reads are copied to the same path in the zip, except unknown files
    under Other/, which are refused rather than guessed at.
    """
    limits = limits or ZipLimits()
    return pack_files(read_folder(folder, limits), package_type=package_type, limits=limits)
