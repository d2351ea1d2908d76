"""Idempotency-Key records of API POSTs (issue 6): the first response per (key, principal, method, path)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from alm_portal.idempotency.choices import RecordState


class IdempotencyRecord(models.Model):
    """One Idempotency-Key as used by one caller on one endpoint.

    The row is claimed by an INSERT that must win the unique constraint (so two requests with the
    same key never both run), then completed with the response to replay. `principal` is
    "user:<id>" for a browser session or "bearer:<sha-256 of the token>" for an API token, so a key
    is never shared between callers and no token text is stored.
    """

    key = models.CharField(max_length=255)
    principal = models.CharField(max_length=80)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    # SHA-256 of the request body (JSON canonicalised; multipart: the files' SHA-256 plus the fields).
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=RecordState.choices, default=RecordState.IN_FLIGHT)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(default=b"", blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key", "principal", "method", "path"], name="idempotency_key_unique_per_caller_endpoint"
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="idempotency_expires_idx")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} key={self.key} ({self.state})"
