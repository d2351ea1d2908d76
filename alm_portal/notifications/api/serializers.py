"""API shapes of webhooks, their delivery log and the caller's email opt-in (issue 6 "webhooks/").

The secret is write-only: input serializers accept it, no output serializer has it. Input serializers
only check types; the services check meaning (outbound policy, event codes) and raise
ValidationFailed with details per field.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alm_portal.accounts.api.serializers import TeamRefSerializer
from alm_portal.accounts.models import Team
from alm_portal.api.inputs import StrictInputSerializer
from alm_portal.notifications.choices import KNOWN_EVENTS
from alm_portal.notifications.models import EmailSubscription, WebhookDelivery, WebhookEndpoint

EVENTS_HELP = (
    "Audit action codes (e.g. 'promotion.approved') or prefixes ending in a dot (e.g. 'promotion.'). "
    f"Common ones: {', '.join(KNOWN_EVENTS)}."
)


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    display_name = serializers.CharField(source="shown_name")


class WebhookEndpointSerializer(serializers.ModelSerializer):
    """An endpoint as GET returns it (never its secret)."""

    team = TeamRefSerializer(read_only=True, allow_null=True)
    created_by = serializers.SerializerMethodField()
    events = serializers.ListField(child=serializers.CharField(), help_text=EVENTS_HELP)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "name",
            "url",
            "team",
            "events",
            "is_active",
            "disabled_at",
            "disabled_reason",
            "failing_since",
            "created_at",
            "created_by",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(UserRefSerializer(allow_null=True))
    def get_created_by(self, endpoint: WebhookEndpoint) -> dict[str, Any] | None:
        user = endpoint.created_by
        return UserRefSerializer(user).data if user is not None else None


class WebhookEndpointWriteSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    url = serializers.CharField(max_length=2000, help_text="https only, public DNS name, port 443.")
    team = serializers.PrimaryKeyRelatedField(
        queryset=Team.objects.all(), allow_null=True, required=False, help_text="Null: every team's events."
    )
    events = serializers.ListField(child=serializers.CharField(max_length=100), max_length=50, help_text=EVENTS_HELP)
    secret = serializers.CharField(
        write_only=True,
        required=False,
        min_length=16,
        max_length=256,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="HMAC-SHA256 key for X-ALM-Signature. Write-only; required on create, omit to keep it.",
    )
    is_active = serializers.BooleanField(required=False)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "audit_seq",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
            "payload",
        ]
        read_only_fields = fields


class WebhookTestAcceptedSerializer(serializers.Serializer):
    delivery = WebhookDeliverySerializer()


class EmailSubscriptionSerializer(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.CharField(), help_text=EVENTS_HELP)
    email = serializers.CharField(source="user.email", read_only=True, allow_null=True)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = EmailSubscription
        fields = ["events", "is_active", "email", "updated_at"]
        read_only_fields = fields


class EmailSubscriptionWriteSerializer(StrictInputSerializer):
    events = serializers.ListField(child=serializers.CharField(max_length=100), max_length=50, help_text=EVENTS_HELP)
    is_active = serializers.BooleanField(required=False, default=True)
