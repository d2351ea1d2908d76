"""Read-only admin: endpoints and subscriptions change through the services (and the audit log).
The encrypted secret is not shown."""

from django.contrib import admin

from alm_portal.notifications.models import (
    EmailDelivery,
    EmailSubscription,
    NotificationCursor,
    WebhookDelivery,
    WebhookEndpoint,
)
from alm_portal.readonly_admin import ReadOnlyAdmin


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ["name", "url", "team", "is_active", "disabled_reason", "created_at"]
    list_filter = ["is_active", "team"]
    search_fields = ["name", "url"]
    exclude = ["secret_ciphertext"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "endpoint", "event", "audit_seq", "status", "attempts", "last_status_code", "created_at"]
    list_filter = ["status", "endpoint"]
    search_fields = ["event"]


@admin.register(EmailSubscription)
class EmailSubscriptionAdmin(ReadOnlyAdmin):
    list_display = ["user", "events", "is_active", "updated_at"]
    list_filter = ["is_active"]


@admin.register(EmailDelivery)
class EmailDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "recipient", "event", "audit_seq", "status", "attempts", "created_at"]
    list_filter = ["status"]
    search_fields = ["recipient", "event"]


@admin.register(NotificationCursor)
class NotificationCursorAdmin(ReadOnlyAdmin):
    list_display = ["id", "last_seq", "updated_at"]
