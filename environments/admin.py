"""Read-only admin: environments change through the services (and the audit log), never admin forms.
Secrets are not shown, not even encrypted."""

from django.contrib import admin

from alm_portal.readonly_admin import ReadOnlyAdmin
from environments.models import (
    Credential,
    DriftFinding,
    Environment,
    EnvironmentNotification,
    InventoryInterval,
    SolutionHistoryEntry,
)


@admin.register(Environment)
class EnvironmentAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "team", "health_status", "health_checked_at", "inventory_synced_at", "is_active"]
    list_filter = ["kind", "health_status", "is_active", "team"]
    search_fields = ["name", "url"]


@admin.register(Credential)
class CredentialAdmin(ReadOnlyAdmin):
    list_display = ["environment", "client_id", "kind", "status", "expires_at", "verified_at"]
    list_filter = ["status", "kind"]
    exclude = ["secret_ciphertext", "certificate_pem"]


@admin.register(InventoryInterval)
class InventoryIntervalAdmin(ReadOnlyAdmin):
    list_display = ["environment", "unique_name", "version", "is_managed", "valid_from", "valid_to"]
    list_filter = ["environment", "is_managed"]
    search_fields = ["unique_name"]


@admin.register(SolutionHistoryEntry)
class SolutionHistoryEntryAdmin(ReadOnlyAdmin):
    list_display = ["environment", "solution_name", "solution_version", "operation", "status", "result", "start_time"]
    list_filter = ["environment", "operation"]
    search_fields = ["solution_name"]


@admin.register(DriftFinding)
class DriftFindingAdmin(ReadOnlyAdmin):
    list_display = ["environment", "kind", "unique_name", "first_seen_at", "last_seen_at", "resolved_at"]
    list_filter = ["kind", "environment"]


@admin.register(EnvironmentNotification)
class EnvironmentNotificationAdmin(ReadOnlyAdmin):
    list_display = ["environment", "kind", "message", "created_at"]
    list_filter = ["kind"]
