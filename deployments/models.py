"""Pipelines and their stages, deployment settings, promotions and their approvals."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alm_portal.jobs.models import Job
from deployments.choices import (
    OPEN_PROMOTION_STATUSES,
    ApprovalDecision,
    ImportMode,
    PreflightStatus,
    PromotionKind,
    PromotionStatus,
    RollbackStrategy,
)


class Pipeline(models.Model):
    """A team's route for its solutions: one development environment, then ordered stages."""

    name = models.CharField(max_length=100, unique=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="pipelines")
    development_environment = models.ForeignKey(
        "environments.Environment", on_delete=models.PROTECT, related_name="pipelines_developed_here"
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Stage(models.Model):
    """One step of a pipeline: a target environment and the policy for promoting into it."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=50)
    order = models.PositiveSmallIntegerField()
    target_environment = models.ForeignKey(
        "environments.Environment", on_delete=models.PROTECT, related_name="stages_targeting"
    )
    required_approvals = models.PositiveSmallIntegerField(default=1)
    # A stage into a production environment needs at least one approval unless an admin set this on
    # purpose (audited with the stage's other policy); without it 0 counts as 1 there (deployments.policy).
    production_without_approval = models.BooleanField(default=False)
    approver_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="approver_of_stages")
    approver_teams = models.ManyToManyField("accounts.Team", blank=True, related_name="approver_of_stages")
    # Gating: the same version must have succeeded in the previous stage first.
    requires_previous_stage = models.BooleanField(default=True)
    import_mode = models.CharField(max_length=10, choices=ImportMode.choices, default=ImportMode.UPGRADE)
    overwrite_unmanaged_customizations = models.BooleanField(default=False)
    activate_flows_and_plugins = models.BooleanField(default=True)
    change_reference_required = models.BooleanField(default=False)
    change_reference_pattern = models.CharField(max_length=200, blank=True)
    backup_reference_required = models.BooleanField(default=False)
    # Only versions built from a commit on this branch of their repository may be promoted here (empty: any).
    require_source_branch = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["pipeline", "order"]
        constraints = [
            models.UniqueConstraint(fields=["pipeline", "name"], name="stage_name_unique_per_pipeline"),
            models.UniqueConstraint(fields=["pipeline", "order"], name="stage_order_unique_per_pipeline"),
            # Two stages importing into one environment would make gating and "what is installed where"
            # ambiguous; deployments.services.stages refuses it in words, this backs it up.
            models.UniqueConstraint(fields=["pipeline", "target_environment"], name="stage_target_unique_per_pipeline"),
        ]

    def __str__(self) -> str:
        return f"{self.pipeline.name} → {self.name}"


class StageWindow(models.Model):
    """A weekly window in which imports into the stage's environment may start."""

    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="windows")
    # ISO weekdays, 1 = Monday … 7 = Sunday.
    weekdays = models.JSONField(default=list)
    start_time = models.TimeField()
    end_time = models.TimeField()
    time_zone = models.CharField(max_length=64, default="UTC")

    def __str__(self) -> str:
        return f"{self.stage}: {self.weekdays} {self.start_time:%H:%M}-{self.end_time:%H:%M} {self.time_zone}"


class StageFreeze(models.Model):
    """A period in which nothing is imported into the stage's environment, unless an admin overrides."""

    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="freezes")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["starts_at"]

    def __str__(self) -> str:
        return f"freeze of {self.stage} {self.starts_at:%Y-%m-%d} – {self.ends_at:%Y-%m-%d}: {self.reason}"


class DeploymentSettings(models.Model):
    """A version of a stage's deployment settings, in the `pac solution create-settings` JSON shape.

    Rows are never changed: an edit adds the next version, and the ETag of the newest one guards
    against two people overwriting each other.
    """

    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="settings_versions")
    version = models.PositiveIntegerField()
    document = models.JSONField(default=dict)
    etag = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["stage", "-version"]
        constraints = [models.UniqueConstraint(fields=["stage", "version"], name="settings_version_unique")]

    def __str__(self) -> str:
        return f"settings v{self.version} of {self.stage}"


