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
from .xmlsafe import parse_xml
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


def _environment_variable_files(contents: Mapping[str, bytes]) -> list[tuple[Element, tuple[str, bytes] | None]]:
    # The schema name comes from the definition XML; the folder only pairs a definition with its values file.
    values_by_folder = {
        PurePosixPath(name.casefold()).parent: name
        for name in contents
        if PurePosixPath(name.casefold()).name == _ENV_VAR_VALUES
    }
    found = []
    for name in sorted(contents):
        path = PurePosixPath(name.casefold())
        if path.name != _ENV_VAR_DEFINITION:
            continue
        values_name = values_by_folder.get(path.parent)
        values = (values_name, contents[values_name]) if values_name else None
        found.append((parse_xml(contents[name], source=name), values))
    return found


def read_solution_zip(source: PackageSource, *, limits: ZipLimits | None = None) -> SolutionManifest:
    """Read a solution zip (path, bytes or binary stream) safely and return its manifest.

    Raises ``PackageError`` with a stable code when the zip is unsafe, over a limit, or not a solution.
    """
    root_names = {name.casefold() for name in ROOT_FILES}
    scan = scan_zip(source, limits=limits, retain=lambda name: name.casefold() in root_names or _is_env_var_file(name))
    parsed: dict[str, Element] = {}
    for wanted in ROOT_FILES:
        name = find_root_file(scan.contents, wanted)
        if name is None:  # scan_zip refuses this already; kept so the type checker knows
            raise PackageError(PackageErrorCode.MISSING_ROOT_FILE, f"The zip archive has no {wanted} at its root.")
        # [Content_Types].xml is parsed only so that malformed or DTD-carrying content is refused.
        parsed[wanted] = parse_xml(scan.contents[name], source=wanted)
    return build_manifest(
        PackageParts(
            source_format="zip",
            solution=parsed["solution.xml"],
            customizations=parsed["customizations.xml"],
            split_elements={},
            environment_variable_files=_environment_variable_files(
                {name: data for name, data in scan.contents.items() if _is_env_var_file(name)}
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


def _read_file(path: Path, keep: bool) -> tuple[int, str, bytes | None]:
    digest = hashlib.sha256()
    kept: list[bytes] = []
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            if keep:
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
    env_contents: dict[str, bytes] = {}
    solution: Element | None = None
    customizations: Element | None = None
    read_total = 0
    for relative, path in listing:
        folded = relative.casefold()
        kind = _split_kind(relative, set(by_name))
        keep = kind is not None or folded in (_FOLDER_SOLUTION, _FOLDER_CUSTOMIZATIONS) or _is_env_var_file(relative)
        size, sha256, data = _read_file(path, keep)
        read_total += size
        if read_total > limits.max_total_bytes:  # files can grow between listing and reading
            raise PackageError(PackageErrorCode.TOO_LARGE, "The solution folder grew past the size limit.")
        files.append(PackageFile(path=relative, size=size, sha256=sha256))
        if data is None:
            continue
        if folded == _FOLDER_SOLUTION:
            solution = parse_xml(data, source=relative)
        elif folded == _FOLDER_CUSTOMIZATIONS:
            customizations = parse_xml(data, source=relative)
        elif _is_env_var_file(relative):
            env_contents[relative] = data
        elif kind is not None:
            element = parse_xml(data, source=relative)
            if element.tag == COMPONENT_SOURCES[kind][1]:  # anything else in that folder is not this component
                split.setdefault(kind, []).append(element)
    if solution is None:  # listed above, so only a file removed while we read gets here
        raise PackageError(PackageErrorCode.MISSING_ROOT_FILE, "Other/Solution.xml disappeared while reading.")
    return build_manifest(
        PackageParts(
            source_format="folder",
            solution=solution,
            customizations=customizations,
            split_elements=split,
            environment_variable_files=_environment_variable_files(env_contents),
            files=tuple(files),
        )
    )


def read_solution_package(source: PackageSource, *, limits: ZipLimits | None = None) -> SolutionManifest:
    """Read either a solution zip or, when ``source`` is a directory path, an unpacked source folder."""
    if isinstance(source, str | os.PathLike) and Path(source).is_dir():
        return read_solution_folder(source, limits=limits)
    return read_solution_zip(source, limits=limits)
