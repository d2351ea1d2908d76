"""How the pipeline services write their audit events: only the fields that changed, and what a deleted row was."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Model

from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.services import record


def record_changes(
    *,
    context: AuditContext,
    action: str,
    target: Model,
    related: Model | None,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
) -> bool:
    """Record `action` with the before/after of the fields that differ; nothing when none does (saving
    the same values is not a change worth a row). Call inside the change's transaction."""
    changed = [key for key in after if after[key] != before.get(key)]
    if not changed:
        return False
    record(
        context=context,
        action=action,
        target=target,
        related=related,
        before={key: before.get(key) for key in changed},
        after={key: after[key] for key in changed},
    )
    return True


def delete_recorded(
    *, context: AuditContext, action: str, row: Model, related: Model | None, facts: Mapping[str, Any]
) -> None:
    """Delete `row` and record `action` with what it was (`facts`), so the audit log keeps the
    configuration that existed. Call inside the change's transaction."""
    reference = ObjectRef.of(row)  # taken before delete() clears the primary key
    row.delete()
    record(context=context, action=action, target=reference, related=related, before=dict(facts))
