"""Read-only admin view of the audit log: nobody adds, changes or deletes events here."""

from __future__ import annotations

from django.contrib import admin

from alm_portal.audit.models import AuditEvent
from alm_portal.readonly_admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = (
        "seq",
        "occurred_at",
        "actor_display",
        "actor_kind",
        "action",
        "object_type",
        "object_id",
        "outcome",
    )
    list_filter = ("outcome", "actor_kind")
    search_fields = ("^action", "=object_id", "=request_id", "actor_display")
    ordering = ("-seq",)
    # COUNT(*) over millions of rows on every page is the slow part of a big changelist.
    show_full_result_count = False
    readonly_fields = tuple(field.name for field in AuditEvent._meta.fields)
