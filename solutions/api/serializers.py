"""API representations of solutions, versions and export jobs (field names are the issue 6 contract)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alm_portal.api.inputs import StrictInputSerializer
from solutions import selectors
from solutions.choices import Bump
from solutions.models import Solution, SolutionVersion, SourceBinding, VersionCommit

# A reference that may be absent: declared nullable so clients and schema checks expect null.
NULLABLE_OBJECT = serializers.DictField(allow_null=True)


def _ref(obj: Any, name_field: str = "name") -> dict[str, Any] | None:
    return None if obj is None else {"id": obj.pk, name_field: getattr(obj, name_field)}


def _user_ref(user: Any) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.pk, "username": user.username, "display_name": user.shown_name}


class SolutionSerializer(serializers.ModelSerializer):
    publisher = serializers.SerializerMethodField()
    team = serializers.SerializerMethodField()
    pipeline = serializers.SerializerMethodField()
    home_environment = serializers.SerializerMethodField()
    latest_version = serializers.SerializerMethodField()
    deployed = serializers.SerializerMethodField()

    class Meta:
        model = Solution
        fields = [
            "id",
            "unique_name",
            "display_name",
            "publisher",
            "team",
            "pipeline",
            "home_environment",
            "latest_version",
            "deployed",
            "created_at",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_publisher(self, solution: Solution) -> dict[str, str]:
        return {"unique_name": solution.publisher_unique_name, "prefix": solution.publisher_prefix}

    @extend_schema_field(NULLABLE_OBJECT)
    def get_team(self, solution: Solution) -> dict[str, Any] | None:
        return _ref(solution.team)

    @extend_schema_field(NULLABLE_OBJECT)
    def get_pipeline(self, solution: Solution) -> dict[str, Any] | None:
        return _ref(solution.pipeline)

    @extend_schema_field(NULLABLE_OBJECT)
    def get_home_environment(self, solution: Solution) -> dict[str, Any] | None:
        return _ref(solution.home_environment)

    @extend_schema_field(NULLABLE_OBJECT)
    def get_latest_version(self, solution: Solution) -> dict[str, Any] | None:
        # Annotated by selectors.solutions_visible_to (no query per row).
        version_id = getattr(solution, "latest_version_id", None)
        if version_id is None:
            return None
        return {"id": version_id, "version": solution.latest_version_text}  # type: ignore[attr-defined]

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_deployed(self, solution: Solution) -> list[dict[str, Any]]:
        return selectors.solution_deployed(solution=solution)


class SolutionRegisterSerializer(StrictInputSerializer):
    unique_name = serializers.CharField(max_length=100)
    display_name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    team = serializers.IntegerField()
    home_environment = serializers.IntegerField(required=False, allow_null=True)


class SolutionVersionSerializer(serializers.ModelSerializer):
    solution = serializers.SerializerMethodField()
    version = serializers.CharField(source="version_key")
    declared_version = serializers.CharField(source="version")
    flavours = serializers.ListField(child=serializers.CharField(), read_only=True)
    source = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = SolutionVersion
        fields = [
            "id",
            "solution",
            "version",
            "declared_version",
            "flavours",
            "managed_sha256",
            "unmanaged_sha256",
            "managed_size",
            "unmanaged_size",
            "manifest_summary",
            "source",
            "release_notes",
            "created_at",
            "created_by",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_solution(self, version: SolutionVersion) -> dict[str, Any]:
        return {"id": version.solution_id, "unique_name": version.solution.unique_name}

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_source(self, version: SolutionVersion) -> dict[str, Any]:
        restores = version.restores_version
        return {
            "kind": version.source_kind,
            "environment": _ref(version.source_environment),
            "job": version.source_job_id,
            "user": _user_ref(version.created_by),
            "restores_version": None if restores is None else {"id": restores.pk, "version": restores.version_key},
            "repository": provenance_of(version),
        }

    @extend_schema_field(NULLABLE_OBJECT)
    def get_created_by(self, version: SolutionVersion) -> dict[str, Any] | None:
        return _user_ref(version.created_by)


def provenance_of(version: SolutionVersion) -> dict[str, str] | None:
    """The commit a version was built from (source kind "built"), else None."""
    if not version.source_commit:
        return None
    return {
        "url": version.source_repository_url,
        "ref": version.source_ref,
        "commit": version.source_commit,
        "folder": version.source_folder,
    }


class VersionCommitSerializer(serializers.ModelSerializer):
    class Meta:
        model = VersionCommit
        fields = [
            "repository_url",
            "branch",
            "folder",
            "flavours",
            "commit",
            "tag",
            "parent",
            "diverged",
            "committed_at",
        ]


class SolutionVersionDetailSerializer(SolutionVersionSerializer):
    """One version with where it is in source control (the list leaves this out: one query per row)."""

    commits = VersionCommitSerializer(source="source_commits", many=True, read_only=True)

    class Meta(SolutionVersionSerializer.Meta):
        fields = [*SolutionVersionSerializer.Meta.fields, "commits"]


class SourceBindingSerializer(serializers.ModelSerializer):
    """A solution's (or a pipeline's) repository as anyone who may see it sees it: never the secret. With a
    `solution` in the context, `folder` is that solution's folder and `pipeline` says whether the binding is the
    pipeline's."""

    folder = serializers.SerializerMethodField()
    credential_set = serializers.SerializerMethodField()
    build_environment = serializers.SerializerMethodField()
    pipeline = serializers.SerializerMethodField()

    class Meta:
        model = SourceBinding
        fields = [
            "url",
            "branch",
            "root_folder",
            "folder",
            "username",
            "credential_kind",
            "credential_set",
            "build_environment",
            "pipeline",
            "updated_at",
        ]

    def get_folder(self, binding: SourceBinding) -> str:
        solution = self.context.get("solution")
        return binding.folder_for(solution) if solution is not None else binding.folder

    @extend_schema_field(NULLABLE_OBJECT)
    def get_pipeline(self, binding: SourceBinding) -> dict[str, Any] | None:
        return _ref(binding.pipeline)

    def get_credential_set(self, binding: SourceBinding) -> bool:
        return bool(binding.secret_ciphertext)

    @extend_schema_field(NULLABLE_OBJECT)
    def get_build_environment(self, binding: SourceBinding) -> dict[str, Any] | None:
        return _ref(binding.build_environment)


