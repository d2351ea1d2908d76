"""Deployment settings of a stage: versions of the pac settings document, saved under an ETag.

The only code that writes them; every change is audited in the same transaction. Permission (admin
scope) is checked by the views that call these.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.errors import DomainError, ValidationFailed
from deployments.models import DeploymentSettings, Stage
from deployments.settings_documents import (
    empty_document,
    etag_matches,
    settings_document_changes,
    settings_document_etag,
    settings_document_names,
    settings_document_parse,
    settings_document_render,
    settings_document_validate,
)


class PreconditionFailed(DomainError):
    """The If-Match ETag is not the current one: somebody else changed it first (HTTP 412)."""

    status = 412
    code = "precondition_failed"


# --- deployment settings ---------------------------------------------------------------------------


def settings_current(*, stage: Stage) -> DeploymentSettings | None:
    """The newest settings version of the stage, or None when none was saved yet."""
    return DeploymentSettings.objects.filter(stage=stage).order_by("-version").first()


def settings_current_etag(*, stage: Stage) -> str:
    """The ETag a client must send to change the stage's settings ("" while there are none)."""
    current = settings_current(stage=stage)
    return current.etag if current is not None else ""


def settings_update(
    *, stage: Stage, document: Any, if_match: str | None, context: AuditContext, user: User | None = None
) -> DeploymentSettings:
    """Save the next version of the stage's deployment settings, if `if_match` is the current ETag.

    The document must have the `pac solution create-settings` shape (deployments/settings_documents.py,
    400 validation_error otherwise). A stale or missing ETag is refused with 412
    precondition_failed (details: current_etag), so two people never overwrite each other; for the
    first version the ETag is "". Versions are never changed; the event names what was added,
    removed or changed, never the values. Event: deployment_settings.updated.
    """
    normalised = settings_document_validate(document)
    try:
        with transaction.atomic():
            # Lock the stage so two savers queue; the unique (stage, version) index backs this up.
            Stage.objects.select_for_update().filter(pk=stage.pk).first()
            current = settings_current(stage=stage)
            current_etag = current.etag if current is not None else ""
            if not etag_matches(if_match=if_match, current=current_etag):
                raise PreconditionFailed(
                    "The settings were changed by somebody else; reload them and apply your change again.",
                    details={"current_etag": current_etag},
                )
            version = (current.version if current is not None else 0) + 1
            saved = DeploymentSettings.objects.create(
                stage=stage,
                version=version,
                document=normalised,
                etag=settings_document_etag(stage_id=stage.pk, version=version, document=normalised),
                created_by=user,
            )
            old_document = current.document if current is not None else empty_document()
            record(
                context=context,
                action="deployment_settings.updated",
                target=saved,
                related=stage,
                before={"version": current.version if current is not None else 0, "etag": current_etag},
                after={
                    "version": version,
                    "etag": saved.etag,
                    "names": settings_document_names(normalised),
                    **settings_document_changes(old_document, normalised),
                },
            )
    except IntegrityError:
        raise PreconditionFailed(
            "The settings were changed by somebody else; reload them and apply your change again.",
            details={"current_etag": settings_current_etag(stage=stage)},
        ) from None
    return saved


def settings_import(
    *, stage: Stage, content: bytes | str, if_match: str | None, context: AuditContext, user: User | None = None
) -> DeploymentSettings:
    """Save a settings file made by `pac solution create-settings` (or exported from here) as the next
    version; the same rules as settings_update."""
    return settings_update(
        stage=stage, document=settings_document_parse(content), if_match=if_match, context=context, user=user
    )


def settings_export(*, stage: Stage, version: int | None = None) -> tuple[bytes, str]:
    """The stage's settings (newest, or `version`) as the pac JSON file, and its ETag ("" and an
    empty document while there are none)."""
    rows = DeploymentSettings.objects.filter(stage=stage)
    row = rows.filter(version=version).first() if version is not None else rows.order_by("-version").first()
    if row is None:
        if version is not None:
            raise ValidationFailed(
                "No such settings version.", details={"version": [f"Stage has no version {version}."]}
            )
        return settings_document_render(empty_document()), ""
    return settings_document_render(row.document), row.etag
