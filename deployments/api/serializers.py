"""API shapes of deployments (issue 6: field names are the contract; adding fields is fine).

Output serializers are read-only and read only what the selectors join or prefetch. Input
serializers list exactly the fields a caller may set: nothing else (status, approvals, environment
URLs, …) can be assigned through the API, and unknown fields are refused (mass assignment).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alm_portal.api.inputs import StrictInputSerializer
from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from deployments.choices import ApprovalDecision, RollbackStrategy
from deployments.filtersets import MODEL_KIND_TO_API
from deployments.models import Approval, Promotion
from deployments.policy import (
    BACKUP_REFERENCE_MAX_LENGTH,
    CHANGE_REFERENCE_MAX_LENGTH,
    COMMENT_MAX_LENGTH,
    approvals_required,
)
from deployments.selectors import job_log
from deployments.source import PromotionSourceDiff

# --- references ------------------------------------------------------------------------------------


class IdNameSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class SolutionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    unique_name = serializers.CharField()


class VersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.CharField(source="version_key")


class PersonSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    display_name = serializers.CharField(source="shown_name")


class JobSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    progress = serializers.IntegerField(min_value=0, max_value=100)


# One shared instance: a serializer built per promotion deep-copies its fields every time (a tenth of
# a list page's serialising). Only to_representation is called on it, which keeps no state.
_JOB_SUMMARY = JobSummarySerializer()


class JobAcceptedSerializer(serializers.Serializer):
    job = JobSummarySerializer()


# --- promotions --------------------------------------------------------------------------------------


API_DECISION = {ApprovalDecision.APPROVE: "approved", ApprovalDecision.REJECT: "rejected"}


class ApprovalSerializer(serializers.ModelSerializer):
    approver = PersonSerializer()
    decision = serializers.SerializerMethodField()
    at = serializers.DateTimeField(source="decided_at")

    class Meta:
        model = Approval
        fields = ["id", "approver", "decision", "comment", "at", "expires_at", "freeze_override", "voided_at"]

    @extend_schema_field(serializers.ChoiceField(choices=["approved", "rejected"]))
    def get_decision(self, approval: Approval) -> str:
        return API_DECISION[approval.decision]  # type: ignore[index]


class PreflightSerializer(serializers.Serializer):
    status = serializers.CharField(source="preflight_status")
    checked_at = serializers.SerializerMethodField()
    checks = serializers.SerializerMethodField()

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_checked_at(self, promotion: Promotion) -> str | None:
        result = promotion.preflight_result if isinstance(promotion.preflight_result, dict) else {}
        return result.get("checked_at")

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_checks(self, promotion: Promotion) -> list[Any]:
        result = promotion.preflight_result if isinstance(promotion.preflight_result, dict) else {}
        return list(result.get("checks") or [])


class ErrorFieldSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class PromotionSerializer(serializers.ModelSerializer):
    """A promotion (or rollback) as GET returns it; every action answers with this too."""

    kind = serializers.SerializerMethodField()
    solution = SolutionRefSerializer()
    version = VersionRefSerializer()
    stage = IdNameSerializer()
    target_environment = IdNameSerializer()
    requested_by = PersonSerializer()
    justification = serializers.CharField(source="comment")
    required_approvals = serializers.SerializerMethodField()
    approvals = ApprovalSerializer(many=True)
    preflight = PreflightSerializer(source="*")
    jobs = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    rollback_strategy = serializers.ChoiceField(
        choices=RollbackStrategy.choices, allow_blank=True, help_text='Rollbacks only; "" otherwise.'
    )

    class Meta:
        model = Promotion
        fields = [
            "id",
            "kind",
            "status",
            "solution",
            "version",
            "stage",
            "target_environment",
            "requested_by",
            "requested_at",
            "scheduled_for",
            "justification",
            "change_reference",
            "backup_reference",
            "required_approvals",
            "approvals",
            "preflight",
            "jobs",
            "result",
            "error",
            "previous_version",
            "rollback_of",
            "rollback_strategy",
            "rolled_back_by",
            "attention_required",
            "attempt",
            "started_at",
            "finished_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["deploy", "rollback"]))
    def get_kind(self, promotion: Promotion) -> str:
        return MODEL_KIND_TO_API[promotion.kind]  # type: ignore[index]

    @extend_schema_field(serializers.IntegerField())
    def get_required_approvals(self, promotion: Promotion) -> int:
        return approvals_required(promotion=promotion)

    @extend_schema_field(JobSummarySerializer(many=True))
    def get_jobs(self, promotion: Promotion) -> list[dict[str, Any]]:
        jobs = (promotion.preflight_job, promotion.run_job)
        return [_JOB_SUMMARY.to_representation(job) for job in jobs if job is not None]

    @extend_schema_field(ErrorFieldSerializer(allow_null=True))
    def get_error(self, promotion: Promotion) -> dict[str, str] | None:
        if not promotion.error_code and not promotion.error_message:
            return None
        return {"code": promotion.error_code, "message": promotion.error_message}


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "description": "an id"},
            {"type": "string", "minLength": 1, "maxLength": 100, "description": "a name (digits only: an id)"},
        ]
    }
)
class IdOrNameField(serializers.Field):
    """An id (a JSON integer, or a string of digits, as before) or a name: additive to an id field."""

    default_error_messages = {"invalid": "Give an id (an integer) or a name (1–100 characters)."}

    def to_internal_value(self, data: Any) -> int | str:
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        if isinstance(data, int):
            return data
        text = data.strip()
        if not text or len(text) > 100:
            self.fail("invalid")
        return int(text) if text.isdigit() else text

    def to_representation(self, value: Any) -> Any:
        return value


class PromotionCreateSerializer(StrictInputSerializer):
    version = IdOrNameField(
        help_text="The solution version to install: its id, or its version string (e.g. 1.0.0.6) together "
        "with `solution`."
    )
    stage = IdOrNameField(
        help_text="The target stage: its id, or its name in `pipeline` (by default the solution's pipeline)."
    )
    solution = serializers.CharField(
        required=False,
        max_length=100,
        help_text="The solution's unique name (case-insensitive): needed when `version` is a version string.",
    )
    pipeline = serializers.CharField(
        required=False,
        max_length=100,
        help_text="The pipeline's name, for a stage given by name (default: the solution's pipeline).",
    )
    justification = serializers.CharField(max_length=COMMENT_MAX_LENGTH)
    scheduled_for = serializers.DateTimeField(required=False, allow_null=True)
    change_reference = serializers.CharField(required=False, allow_blank=True, max_length=CHANGE_REFERENCE_MAX_LENGTH)
    backup_reference = serializers.CharField(required=False, allow_blank=True, max_length=BACKUP_REFERENCE_MAX_LENGTH)


class ApproveSerializer(StrictInputSerializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=COMMENT_MAX_LENGTH)
    override_freeze = serializers.BooleanField(
        required=False, default=False, help_text="Admins: start despite a freeze of the stage (needs `reason`)."
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=COMMENT_MAX_LENGTH)


class CommentRequiredSerializer(StrictInputSerializer):
    comment = serializers.CharField(max_length=COMMENT_MAX_LENGTH)


class RetrySerializer(StrictInputSerializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=COMMENT_MAX_LENGTH)


class RollbackSerializer(StrictInputSerializer):
    strategy = serializers.ChoiceField(choices=RollbackStrategy.choices)
    justification = serializers.CharField(max_length=COMMENT_MAX_LENGTH)
    confirm = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="uninstall_reinstall: the solution's unique name."
    )


class RollbackStrategySerializer(serializers.Serializer):
    strategy = serializers.CharField()
    label = serializers.CharField()
    available = serializers.BooleanField()
    reason = serializers.CharField()
    resulting_version = serializers.CharField(allow_null=True)
    data_loss = serializers.ListField(child=serializers.DictField())
    data_loss_known = serializers.BooleanField()
    requires_admin = serializers.BooleanField()
    requires_confirmation = serializers.BooleanField()
    confirmation = serializers.CharField(allow_null=True)
    import_mode = serializers.CharField(allow_null=True)
    manual = serializers.BooleanField()


class RollbackPlanSerializer(serializers.Serializer):
    strategies = RollbackStrategySerializer(many=True)


class SourceFileDiffSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Relative to the solution's folder in the repository.")
    status = serializers.ChoiceField(choices=["added", "modified", "deleted"])
    diff = serializers.CharField(help_text="Unified diff of a modified file (XML and JSON pretty-printed); empty else.")


class PromotionSourceDiffSerializer(serializers.Serializer):
    """GET /promotions/{id}/source-diff/: the version's commit against the commit of the target's version."""

    repository_url = serializers.CharField(allow_null=True)
    folder = serializers.CharField(allow_null=True)
    new_commit = serializers.CharField(allow_null=True)
    new_tag = serializers.CharField(allow_null=True)
    old_version = serializers.CharField(allow_null=True, help_text="The version the target has (or had).")
    old_commit = serializers.CharField(allow_null=True)
    compare_url = serializers.CharField(allow_null=True, help_text="GitHub and Azure DevOps only.")
    files = SourceFileDiffSerializer(many=True)
    more_files = serializers.IntegerField(help_text="Changed files left out of `files`.")
    truncated = serializers.BooleanField(help_text="Files or diff lines were left out.")
    message = serializers.CharField(
        allow_null=True, help_text="Why there is no diff: no commit, nothing to compare with, or Git unavailable."
    )

    @staticmethod
    def of(diff: PromotionSourceDiff) -> dict[str, Any]:
        new, old = diff.new, diff.old
        return {
            "repository_url": new.repository_url if new else None,
            "folder": new.folder if new else None,
            "new_commit": new.commit if new else None,
            "new_tag": (new.tag or None) if new else None,
            "old_version": diff.old_version or None,
            "old_commit": old.commit if old else None,
            "compare_url": diff.compare_url,
            "files": [{"path": entry.path, "status": entry.status, "diff": entry.diff} for entry in diff.files],
            "more_files": diff.more_files,
            "truncated": diff.truncated,
            "message": diff.message or None,
        }


# --- jobs ----------------------------------------------------------------------------------------


class DataverseHandlesSerializer(serializers.Serializer):
    async_operation_id = serializers.CharField(allow_null=True)
    import_job_key = serializers.CharField(allow_null=True)


class ImportResultSerializer(serializers.Serializer):
    component = serializers.CharField(allow_blank=True, allow_null=True)
    type = serializers.CharField(allow_blank=True, allow_null=True)
    result = serializers.CharField(allow_blank=True, allow_null=True)
    message = serializers.CharField(allow_blank=True, allow_null=True)


class JobLogEntrySerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    at = serializers.DateTimeField(source="occurred_at")
    action = serializers.CharField()
    outcome = serializers.CharField()
    message = serializers.CharField(allow_blank=True)
    details = serializers.JSONField(source="after", allow_null=True)


def _result(job: Job) -> dict[str, Any]:
    return job.result if isinstance(job.result, dict) else {}


class JobSerializer(serializers.ModelSerializer):
    # The model's kind is open (each app registers its own); the API names every kind the portal has.
    kind = serializers.ChoiceField(choices=JobKind.choices, read_only=True)
    environment = IdNameSerializer(allow_null=True)
    created_by = PersonSerializer(allow_null=True)
    started_at = serializers.DateTimeField(source="claimed_at", allow_null=True)
    dataverse = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    import_results = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "environment",
            "params",
            "result",
            "progress",
            "progress_message",
            "error",
            "error_code",
            "error_message",
            "attempts",
            "dataverse",
            "import_results",
            "not_before",
            "created_at",
            "created_by",
            "started_at",
            "claimed_at",
            "submitted_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(DataverseHandlesSerializer)
    def get_dataverse(self, job: Job) -> dict[str, str | None]:
        result = _result(job)
        operations = [op for op in result.get("operations") or [] if isinstance(op, dict)]
        last = operations[-1] if operations else {}
        return {
            "async_operation_id": job.async_operation_id
            or result.get("async_operation_id")
            or last.get("async_operation_id"),
            "import_job_key": job.import_job_id or result.get("import_job_id") or last.get("import_job_id"),
        }

    @extend_schema_field(ErrorFieldSerializer(allow_null=True))
    def get_error(self, job: Job) -> dict[str, str] | None:
        if not job.error_code and not job.error_message:
            return None
        return {"code": job.error_code, "message": job.error_message}

    @extend_schema_field(ImportResultSerializer(many=True))
    def get_import_results(self, job: Job) -> list[dict[str, Any]]:
        components = _result(job).get("components") or []
        return [
            {
                "component": item.get("name"),
                "type": None if item.get("type") is None else str(item.get("type")),
                "result": item.get("result"),
                "message": item.get("message"),
            }
            for item in components
            if isinstance(item, dict)
        ]


class JobDetailSerializer(JobSerializer):
    log = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "log"]
        read_only_fields = fields

    @extend_schema_field(JobLogEntrySerializer(many=True))
    def get_log(self, job: Job) -> list[dict[str, Any]]:

        return JobLogEntrySerializer(job_log(job=job), many=True).data  # type: ignore[return-value]


class JobResolveSerializer(StrictInputSerializer):
    succeeded = serializers.BooleanField(help_text="What the admin found on the target.")
    note = serializers.CharField(max_length=COMMENT_MAX_LENGTH)
