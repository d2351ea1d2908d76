"""Folder paths built from names inside a package: made file-system safe and never allowed out of the folder."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from ..package.errors import PackageError, PackageErrorCode
from ..package.zipsafety import check_entry_name

# Characters Windows refuses in file names (SolutionPackager runs there and replaces them); control characters too.
_INVALID_IN_NAME = re.compile(r'[<>:"|?*\\\x00-\x1f]')


def file_name(name: str) -> str:
    """One path segment from a component name (a role called "Sales/Service" must not create a folder)."""
    cleaned = _INVALID_IN_NAME.sub("_", name).replace("/", "_").strip()
    if cleaned in ("", ".", ".."):
        cleaned = cleaned.replace(".", "_") or "_"
    return cleaned


def nested_path(name: str) -> str:
    """A relative path from a name whose slashes are meant as folders (web resource names).

    A '.' or '..' segment is refused: such a name points outside its folder, and renaming it would hide that.
    """
    segments = [segment for segment in name.strip("/").split("/") if segment]
    if any(segment.strip() in (".", "..") for segment in segments):
        raise PackageError(
            PackageErrorCode.UNSAFE_NAME,
            f"The name '{name}' would escape the solution folder.",
            details={"name": name},
        )
    return "/".join(file_name(segment) for segment in segments) or "_"


def join(*parts: str) -> str:
    path = "/".join(part.strip("/") for part in parts if part)
    check_relative(path)
    return path


def check_relative(path: str) -> None:
    """Refuse a relative path that is absolute, has '..', a drive letter, a backslash or NUL."""
    try:
        check_entry_name(path)
    except PackageError as exc:
        raise PackageError(
            PackageErrorCode.UNSAFE_NAME,
            f"The path '{path}' would escape the solution folder.",
            details={"path": path},
        ) from exc


def package_reference(reference: str) -> str | None:
    """The zip entry a component names with an absolute package path (``/WebResources/x``), if it is one."""
    reference = reference.strip()
    if not reference.startswith("/") or reference.startswith("//"):
        return None
    return reference[1:]


def parent(path: str) -> str:
    value = str(PurePosixPath(path).parent)
    return "" if value == "." else value


def base_name(path: str) -> str:
    return PurePosixPath(path).name
