"""Read-only admin views: services are the only writers, so the admin site never changes these rows."""

from __future__ import annotations

from django.contrib import admin

from alm_portal.readonly_admin import ReadOnlyAdmin
from solutions.models import Solution, SolutionVersion, VersionDiff


@admin.register(Solution)
class SolutionAdmin(ReadOnlyAdmin):
    list_display = ["unique_name", "display_name", "team", "pipeline", "home_environment"]
    list_select_related = ["team", "pipeline", "home_environment"]
    search_fields = ["unique_name", "display_name"]


@admin.register(SolutionVersion)
class SolutionVersionAdmin(ReadOnlyAdmin):
    list_display = ["solution", "version", "source_kind", "managed_sha256", "unmanaged_sha256", "created_at"]
    list_select_related = ["solution"]
    list_filter = ["source_kind"]
    search_fields = ["solution__unique_name", "version_key"]
    exclude = ["managed_manifest", "unmanaged_manifest"]


@admin.register(VersionDiff)
class VersionDiffAdmin(ReadOnlyAdmin):
    list_display = ["old_sha256", "new_sha256", "created_at"]
    exclude = ["result"]
