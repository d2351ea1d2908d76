"""Writing an unpacked solution to disk and a packed zip to a file: all or nothing, never outside the target."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..package.errors import PackageError, PackageErrorCode
from . import paths


def _refuse(message: str, **details: object) -> PackageError:
    return PackageError(PackageErrorCode.UNSUPPORTED_LAYOUT, message, details=details)


def write_folder(files: Mapping[str, bytes], destination: str | os.PathLike[str], *, replace: bool = False) -> None:
    """Write ``files`` (relative path -> bytes) as the folder ``destination``.

    Everything is written into a temporary folder beside ``destination`` first and moved into place at the end,
    so an error leaves nothing behind. ``destination`` must not exist or be an empty folder unless ``replace`` is
    set, in which case its previous content is swapped out only once the new one is complete (files the new
    unpack no longer has disappear, as SolutionPackager's ``/allowDelete:Yes`` does).
    """
    target = Path(destination)
    if target.exists() and not target.is_dir():
        raise _refuse(f"'{destination}' exists and is not a folder.", path=str(destination))
    if target.is_dir() and any(target.iterdir()) and not replace:
        raise _refuse(f"'{destination}' is not empty; unpack into a new or empty folder.", path=str(destination))
    parent = target.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    try:
        root = staging.resolve()
        for relative, data in files.items():
            paths.check_relative(relative)
            path = (staging / relative).resolve()
            if root not in path.parents:
                raise PackageError(
                    PackageErrorCode.UNSAFE_NAME,
                    f"The path '{relative}' would escape the solution folder.",
                    details={"path": relative},
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "xb") as handle:  # "x": two paths that meet on this file system are an error
                handle.write(data)
        if target.is_dir():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=parent))
            os.replace(target, retired / target.name)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_file(data: bytes, destination: str | os.PathLike[str]) -> None:
    """Write ``data`` to ``destination`` atomically (a temporary file beside it, then a rename)."""
    target = Path(destination)
    if target.is_dir():
        raise _refuse(f"'{destination}' is a folder; give the path of the zip to write.", path=str(destination))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as handle:
        try:
            handle.write(data)
        except BaseException:
            os.unlink(handle.name)
            raise
    os.replace(handle.name, target)
