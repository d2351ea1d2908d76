"""The job kind of this app (registered with the job engine in tasks.py)."""

from django.db import models


class AuditJobKind(models.TextChoices):
    """Not a Dataverse operation: a full verification of the audit chain, queued from the API or pages."""

    AUDIT_VERIFY = "audit_verify", "Audit chain verification"
