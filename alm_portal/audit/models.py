"""The audit log: one append-only table whose rows form a hash chain (docs/audit.md)."""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models

from alm_portal.audit.choices import ActorKind, Outcome


class AuditImmutableError(RuntimeError):
    """Raised when code tries to change or remove audit events through the ORM."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Reads only: bulk changes would break the chain, and on PostgreSQL triggers refuse them anyway;
    failing here names the offending call site in SQLite runs too."""

    def update(self, **kwargs: Any) -> NoReturn:
        raise AuditImmutableError("audit events are append-only; update() is not allowed")

    def delete(self) -> NoReturn:
        raise AuditImmutableError("audit events are append-only; delete() is not allowed")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AuditImmutableError("audit events are append-only; bulk_update() is not allowed")

    def bulk_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AuditImmutableError("audit events are written one at a time by audit.services.record()")


class AuditEvent(models.Model):
    """One audited action: who (actor, frozen display, how authenticated), what (action, object,
    before/after of changed fields, outcome), where from (request id, client IP, user agent) and when.

    `seq` is the primary key and runs 1, 2, 3… without gaps; `hash` covers every other column plus
    `prev_hash`, the previous row's hash. Rows are written only by audit.services (record and
    record_outcome) and never changed or deleted: the model refuses save() of an existing row and
    delete(); on PostgreSQL, triggers refuse UPDATE, DELETE and TRUNCATE (migration 0002).
    """

    seq = models.PositiveBigIntegerField(primary_key=True)
    occurred_at = models.DateTimeField()
    # Users with audit rows are deactivated, never deleted: no FK constraint, and nothing cascades.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        db_constraint=False,
        on_delete=models.DO_NOTHING,
        related_name="+",
    )
    actor_display = models.CharField(max_length=300, blank=True)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    auth_method = models.CharField(max_length=100, blank=True)
    # db_index gives PostgreSQL a second, pattern-ops index, so "action starts with promotion." is indexed.
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    related_type = models.CharField(max_length=100, blank=True)
    related_id = models.CharField(max_length=64, blank=True)
    related_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    message = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=100, blank=True)
    # Text, not inet: the hash covers the exact string, and PostgreSQL would re-spell IPv6 addresses.
    client_ip = models.CharField(max_length=64, blank=True)  # "" when unknown
    user_agent = models.CharField(max_length=500, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        get_latest_by = "seq"
        indexes = [
            models.Index(fields=["occurred_at"], name="audit_occurred_at_idx"),
            models.Index(fields=["object_type", "object_id", "seq"], name="audit_object_idx"),
            models.Index(fields=["related_type", "related_id", "seq"], name="audit_related_idx"),
            models.Index(fields=["outcome", "seq"], name="audit_outcome_idx"),
            models.Index(fields=["request_id"], name="audit_request_id_idx"),
            # The last verification is read by every /metrics scrape and the audit page; without this,
            # finding it walks back over every event written since (millions when it never ran).
            models.Index(fields=["seq"], name="audit_verified_idx", condition=models.Q(action="audit.verified")),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="audit_seq_from_one"),
            models.CheckConstraint(condition=models.Q(outcome__in=Outcome.values), name="audit_outcome_valid"),
            models.CheckConstraint(condition=models.Q(actor_kind__in=ActorKind.values), name="audit_actor_kind_valid"),
        ]

    def __str__(self) -> str:
        target = f" {self.object_type}:{self.object_id}" if self.object_type else ""
        return f"#{self.seq} {self.action}{target} ({self.outcome})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Only the first insert is allowed; a save() of a loaded row would be an UPDATE.
        if not self._state.adding:
            raise AuditImmutableError("audit events are append-only; an existing event cannot be saved again")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AuditImmutableError("audit events are append-only; delete() is not allowed")


class DeniedRequestTally(models.Model):
    """Refused API requests without a signed-in caller, counted per client address and window.

    Such refusals (no credentials, malformed or unknown tokens, throttled anonymous clients) are noise an
    attacker controls: one audit event each let one client write ~125 permanent rows a second. They are
    counted here instead, and the window's count becomes one `api.denied.unauthenticated` event when the
    window has ended (audit.services.denied_requests_flush, run by beat), in the transaction that deletes
    the row, so a count is never lost or written twice. Refusals of signed-in callers stay one event each.
    """

    client_ip = models.CharField(max_length=64)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    codes = models.JSONField(default=dict)  # refusal code → how many
    first_method = models.CharField(max_length=10, blank=True)
    first_path = models.CharField(max_length=200, blank=True)
    first_request_id = models.CharField(max_length=100, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client_ip", "window_start"], name="denied_tally_once_per_window"),
        ]
        indexes = [models.Index(fields=["window_end"], name="denied_tally_window_end_idx")]

    def __str__(self) -> str:
        return f"{self.count} refused from {self.client_ip or 'unknown'} since {self.window_start:%Y-%m-%d %H:%M:%S}"
