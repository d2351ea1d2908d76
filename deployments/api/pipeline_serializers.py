"""API shapes of pipelines, stages, their windows and freezes, and deployment settings (issue 6).

Output serializers are read-only and read only what deployments.selectors prefetch. Input serializers
list exactly what an admin may set (StrictInputSerializer refuses anything else); ids are bare
integers resolved by the views.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deployments.api.serializers import IdNameSerializer, PersonSerializer, StrictInputSerializer
from deployments.choices import ImportMode
from deployments.models import Pipeline, Stage, StageFreeze, StageWindow
from deployments.services.calendar import FREEZE_REASON_MAX_LENGTH
from deployments.services.pipelines import DESCRIPTION_MAX_LENGTH
from deployments.services.stages import NAME_MAX_LENGTH as STAGE_NAME_MAX_LENGTH
from deployments.settings_documents import MAX_VALUE_LENGTH

# --- pipelines and stages --------------------------------------------------------------------------


@extend_schema_field({"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d$", "example": "08:00"})
class HourMinuteField(serializers.TimeField):
    """A time of day as "HH:MM" (the API's window format), not OpenAPI's HH:MM:SS `time`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%H:%M", input_formats=["%H:%M", "%H:%M:%S"], **kwargs)


class WindowSerializer(serializers.ModelSerializer):
    days = serializers.ListField(source="weekdays", child=serializers.IntegerField(min_value=1, max_value=7))
    start = HourMinuteField(source="start_time")
    end = HourMinuteField(source="end_time")

    class Meta:
        model = StageWindow
        fields = ["id", "days", "start", "end", "time_zone"]


class FreezeSerializer(serializers.ModelSerializer):
    start = serializers.DateTimeField(source="starts_at")
    end = serializers.DateTimeField(source="ends_at")

    class Meta:
        model = StageFreeze
        fields = ["id", "start", "end", "reason"]


class ApproversSerializer(serializers.Serializer):
    users = PersonSerializer(many=True, source="approver_users.all")
    teams = IdNameSerializer(many=True, source="approver_teams.all")


class StageSerializer(serializers.ModelSerializer):
    pipeline = serializers.IntegerField(source="pipeline_id")
    environment = IdNameSerializer(source="target_environment")
    approvers = ApproversSerializer(source="*")
    windows = WindowSerializer(many=True, source="windows.all")
    freezes = FreezeSerializer(many=True, source="freezes.all")

    class Meta:
        model = Stage
        fields = [
            "id",
            "pipeline",
            "order",
            "name",
            "environment",
            "required_approvals",
            "production_without_approval",
            "approvers",
            "requires_previous_stage",
            "import_mode",
            "overwrite_unmanaged_customizations",
            "activate_flows_and_plugins",
            "change_reference_required",
            "change_reference_pattern",
            "backup_reference_required",
            "require_source_branch",
            "windows",
            "freezes",
        ]
        read_only_fields = fields


class PipelineSerializer(serializers.ModelSerializer):
    team = IdNameSerializer()
    development_environment = IdNameSerializer()
    stages = StageSerializer(many=True, source="stages.all")

    class Meta:
        model = Pipeline
        fields = ["id", "name", "team", "development_environment", "description", "created_at", "stages"]
        read_only_fields = fields


class WindowInputSerializer(StrictInputSerializer):
    days = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=7), min_length=1, help_text="ISO weekdays, 1 = Monday."
    )
    start = HourMinuteField(help_text="HH:MM on the window's wall clock.")
    end = HourMinuteField(help_text="HH:MM; not after `start` means the window crosses midnight.")
    time_zone = serializers.CharField(max_length=64, default="UTC")


class FreezeInputSerializer(StrictInputSerializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    reason = serializers.CharField(max_length=FREEZE_REASON_MAX_LENGTH)


class FreezeUpdateSerializer(StrictInputSerializer):
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)
    reason = serializers.CharField(required=False, max_length=FREEZE_REASON_MAX_LENGTH)


class StageUpdateSerializer(StrictInputSerializer):
    """The stage's fields (PATCH: any subset). `windows` / `freezes`, when given, replace the stage's
    lists (entries equal to an existing one keep it); they also have endpoints of their own."""

    name = serializers.CharField(required=False, max_length=STAGE_NAME_MAX_LENGTH)
    environment = serializers.IntegerField(required=False, help_text="Id of the target environment.")
    required_approvals = serializers.IntegerField(required=False, min_value=0, max_value=10)
    production_without_approval = serializers.BooleanField(
        required=False,
        help_text="A production target needs at least one approval unless this is set (an explicit, audited policy).",
    )
    approver_users = serializers.ListField(child=serializers.IntegerField(), required=False)
    approver_teams = serializers.ListField(child=serializers.IntegerField(), required=False)
    requires_previous_stage = serializers.BooleanField(required=False)
    import_mode = serializers.ChoiceField(choices=ImportMode.choices, required=False)
    overwrite_unmanaged_customizations = serializers.BooleanField(required=False)
    activate_flows_and_plugins = serializers.BooleanField(required=False)
    change_reference_required = serializers.BooleanField(required=False)
    change_reference_pattern = serializers.CharField(required=False, allow_blank=True, max_length=200)
    backup_reference_required = serializers.BooleanField(required=False)
    require_source_branch = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Only versions built from a commit on this branch of their repository (empty: any).",
    )
    windows = WindowInputSerializer(many=True, required=False)
    freezes = FreezeInputSerializer(many=True, required=False)


