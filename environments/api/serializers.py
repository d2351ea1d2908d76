"""API shapes of environments (issue 6 "environments/"). Secrets are write-only and never rendered.

Input serializers only validate types; the services validate meaning (outbound policy, credentials)
and raise ValidationFailed with details per field.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alm_portal.accounts.api.serializers import TeamRefSerializer
from alm_portal.accounts.models import Team
from alm_portal.api.inputs import StrictInputSerializer
from environments.choices import CredentialKind, EnvironmentKind
from environments.models import Credential, DriftFinding, Environment, InventoryInterval, SolutionHistoryEntry
from environments.services.validation import DESCRIPTION_MAX_LENGTH


class HealthSerializer(serializers.Serializer):
    status = serializers.CharField(source="health_status")
    checked_at = serializers.DateTimeField(source="health_checked_at", allow_null=True)
    error = serializers.CharField(source="health_error")
    error_code = serializers.CharField(source="health_error_code")
    error_seen_at = serializers.DateTimeField(source="health_error_seen_at", allow_null=True)
    dataverse_version = serializers.CharField()
    throttled_until = serializers.DateTimeField(allow_null=True)
    throttled_responses = serializers.IntegerField(help_text="HTTP 429 answers received from it, by any process.")
    last_throttled_at = serializers.DateTimeField(allow_null=True)
    privileges = serializers.JSONField(
        read_only=True,
        help_text="The deploying identity's privileges as the last health check read them: checked_at, user_id, "
        "read (false: error_code and error say why), held_count and missing: per operation (export, import, "
        "stage_and_upgrade, delete_and_promote, uninstall) the needed privileges it lacks, each with source and "
        "component_types (non-empty: only solutions with those components need it).",
    )


def _active(environment: Environment) -> Credential | None:
    prefetched = getattr(environment, "active_credentials", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return environment.credentials.filter(status="active").defer("secret_ciphertext").first()


class EnvironmentSerializer(serializers.ModelSerializer):
    """An environment as GET returns it; the credential fields describe the active credential."""

    team = TeamRefSerializer(read_only=True)
    client_id = serializers.SerializerMethodField()
    credential_type = serializers.SerializerMethodField()
    credential_expires_at = serializers.SerializerMethodField()
    health = HealthSerializer(source="*", read_only=True)

    class Meta:
        model = Environment
        fields = [
            "id",
            "name",
            "url",
            "kind",
            "tenant_id",
            "authority",
            "team",
            "description",
            "client_id",
            "credential_type",
            "credential_expires_at",
            "is_active",
            "health",
            "inventory_synced_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_client_id(self, environment: Environment) -> str | None:
        active = _active(environment)
        return active.client_id if active else None

    @extend_schema_field(serializers.ChoiceField(choices=CredentialKind.choices, allow_null=True))
    def get_credential_type(self, environment: Environment) -> str | None:
        active = _active(environment)
        return active.kind if active else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_credential_expires_at(self, environment: Environment) -> str | None:
        active = _active(environment)
        if active is None or active.expires_at is None:
            return None
        return serializers.DateTimeField().to_representation(active.expires_at)


class EnvironmentWriteSerializer(StrictInputSerializer):
    """Create (all required fields) or update (any subset). Secrets: write-only, never trimmed."""

    name = serializers.CharField(max_length=100)
    url = serializers.CharField(max_length=300)
    kind = serializers.ChoiceField(choices=EnvironmentKind.choices)
    tenant_id = serializers.CharField(max_length=64)
    authority = serializers.CharField(max_length=300, required=False, allow_blank=True)
    team = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all())
    description = serializers.CharField(required=False, allow_blank=True, max_length=DESCRIPTION_MAX_LENGTH)
    is_active = serializers.BooleanField(required=False)
    client_id = serializers.CharField(max_length=64)
    credential_type = serializers.ChoiceField(choices=CredentialKind.choices)
    client_secret = serializers.CharField(
        write_only=True, required=False, trim_whitespace=False, max_length=1024, style={"input_type": "password"}
    )
    certificate_pem = serializers.CharField(write_only=True, required=False, trim_whitespace=False, max_length=32768)
    private_key_pem = serializers.CharField(
        write_only=True, required=False, trim_whitespace=False, max_length=32768, style={"input_type": "password"}
    )
    credential_expires_at = serializers.DateTimeField(required=False, allow_null=True)


class JobRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.IntegerField()


class JobAcceptedSerializer(serializers.Serializer):
    job = JobRefSerializer()


class InventoryEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = InventoryInterval
        fields = [
            "unique_name",
            "version",
            "is_managed",
            "installed_on",
            "friendly_name",
            "publisher",
            "valid_from",
            "valid_to",
        ]


class SolutionHistorySerializer(serializers.ModelSerializer):
    class Meta:
        model = SolutionHistoryEntry
        fields = [
            "history_id",
            "solution_name",
            "solution_version",
            "operation",
            "suboperation",
            "status",
            "result",
            "start_time",
            "end_time",
            "is_managed",
            "error_code",
            "exception_message",
            "publisher_name",
        ]


class DriftFindingSerializer(serializers.ModelSerializer):
    class Meta:
        model = DriftFinding
        fields = ["id", "kind", "unique_name", "details", "first_seen_at", "last_seen_at", "resolved_at"]
