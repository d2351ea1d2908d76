"""Readers that turn a solution zip or an unpacked source folder into a ``SolutionManifest``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from xml.etree.ElementTree import Element

from .errors import PackageError, PackageErrorCode
from .manifest import ComponentKind, PackageFile, SolutionManifest
from .manifest_parsing import COMPONENT_SOURCES, PackageParts, build_manifest
from .xmlsafe import XmlBudget, XmlFeed
from .zipsafety import READ_CHUNK_BYTES, ROOT_FILES, PackageSource, ZipLimits, find_root_file, scan_zip

_ENV_VAR_FOLDER = "environmentvariabledefinitions/"
_ENV_VAR_DEFINITION = "environmentvariabledefinition.xml"
_ENV_VAR_VALUES = "environmentvariablevalues.json"

# Where SolutionPackager / `pac solution unpack` puts the split file of each component kind (relative, matched
# case-insensitively; `*` also crosses folders). Kinds not listed stay inline in Other/Customizations.xml
# (connection references, for example). Custom connectors are Connectors/<name>.xml (tests/fixtures/unpack-pairs).
_SPLIT_FILE_PATTERNS: dict[ComponentKind, tuple[str, ...]] = {
    ComponentKind.TABLE: ("entities/*/entity.xml",),
    ComponentKind.WORKFLOW: ("workflows/*.data.xml",),
    ComponentKind.CANVAS_APP: ("canvasapps/*.meta.xml",),
    ComponentKind.MODEL_DRIVEN_APP: ("appmodules/*/appmodule.xml",),
    ComponentKind.SITE_MAP: ("appmodulesitemaps/*/appmodulesitemap.xml",),
    ComponentKind.OPTION_SET: ("optionsets/*.xml",),
    ComponentKind.SECURITY_ROLE: ("roles/*.xml",),
    ComponentKind.PLUGIN_ASSEMBLY: ("pluginassemblies/*.data.xml",),
    ComponentKind.PLUGIN_STEP: ("sdkmessageprocessingsteps/*.xml",),
    ComponentKind.WEB_RESOURCE: ("webresources/*.data.xml",),
    ComponentKind.CUSTOM_CONNECTOR: ("connectors/*.xml",),
}
_FOLDER_SOLUTION = "other/solution.xml"
_FOLDER_CUSTOMIZATIONS = "other/customizations.xml"


def _is_env_var_file(name: str) -> bool:
    folded = name.casefold()
    return folded.startswith(_ENV_VAR_FOLDER) and PurePosixPath(folded).name in (_ENV_VAR_DEFINITION, _ENV_VAR_VALUES)


def _environment_variable_files(
    definitions: Mapping[str, Element], values: Mapping[str, bytes]
) -> list[tuple[Element, tuple[str, bytes] | None]]:
    # The schema name comes from the definition XML; the folder only pairs a definition with its values file.
    values_by_folder = {PurePosixPath(name.casefold()).parent: name for name in values}
    found = []
    for name in sorted(definitions):
        values_name = values_by_folder.get(PurePosixPath(name.casefold()).parent)
        found.append((definitions[name], (values_name, values[values_name]) if values_name else None))
    return found


def _is_env_var_definition(name: str) -> bool:
    return _is_env_var_file(name) and PurePosixPath(name.casefold()).name == _ENV_VAR_DEFINITION


def _is_env_var_values(name: str) -> bool:
    return _is_env_var_file(name) and PurePosixPath(name.casefold()).name == _ENV_VAR_VALUES


def read_solution_zip(source: PackageSource, *, limits: ZipLimits | None = None) -> SolutionManifest:
    """Read a solution zip (path, bytes or binary stream) safely and return its manifest.

    Raises ``PackageError`` with a stable code when the zip is unsafe, over a limit, or not a solution.
    """
    limits = limits or ZipLimits()
    root_names = {name.casefold() for name in ROOT_FILES}
    scan = scan_zip(
        source,
        limits=limits,
        # Every XML the manifest needs is parsed as it inflates ([Content_Types].xml only so that malformed or
        # DTD-carrying content is refused); only the small JSON values files are kept as bytes.
        parse=lambda name: name.casefold() in root_names or _is_env_var_definition(name),
        retain=_is_env_var_values,
        retained_are_documents=True,
    )
    parsed: dict[str, Element] = {}
    for wanted in ROOT_FILES:
        name = find_root_file(scan.documents, wanted)
        if name is None:  # scan_zip refuses this already; kept so the type checker knows
            raise PackageError(PackageErrorCode.MISSING_ROOT_FILE, f"The zip archive has no {wanted} at its root.")
        parsed[wanted] = scan.documents[name]
    return build_manifest(
        PackageParts(
            source_format="zip",
            solution=parsed["solution.xml"],
            customizations=parsed["customizations.xml"],
            split_elements={},
            environment_variable_files=_environment_variable_files(
                {name: element for name, element in scan.documents.items() if _is_env_var_definition(name)},
                scan.contents,
            ),
            files=tuple(PackageFile(path=entry.name, size=entry.size, sha256=entry.sha256) for entry in scan.entries),
        )
    )


def _split_kind(relative: str, folded_names: set[str] | frozenset[str] = frozenset()) -> ComponentKind | None:
    folded = relative.casefold()
    path = PurePosixPath(folded)
    if path.stem.endswith("_managed"):
        plain = str(path.with_name(path.stem[: -len("_managed")] + path.suffix))
        if plain in folded_names or not folded_names:
            return None  # the managed twin of a form or app; the unmanaged file describes the same component
        folded = plain  # a managed-only folder: the twin is the only file of its component
    for kind, patterns in _SPLIT_FILE_PATTERNS.items():
        if any(fnmatchcase(folded, pattern) for pattern in patterns):
            return kind
    return None


def _walk_folder(root: Path, limits: ZipLimits) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    total = 0
    for directory, subdirectories, filenames in os.walk(root, followlinks=False):
        for name in sorted(subdirectories) + sorted(filenames):
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise PackageError(
                    PackageErrorCode.SYMLINK,
                    f"'{relative}' in the solution folder is a symbolic link.",
                    details={"entry": relative},
                )
            if name in filenames:
                files.append((relative, path))
                total += path.stat().st_size
        if len(files) > limits.max_entries:
            raise PackageError(
                PackageErrorCode.TOO_MANY_ENTRIES,
                f"The solution folder has more than {limits.max_entries} files.",
                details={"limit": limits.max_entries},
            )
        if total > limits.max_total_bytes:
            raise PackageError(
                PackageErrorCode.TOO_LARGE,
                f"The solution folder holds more than {limits.max_total_bytes} bytes.",
                details={"limit": limits.max_total_bytes},
            )
        subdirectories.sort()
    return sorted(files)


def _read_file(
    path: Path, *, feed: XmlFeed | None, keep: bool, relative: str, budget: XmlBudget
) -> tuple[int, str, bytes | None]:
    """Hash a file in chunks, feeding them to ``feed`` (a document the manifest needs) or keeping them (``keep``)."""
    digest = hashlib.sha256()
    kept: list[bytes] = []
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            if feed is not None:
                feed.feed(chunk)
            elif keep:
                budget.spend_bytes(relative, len(chunk))
                kept.append(chunk)
    return size, digest.hexdigest(), b"".join(kept) if keep else None


def read_solution_folder(folder: str | os.PathLike[str], *, limits: ZipLimits | None = None) -> SolutionManifest:
    """Read an unpacked solution source folder (SolutionPackager layout: Other/Solution.xml, Entities/, ...).

    The three-root-files rule of zips does not apply; Other/Solution.xml is required. ``Managed`` may be 2
    ("both") in such sources. Symbolic links are refused rather than followed.
    """
    limits = limits or ZipLimits()
    root = Path(folder)
    if not root.is_dir():
        raise PackageError(PackageErrorCode.UNSUPPORTED_LAYOUT, f"'{folder}' is not a folder.")
    listing = _walk_folder(root, limits)
    by_name = {relative.casefold(): relative for relative, _ in listing}
    if _FOLDER_SOLUTION not in by_name:
        raise PackageError(
            PackageErrorCode.MISSING_ROOT_FILE,
            "An unpacked solution folder must contain Other/Solution.xml.",
            details={"missing": ["Other/Solution.xml"]},
        )
    files: list[PackageFile] = []
    split: dict[ComponentKind, list[Element]] = {}
    env_definitions: dict[str, Element] = {}
    env_values: dict[str, bytes] = {}
    solution: Element | None = None
    customizations: Element | None = None
    read_total = 0
    budget = XmlBudget(limits.xml)  # the folder's documents share the XML limits, as a zip's do
    for relative, path in listing:
        folded = relative.casefold()
        kind = _split_kind(relative, set(by_name))
        parse = (
            kind is not None or folded in (_FOLDER_SOLUTION, _FOLDER_CUSTOMIZATIONS) or _is_env_var_definition(relative)
        )
        feed = XmlFeed(source=relative, budget=budget) if parse else None
        size, sha256, data = _read_file(
            path, feed=feed, keep=_is_env_var_values(relative), relative=relative, budget=budget
        )
        read_total += size
        if read_total > limits.max_total_bytes:  # files can grow between listing and reading
            raise PackageError(PackageErrorCode.TOO_LARGE, "The solution folder grew past the size limit.")
        files.append(PackageFile(path=relative, size=size, sha256=sha256))
        if data is not None:
            env_values[relative] = data
        if feed is None:
            continue
        element = feed.close()
        if folded == _FOLDER_SOLUTION:
            solution = element
        elif folded == _FOLDER_CUSTOMIZATIONS:
            customizations = element
        elif _is_env_var_definition(relative):
            env_definitions[relative] = element
        elif kind is not None and element.tag == COMPONENT_SOURCES[kind][1]:
            split.setdefault(kind, []).append(element)  # anything else in that folder is not this component
    if solution is None:  # listed above, so only a file removed while we read gets here
        raise PackageError(PackageErrorCode.MISSING_ROOT_FILE, "Other/Solution.xml disappeared while reading.")
    return build_manifest(
        PackageParts(
            source_format="folder",
            solution=solution,
            customizations=customizations,
            split_elements=split,
            environment_variable_files=_environment_variable_files(env_definitions, env_values),
            files=tuple(files),
        )
    )


def read_solution_package(source: PackageSource, *, limits: ZipLimits | None = None) -> SolutionManifest:
    """Read either a solution zip or, when ``source`` is a directory path, an unpacked source folder."""
    if isinstance(source, str | os.PathLike) and Path(source).is_dir():
        return read_solution_folder(source, limits=limits)
    return read_solution_zip(source, limits=limits)
