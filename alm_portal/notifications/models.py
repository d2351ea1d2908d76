"""Notifications derived from the audit log: subscriptions (webhook endpoints, email opt-ins), the
dispatcher's cursor over the log, and one delivery row per (subscriber, event).

The audit log is the durable source: business code never "sends a notification"; the dispatcher reads
events above NotificationCursor.last_seq and turns the ones that match into delivery rows, in the same
transaction that advances the cursor. Delivery rows are their own outbox (status, attempts,
next_attempt_at), so a lost broker message or a dead worker only delays a delivery.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alm_portal.notifications.choices import DeliveryStatus


class NotificationCursor(models.Model):
    """The single row (id 1) holding the highest audit seq already turned into deliveries.

    Locked (SELECT … FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transactions admit one writer) for
    the whole batch that reads events, creates deliveries and advances it, so two dispatchers never
    read the same events and a crash mid-batch advances nothing.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="notification_cursor_single_row")]

    def __str__(self) -> str:
        return f"notifications dispatched up to audit seq {self.last_seq}"


class WebhookEndpoint(models.Model):
    """A URL that receives signed JSON POSTs for the events it subscribed to.

    `team` null means portal-wide (every event); otherwise only events about that team's objects.
    The URL passed the outbound policy (Purpose.WEBHOOK) when saved and is checked again, address
    included, on every delivery. An endpoint whose every attempt has failed for a day is switched off
    and says why (`disabled_reason`); deliveries run on the `notifications` queue, apart from jobs.
    The HMAC secret is stored encrypted (alm_portal.crypto) and never leaves the delivery code.
    `since_seq` is the audit seq of the creation (or re-activation): older events are never delivered
    to it.
    """

    team = models.ForeignKey(
        "accounts.Team", on_delete=models.PROTECT, null=True, blank=True, related_name="webhook_endpoints"
    )
    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=2000)
    secret_ciphertext = models.TextField()
    events = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    since_seq = models.PositiveBigIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    # When the endpoint's current run of failed attempts began (none since its last success: null). A run
    # longer than ALM_WEBHOOK_DISABLE_AFTER_HOURS switches the endpoint off, with the reason above.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EmailSubscription(models.Model):
    """A person's opt-in to email for some events (codes or prefixes such as "promotion.").

    People only receive events about what they may see: their teams' objects, promotions of stages
    that name them as approvers, and everything for admins and auditors. Nobody is mailed about their
    own action.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_subscription")
    events = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    since_seq = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"email for {self.user}"


class DeliveryBase(models.Model):
    """What webhook and email deliveries share: the event, the state, the retry schedule.

    A sender claims a pending row with a conditional UPDATE (next_attempt_at moves into the future by
    a lease, attempts + 1) and only then sends, so a duplicate task or a sweep running at the same time
    sends nothing twice; a sender that dies leaves the row to be retried when the lease runs out.
    """

    audit_seq = models.PositiveBigIntegerField()
    event = models.CharField(max_length=100)
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class WebhookDelivery(DeliveryBase):
    """One event for one endpoint: the JSON payload (fixed at dispatch) and every attempt's outcome.

    The row id is the X-ALM-Delivery header, the same on every retry, so receivers can drop duplicates.
    """

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    payload = models.JSONField()
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "audit_seq"], name="webhook_delivery_once_per_event"),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="webhook_delivery_status_valid"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx")]

    def __str__(self) -> str:
        return f"{self.event} #{self.audit_seq} → {self.endpoint_id} ({self.status})"


class EmailDelivery(DeliveryBase):
    """One email about one event to one subscriber (unique per subscription and event)."""

    subscription = models.ForeignKey(EmailSubscription, on_delete=models.CASCADE, related_name="deliveries")
    recipient = models.EmailField(max_length=254)
    subject = models.CharField(max_length=200)
    body = models.TextField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "audit_seq"], name="email_delivery_once_per_event"),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="email_delivery_status_valid"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="email_delivery_due_idx")]

    def __str__(self) -> str:
        return f"{self.event} #{self.audit_seq} → {self.recipient} ({self.status})"
