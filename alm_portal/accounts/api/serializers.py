from rest_framework import serializers

from alm_portal.accounts import policy
from alm_portal.accounts.choices import Scope
from alm_portal.accounts.models import ApiToken, Team, User
from alm_portal.api.inputs import StrictInputSerializer


class TeamRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name"]


class MeSerializer(serializers.ModelSerializer):
    teams = TeamRefSerializer(many=True, read_only=True)
    scopes = serializers.SerializerMethodField()
    display_name = serializers.CharField(source="shown_name")

    class Meta:
        model = User
        fields = ["id", "username", "display_name", "role", "teams", "scopes"]

    def get_scopes(self, user: User) -> list[str]:
        request = self.context["request"]
        token = request.auth if isinstance(request.auth, ApiToken) else None
        return sorted(policy.effective_scopes(user=user, token=token))


class ApiTokenSerializer(serializers.ModelSerializer):
    parent = serializers.PrimaryKeyRelatedField(
        read_only=True,
        allow_null=True,
        help_text="The token that created this one (it expires and is revoked with it), or null.",
    )

    class Meta:
        model = ApiToken
        fields = ["id", "name", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at", "parent"]


class ApiTokenCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), required=False)
    days = serializers.IntegerField(required=False, min_value=1, max_value=90)


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(help_text="Shown once; store it now.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
