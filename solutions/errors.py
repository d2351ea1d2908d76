"""Refusals of the solution registry, with the stable codes of docs/api.md."""

from __future__ import annotations

from alm_portal.errors import Conflict, DomainError, ValidationFailed


class VersionExists(Conflict):
    """That flavour of that version is stored with another checksum, or an export would reuse a version.

    `details` carries `next_allowed`: the lowest version that is above every version seen anywhere.
    """

    code = "version_exists"


class ArtifactMissing(Conflict):
    """The version has no stored artifact of the flavour asked for."""

    code = "artifact_missing"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"


class InvalidPackage(ValidationFailed):
    """The package reader refused the file; `message` is the reader's own, written for the uploader."""
