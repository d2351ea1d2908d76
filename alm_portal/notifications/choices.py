"""Delivery states and the event codes notifications speak (the audit log's action codes)."""

from django.db import models


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


# The events people usually subscribe to. Any audit action code (or a prefix ending in ".") may be
# subscribed; this list is documentation for the API schema and the admin, not a closed set.
KNOWN_EVENTS: tuple[str, ...] = (
    "promotion.requested",
    "promotion.approved",
    "promotion.rejected",
    "promotion.cancelled",
    "promotion.succeeded",
    "promotion.failed",
    "promotion.rolled_back",
    "drift.detected",
    "drift.resolved",
    "credential.expiring",
    "environment.health_changed",
    "job.failed",
    "job.needs_attention",
)

# Only successful actions notify, with one exception: a failed job is itself the news.
FAILED_EVENTS_THAT_NOTIFY: frozenset[str] = frozenset({"job.failed"})

# Never matched by the dispatcher: a ping is delivered to its one endpoint directly.
WEBHOOK_TEST_ACTION = "webhook.tested"
WEBHOOK_TEST_EVENT = "webhook.test"
NEVER_DISPATCHED: frozenset[str] = frozenset({WEBHOOK_TEST_ACTION})
