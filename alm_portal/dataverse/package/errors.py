"""The one exception type the package reader raises, with stable, user-facing codes."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class PackageErrorCode(StrEnum):
    """Stable codes for refusals; the API and the UI key their messages and metrics on these."""

    NOT_A_ZIP = "not_a_zip"
    TOO_MANY_ENTRIES = "too_many_entries"
    TOO_LARGE = "too_large"
    COMPRESSION_RATIO = "compression_ratio"
    UNSAFE_NAME = "unsafe_name"
    DUPLICATE_NAME = "duplicate_name"
    SYMLINK = "symlink"
    NESTED_ARCHIVE = "nested_archive"
    ENCRYPTED_ENTRY = "encrypted_entry"
    UNSUPPORTED_COMPRESSION = "unsupported_compression"
    CORRUPT_ENTRY = "corrupt_entry"
    MISSING_ROOT_FILE = "missing_root_file"
    INVALID_XML = "invalid_xml"
    # A document passed XmlLimits (bytes, elements or nesting depth; details name which): see xmlsafe.py.
    XML_TOO_LARGE = "xml_too_large"
    INVALID_MANIFEST = "invalid_manifest"
    INVALID_VERSION = "invalid_version"
    UNSUPPORTED_LAYOUT = "unsupported_layout"


class PackageError(Exception):
    """A solution package (zip or unpacked folder) was refused or could not be read.

    ``message`` is written for the person who uploaded the file; ``code`` is stable for programs;
    ``details`` carries machine-readable context (entry name, byte counts, limits).
    """

    def __init__(self, code: PackageErrorCode, message: str, *, details: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, object] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        """The API's error shape: ``{"code", "message", "details"}``."""
        return {"code": str(self.code), "message": self.message, "details": dict(self.details)}