class Promotion(models.Model):
    """A request to install one solution version into one stage's environment (or to roll one back).

    Status changes only through deployments/workflow/: one function per transition, a
    conditional UPDATE that must hit one row, and one audit event in the same transaction.
    """

    kind = models.CharField(max_length=10, choices=PromotionKind.choices, default=PromotionKind.PROMOTION)
    status = models.CharField(max_length=20, choices=PromotionStatus.choices, default=PromotionStatus.PENDING_APPROVAL)
    solution = models.ForeignKey("solutions.Solution", on_delete=models.PROTECT, related_name="promotions")
    version = models.ForeignKey("solutions.SolutionVersion", on_delete=models.PROTECT, related_name="promotions")
    stage = models.ForeignKey(Stage, on_delete=models.PROTECT, related_name="promotions")
    # Frozen at creation: approvals bind to this artifact and this target (docs/states.md §2.2).
    target_environment = models.ForeignKey(
        "environments.Environment", on_delete=models.PROTECT, related_name="promotions"
    )
    artifact_sha256 = models.CharField(max_length=64)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    comment = models.TextField(blank=True)
    change_reference = models.CharField(max_length=100, blank=True)
    backup_reference = models.CharField(max_length=300, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    freeze_override_reason = models.TextField(blank=True)
    settings_version = models.ForeignKey(
        DeploymentSettings, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    preflight_status = models.CharField(max_length=10, choices=PreflightStatus.choices, default=PreflightStatus.PENDING)
    preflight_result = models.JSONField(default=dict, blank=True)
    preflight_job = models.ForeignKey(Job, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    run_job = models.ForeignKey(Job, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    attempt = models.PositiveIntegerField(default=0)
    attention_required = models.BooleanField(default=False)
    # The version installed on the target just before this one ran: what a rollback goes back to.
    previous_version = models.CharField(max_length=64, blank=True)
    rollback_of = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="rollbacks")
    rollback_strategy = models.CharField(max_length=24, choices=RollbackStrategy.choices, blank=True)
    rolled_back_by = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    result = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [
            # The default order of every promotion list (newest first): read from the index instead
            # of sorting all promotions for each page.
            models.Index(fields=["requested_at", "id"], name="promotion_requested_order_idx"),
            models.Index(fields=["status", "requested_at"], name="promotion_status_idx"),
            models.Index(fields=["target_environment", "solution", "status"], name="promotion_target_idx"),
        ]
        constraints = [
            # A second request for what is already asked for (Back + resubmit, a POST sent twice) is
            # refused with duplicate_request; the index holds it when two requests race.
            models.UniqueConstraint(
                fields=["kind", "version", "stage"],
                condition=Q(status__in=OPEN_PROMOTION_STATUSES),
                name="one_open_promotion_per_version_and_stage",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.solution} {self.version.version} → {self.stage.name} ({self.status})"


class Approval(models.Model):
    """One person's decision on a promotion, bound to the artifact and target it was made for."""

    promotion = models.ForeignKey(Promotion, on_delete=models.PROTECT, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approvals")
    decision = models.CharField(max_length=10, choices=ApprovalDecision.choices)
    comment = models.TextField(blank=True)
    decided_at = models.DateTimeField(default=timezone.now)
    artifact_sha256 = models.CharField(max_length=64)
    target_environment = models.ForeignKey("environments.Environment", on_delete=models.PROTECT, related_name="+")
    expires_at = models.DateTimeField()
    freeze_override = models.BooleanField(default=False)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["decided_at", "id"]
        constraints = [
            # Approvals come from distinct people: one live decision per person per promotion.
            models.UniqueConstraint(
                fields=["promotion", "approver"],
                condition=Q(voided_at__isnull=True),
                name="one_live_decision_per_person",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} by {self.approver} on promotion {self.promotion_id}"
