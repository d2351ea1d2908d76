"""Artifact files: spooled to a local temporary file while hashed, then copied to the artifact storage.

Never holds a whole package in memory: every copy goes in fixed-size chunks, hashing on the way, and
works with any Django storage backend (local disk, S3, Azure Blob through django-storages).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.core.files import File
from django.core.files.storage import Storage, storages

CHUNK_BYTES = 1024 * 1024
_SAFE_SEGMENT = re.compile(r"[^A-Za-z0-9_.-]")


class SpoolTooLarge(Exception):
    """The stream went past `max_bytes` while it was being spooled."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"more than {max_bytes} bytes")
        self.max_bytes = max_bytes


@dataclass(frozen=True)
class SpooledFile:
    """A local copy of a package with its SHA-256 and size, computed while it was written."""

    path: Path
    sha256: str
    size: int


def artifact_storage() -> Storage:
    """The storage backend configured as STORAGES["artifacts"]."""
    return storages["artifacts"]


@contextmanager
def spooled(source: IO[bytes], *, max_bytes: int) -> Iterator[SpooledFile]:
    """Copy `source` to a temporary file in chunks, hashing as it goes; remove the file afterwards.

    Raises SpoolTooLarge as soon as more than `max_bytes` have been read, without reading the rest.
    An upload Django already wrote to a temporary file is hashed where it is instead of copied again.
    """
    on_disk = getattr(source, "temporary_file_path", None)
    if callable(on_disk):
        existing = Path(on_disk())
        if existing.stat().st_size > max_bytes:
            raise SpoolTooLarge(max_bytes)
        yield file_digest(existing)  # Django deletes its own temporary file after the request
        return
    fd, name = tempfile.mkstemp(prefix="alm-package-", suffix=".zip")
    path = Path(name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise SpoolTooLarge(max_bytes)
                digest.update(chunk)
                out.write(chunk)
        yield SpooledFile(path=path, sha256=digest.hexdigest(), size=size)
    finally:
        path.unlink(missing_ok=True)


def file_digest(path: Path) -> SpooledFile:
    """SHA-256 and size of a local file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            size += len(chunk)
            digest.update(chunk)
    return SpooledFile(path=path, sha256=digest.hexdigest(), size=size)


def artifact_name(*, unique_name: str, version_key: str, flavour: str, sha256: str) -> str:
    """`solutions/<unique_name>/<version>/<flavour>-<sha256[:12]>.zip`, safe as a storage key."""
    return f"solutions/{_SAFE_SEGMENT.sub('_', unique_name)}/{version_key}/{flavour}-{sha256[:12]}.zip"


def stored_digest(name: str, *, storage: Storage | None = None) -> tuple[str, int]:
    """(SHA-256, size) of a stored artifact, streamed from the storage backend."""
    storage = storage or artifact_storage()
    digest = hashlib.sha256()
    size = 0
    with storage.open(name, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            size += len(chunk)
            digest.update(chunk)
    return digest.hexdigest(), size


def store_artifact(spooled_file: SpooledFile, *, name: str) -> str:
    """Save the spooled file under `name` and return the name it is stored under.

    A file already at `name` with the same SHA-256 is reused (a retried upload or export stores
    nothing twice); one with other content (never expected: the name carries the hash) makes the
    backend pick another name. Artifacts are never overwritten.
    """
    storage = artifact_storage()
    if storage.exists(name):
        existing_sha256, _ = stored_digest(name, storage=storage)
        if existing_sha256 == spooled_file.sha256:
            return name
    with spooled_file.path.open("rb") as handle:
        return storage.save(name, File(handle, name=os.path.basename(name)), max_length=500)