class SourceBindInputSerializer(StrictInputSerializer):
    url = serializers.CharField(
        max_length=500, help_text="https://…, ssh://… or git@host:path (a local path only where allowed)"
    )
    branch = serializers.CharField(max_length=200, required=False, default="main")
    root_folder = serializers.CharField(max_length=200, required=False, default="solutions", allow_blank=True)
    username = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
    token = serializers.CharField(
        max_length=4000, required=False, write_only=True, help_text="https: a token; omitted keeps the one stored"
    )
    ssh_private_key = serializers.CharField(
        max_length=20000, required=False, write_only=True, help_text="ssh: an OpenSSH private key; omitted keeps it"
    )
    build_environment = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="An environment of the solution's team where builds are imported and exported managed; "
        "omitted or null: builds register the unmanaged package only",
    )


class SourceBuildInputSerializer(StrictInputSerializer):
    ref = serializers.CharField(max_length=255, help_text="A branch, a tag or a commit of the bound repository.")


class VersionUploadSerializer(StrictInputSerializer):
    file = serializers.FileField(allow_empty_file=False)
    release_notes = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    solution = serializers.IntegerField(required=False, help_text="Must be the solution the zip declares.")
    team = serializers.IntegerField(required=False, help_text="Owner of a solution the registry does not know yet.")
    home_environment = serializers.IntegerField(required=False, help_text="For a solution not registered yet.")


class VersionUploadResultSerializer(SolutionVersionSerializer):
    upload = serializers.DictField(read_only=True, help_text="{flavour, outcome: created | added | identical}")

    class Meta(SolutionVersionSerializer.Meta):
        fields = [*SolutionVersionSerializer.Meta.fields, "upload"]


class ExportRequestSerializer(StrictInputSerializer):
    bump = serializers.ChoiceField(choices=Bump.choices, default=Bump.REVISION)


class ExportJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.IntegerField()


class ExportAcceptedSerializer(serializers.Serializer):
    job = ExportJobSerializer()
