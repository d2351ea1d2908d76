"""Dataverse environments, their credentials, health, inventory (as change intervals) and drift."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from environments.choices import (
    CredentialKind,
    CredentialStatus,
    DriftKind,
    EnvironmentKind,
    HealthStatus,
    HistoryOperation,
    HistorySuboperation,
    NotificationKind,
)


class Environment(models.Model):
    """One Dataverse environment the portal deploys to or exports from.

    `url` and `authority` passed the outbound-URL policy (alm_portal/outbound.py) when they were
    saved and are checked again before every call. The health fields are the last check's result:
    `health_error` and `health_error_seen_at` keep the last failure even after a healthy check, so
    people can see when it last went wrong. `throttled_until` persists a Retry-After the client
    received, so every worker process respects it; `throttled_responses` counts every 429 any
    process received from the environment (for /metrics). `privileges` is what the last health check
    found missing among the privileges the portal's operations need.
    """

    name = models.CharField(max_length=100, unique=True)
    url = models.CharField(max_length=300, help_text="https://<org>.crm<N>.dynamics.com")
    kind = models.CharField(max_length=16, choices=EnvironmentKind.choices, default=EnvironmentKind.OTHER)
    tenant_id = models.CharField(max_length=64)
    authority = models.CharField(max_length=300, help_text="https://login.microsoftonline.com/<tenant>")
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="environments")
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    health_status = models.CharField(max_length=24, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    health_error = models.TextField(blank=True)
    health_error_code = models.CharField(max_length=64, blank=True)
    health_error_seen_at = models.DateTimeField(null=True, blank=True)
    dataverse_version = models.CharField(max_length=64, blank=True)
    organization_id = models.CharField(max_length=64, blank=True)
    throttled_until = models.DateTimeField(null=True, blank=True)
    throttled_responses = models.PositiveBigIntegerField(default=0)
    last_throttled_at = models.DateTimeField(null=True, blank=True)
    # The deploying identity's privileges as the last successful health check read them
    # (environments.services.health.privilege_report): which the portal's operations need and lack.
    privileges = models.JSONField(default=dict, blank=True)

    inventory_synced_at = models.DateTimeField(null=True, blank=True)
    # Newest msdyn_starttime stored; the next sync asks for history from a little before it.
    history_synced_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["team", "name"], name="environment_team_name_idx")]

    def __str__(self) -> str:
        return self.name


class Credential(models.Model):
    """An application registration's credential for one environment.

    The client secret (or the certificate's private key) is stored only as a MultiFernet token
    (alm_portal/crypto.py) and is write-only everywhere. At most one credential per
    environment is active; rotation adds a pending one, verifies it against the environment and
    then activates it, retiring the old one.
    """

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="credentials")
    client_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=CredentialKind.choices)
    secret_ciphertext = models.TextField(help_text="Fernet token of the client secret or private key PEM.")
    # The certificate is public; kept for its thumbprint and expiry, never shown in full.
    certificate_pem = models.TextField(blank=True)
    certificate_thumbprint = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=24, choices=CredentialStatus.choices, default=CredentialStatus.PENDING_VERIFICATION
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # The smallest expiry-warning threshold (days) already notified, so each is notified once.
    expiry_warned_days = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["environment_id", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(status=CredentialStatus.ACTIVE),
                name="credential_one_active_per_environment",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.client_id} ({self.get_status_display()})"


class InventoryInterval(models.Model):
    """One solution version installed in one environment during [valid_from, valid_to).

    A sync closes the interval of a solution whose version or managed flag changed (or that is
    gone) and opens a new one; an unchanged solution costs nothing. `valid_to` is NULL while the
    version is current, so "what was installed at time X" is one indexed query
    (selectors.inventory_at) without a snapshot per sync.
    """

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="inventory")
    unique_name = models.CharField(max_length=256)
    friendly_name = models.CharField(max_length=256, blank=True)
    version = models.CharField(max_length=64)
    is_managed = models.BooleanField()
    publisher = models.CharField(max_length=256, blank=True, help_text="The publisher's unique name.")
    solution_id = models.CharField(max_length=36, blank=True)
    installed_on = models.DateTimeField(null=True, blank=True)
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["environment_id", "unique_name", "valid_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "unique_name"],
                condition=Q(valid_to__isnull=True),
                name="inventory_one_current_interval",
            ),
        ]
        indexes = [
            models.Index(fields=["environment", "unique_name", "valid_from"], name="inventory_env_name_from_idx"),
            models.Index(fields=["environment", "valid_to"], name="inventory_env_current_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.unique_name} {self.version} in {self.environment_id}"


class SolutionHistoryEntry(models.Model):
    """A copy of one msdyn_solutionhistory row: the environment's own record of what happened.

    Stored once per history id (syncs are idempotent); rows still `Started` are refreshed when
    they complete.
    """

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="solution_history")
    history_id = models.CharField(max_length=36)
    solution_name = models.CharField(max_length=256)
    solution_version = models.CharField(max_length=64, blank=True)
    operation = models.SmallIntegerField(choices=HistoryOperation.choices, null=True, blank=True)
    suboperation = models.SmallIntegerField(choices=HistorySuboperation.choices, null=True, blank=True)
    status = models.SmallIntegerField(null=True, blank=True, help_text="0 started, 1 completed")
    result = models.BooleanField(null=True, blank=True)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    is_managed = models.BooleanField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    exception_message = models.TextField(blank=True)
    publisher_name = models.CharField(max_length=256, blank=True)

    class Meta:
        ordering = ["environment_id", "-start_time", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "history_id"], name="solution_history_unique_id"),
        ]
        indexes = [models.Index(fields=["environment", "start_time"], name="solution_history_env_time_idx")]

    def __str__(self) -> str:
        return f"{self.get_operation_display()} {self.solution_name} {self.solution_version}"


class DriftFinding(models.Model):
    """A difference between what is installed and what the portal expects.

    At most one open finding per (environment, kind, solution); it is audited when first seen
    (`drift.detected`) and when it goes away (`drift.resolved`). `last_seen_at` moves with every
    sync that still sees it.
    """

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="drift_findings")
    kind = models.CharField(max_length=24, choices=DriftKind.choices)
    unique_name = models.CharField(max_length=256)
    details = models.JSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["environment_id", "-first_seen_at", "unique_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "kind", "unique_name"],
                condition=Q(resolved_at__isnull=True),
                name="drift_one_open_finding",
            ),
        ]
        indexes = [models.Index(fields=["environment", "resolved_at"], name="drift_env_open_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.unique_name}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class EnvironmentNotification(models.Model):
    """Something the environment's team (and admins) should hear about: an expiring credential,
    drift found or resolved. Written by the services next to the audit event; a later issue
    delivers them (mail, webhooks). They are also logged at WARNING."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=24, choices=NotificationKind.choices)
    message = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["environment", "created_at"], name="env_notification_time_idx")]

    def __str__(self) -> str:
        return self.message