class StageCreateSerializer(StageUpdateSerializer):
    name = serializers.CharField(max_length=STAGE_NAME_MAX_LENGTH)
    environment = serializers.IntegerField(help_text="Id of the target environment.")


class PipelineCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    team = serializers.IntegerField()
    development_environment = serializers.IntegerField()
    description = serializers.CharField(required=False, allow_blank=True, max_length=DESCRIPTION_MAX_LENGTH)
    stages = StageCreateSerializer(many=True, required=False)


class SettingsEntrySerializer(serializers.Serializer):
    SchemaName = serializers.CharField(max_length=MAX_VALUE_LENGTH)
    Value = serializers.CharField(allow_blank=True, max_length=MAX_VALUE_LENGTH)


class ConnectionReferenceSerializer(serializers.Serializer):
    LogicalName = serializers.CharField(max_length=MAX_VALUE_LENGTH)
    ConnectionId = serializers.CharField(allow_blank=True, max_length=MAX_VALUE_LENGTH)
    ConnectorId = serializers.CharField(max_length=MAX_VALUE_LENGTH)


class DeploymentSettingsDocumentSerializer(serializers.Serializer):
    """The `pac solution create-settings` JSON shape."""

    EnvironmentVariables = SettingsEntrySerializer(many=True)
    ConnectionReferences = ConnectionReferenceSerializer(many=True)


class WindowUpdateSerializer(StrictInputSerializer):
    days = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=7), min_length=1, required=False)
    start = HourMinuteField(required=False)
    end = HourMinuteField(required=False)
    time_zone = serializers.CharField(max_length=64, required=False)


class StageReplaceSerializer(StageCreateSerializer):
    """PUT of a stage: the whole stage, so an omitted field gets its default (as when the stage was
    created) and omitted approver lists become empty; `windows` and `freezes` replace the stage's
    lists when given (entries equal to an existing one keep it) and stay as they are when omitted."""

    required_approvals = serializers.IntegerField(min_value=0, max_value=10, default=1)
    production_without_approval = serializers.BooleanField(default=False)
    approver_users = serializers.ListField(child=serializers.IntegerField(), default=list)
    approver_teams = serializers.ListField(child=serializers.IntegerField(), default=list)
    requires_previous_stage = serializers.BooleanField(default=True)
    import_mode = serializers.ChoiceField(choices=ImportMode.choices, default=ImportMode.UPGRADE)
    overwrite_unmanaged_customizations = serializers.BooleanField(default=False)
    activate_flows_and_plugins = serializers.BooleanField(default=True)
    change_reference_required = serializers.BooleanField(default=False)
    change_reference_pattern = serializers.CharField(allow_blank=True, max_length=200, default="")
    backup_reference_required = serializers.BooleanField(default=False)
    require_source_branch = serializers.CharField(allow_blank=True, max_length=200, default="")


class PipelineUpdateSerializer(StrictInputSerializer):
    """PUT of a pipeline (an omitted description becomes empty; PATCH: any subset). Stages have their
    own endpoints (`stages/`, `reorder/`)."""

    name = serializers.CharField(max_length=100)
    team = serializers.IntegerField()
    development_environment = serializers.IntegerField()
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=DESCRIPTION_MAX_LENGTH)


class StageReorderSerializer(StrictInputSerializer):
    stages = serializers.ListField(
        child=serializers.IntegerField(), min_length=1, help_text="Every stage id of the pipeline once, first first."
    )


class SettingsNamesSerializer(serializers.Serializer):
    EnvironmentVariables = serializers.ListField(child=serializers.CharField())
    ConnectionReferences = serializers.ListField(child=serializers.CharField())


class MissingVariableSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(allow_blank=True)
    packaged = serializers.BooleanField(help_text="The package carries a value or default that would be used.")
    listed = serializers.BooleanField(help_text="The settings list the name, with an empty value.")


class MissingReferenceSerializer(serializers.Serializer):
    name = serializers.CharField()
    connector_id = serializers.CharField(allow_blank=True)
    listed = serializers.BooleanField()


class MissingSettingsSerializer(serializers.Serializer):
    EnvironmentVariables = MissingVariableSerializer(many=True)
    ConnectionReferences = MissingReferenceSerializer(many=True)


class ConnectorMismatchSerializer(serializers.Serializer):
    name = serializers.CharField()
    given = serializers.CharField()
    expected = serializers.CharField()


class SettingsCheckSerializer(serializers.Serializer):
    """The stage's current settings checked against a solution version's manifest."""

    version = serializers.DictField(help_text="{id, version, solution}")
    settings_version = serializers.IntegerField(allow_null=True, help_text="null while nothing was saved.")
    complete = serializers.BooleanField(help_text="Nothing is missing without a packaged fallback.")
    unknown = SettingsNamesSerializer(help_text="Names the settings set that the version does not have.")
    missing = MissingSettingsSerializer(help_text="Names the version has that the settings give no value.")
    connector_mismatch = ConnectorMismatchSerializer(many=True)
