"""API shapes of the audit log (issue 6 "audit-events/"): events as stored, with seq and hashes."""

from __future__ import annotations

from rest_framework import serializers

from alm_portal.audit.canonical import CANONICAL_FIELDS
from alm_portal.audit.choices import ActorKind, Outcome
from alm_portal.audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    actor_id = serializers.IntegerField(allow_null=True)

    class Meta:
        model = AuditEvent
        # Every hashed field plus the hash: an API reader can re-verify the chain (README, audit hash).
        fields = [*CANONICAL_FIELDS, "hash"]
        read_only_fields = fields


class AuditQuerySerializer(serializers.Serializer):
    """The filters of the list and the export (query parameters)."""

    action = serializers.CharField(
        required=False,
        max_length=1000,
        help_text="A full code, or a prefix of whole segments ('promotion'); several separated by commas match "
        "any of them ('promotion.approval_recorded,promotion.approved').",
    )
    actor = serializers.IntegerField(required=False, help_text="The acting user's id.")
    actor_kind = serializers.ChoiceField(choices=ActorKind.choices, required=False)
    object_type = serializers.CharField(required=False, max_length=100, help_text="e.g. deployments.promotion")
    object_id = serializers.CharField(required=False, max_length=64)
    related_object = serializers.RegexField(
        r"^[a-z0-9_]+\.[a-z0-9_]+:[^:]{1,64}$",
        required=False,
        help_text="type:id of the related object, e.g. deployments.stage:3",
    )
    since = serializers.DateTimeField(required=False, help_text="occurred_at ≥ since (RFC 3339).")
    until = serializers.DateTimeField(required=False, help_text="occurred_at < until (RFC 3339).")
    outcome = serializers.ChoiceField(choices=Outcome.choices, required=False)
    request_id = serializers.CharField(required=False, max_length=100)


class AuditExportQuerySerializer(AuditQuerySerializer):
    file_format = serializers.ChoiceField(choices=["csv", "jsonl"], default="jsonl")


class VerificationSerializer(serializers.Serializer):
    valid = serializers.BooleanField(allow_null=True, help_text="null until the chain was verified once.")
    checked = serializers.IntegerField()
    head_seq = serializers.IntegerField()
    head_hash = serializers.CharField(allow_blank=True)
    first_broken_seq = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_null=True)
    verified_at = serializers.DateTimeField(allow_null=True)
    event_seq = serializers.IntegerField(allow_null=True, help_text="The audit.verified event this comes from.")


class VerificationJobSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The job's id: GET /api/v1/jobs/{id}/ shows its progress and result.")
    kind = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.IntegerField(min_value=0, max_value=100)


class VerificationAcceptedSerializer(serializers.Serializer):
    job = VerificationJobSerializer()
