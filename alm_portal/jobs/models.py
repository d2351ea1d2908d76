"""The Job row: the record (and outbox) of all worker work."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alm_portal.jobs.choices import ACTIVE_JOB_STATUSES, JobStatus, JobWaitingReason
from alm_portal.jobs.registry import job_kind_label, job_kind_spec


class Job(models.Model):
    """A unit of worker work. The row is the source of truth and its own outbox (docs/architecture.md §1, docs/states.md
    §3).

    Status changes only through alm_portal.jobs.services, with conditional UPDATEs. A worker holds a job
    through a lease; a lease that runs out means the worker is gone and the dispatcher hands the job
    to another one, which continues from the step the row records. `kind` is one that an app registered
    with alm_portal.jobs.registry.
    """

    # The type its audit events carry: the model lived in the deployments app when the first ones were written,
    # and the chain, history tabs, notifications and selectors all name it so.
    audit_object_type = "deployments.job"

    kind = models.CharField(max_length=20)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.PENDING)
    environment = models.ForeignKey(
        "environments.Environment", on_delete=models.PROTECT, null=True, blank=True, related_name="jobs"
    )
    # Derived from kind at creation, stored so the partial unique index below can use it.
    uses_solution_slot = models.BooleanField(default=False)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    step = models.CharField(max_length=40, blank=True, help_text="Where a resumable handler is.")
    progress = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=300, blank=True)
    # Set while a due pending job waits for something other than a worker (its progress_message then says what).
    waiting_reason = models.CharField(max_length=20, choices=JobWaitingReason.choices, blank=True, default="")
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=120, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Dataverse handles of record for solution operations (docs/states.md §3).
    async_operation_id = models.CharField(max_length=64, blank=True)
    import_job_id = models.CharField(max_length=64, blank=True)
    package_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    request_id = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # The table keeps the name it had when the model lived in the deployments app.
        db_table = "deployments_job"
        ordering = ["-created_at", "-id"]
        constraints = [
            # The lock is data: one active solution operation per environment (docs/architecture.md §1).
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(uses_solution_slot=True, status__in=ACTIVE_JOB_STATUSES),
                name="one_active_solution_operation_per_environment",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "not_before"], name="job_dispatch_idx"),
            models.Index(fields=["kind", "status"], name="job_kind_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind_label} job {self.pk} ({self.status})"

    @property
    def kind_label(self) -> str:
        """What people call this kind of job (the label its app registered)."""
        return job_kind_label(self.kind)

    @staticmethod
    def kind_uses_solution_slot(kind: str) -> bool:
        spec = job_kind_spec(kind)
        return spec is not None and spec.uses_solution_slot

    @property
    def is_terminal(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
