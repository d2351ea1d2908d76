"""Read-only admin: changes to people go through the services (and the audit log), not admin forms.

Two models other apps registered are taken off the admin site here (this app's admin module loads after
theirs): Django's groups, which this product does not use (roles are its own), and django-celery-beat's
periodic tasks and schedules. Beat's schedule is fixed in settings (CELERY_BEAT_SCHEDULE); through its
admin a superuser could add any task with any arguments, unaudited.
"""

from django.contrib import admin
from django.contrib.auth.models import Group
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from alm_portal.accounts.models import ApiToken, Team, TeamMembership, User
from alm_portal.readonly_admin import ReadOnlyAdmin

for _model in (Group, PeriodicTask, IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = ["username", "display_name", "role", "is_active", "last_login"]
    list_filter = ["role", "is_active"]
    search_fields = ["username", "display_name", "email"]
    exclude = ["password"]


@admin.register(Team)
class TeamAdmin(ReadOnlyAdmin):
    list_display = ["name", "slug", "created_at"]


@admin.register(TeamMembership)
class TeamMembershipAdmin(ReadOnlyAdmin):
    list_display = ["team", "user", "created_at"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["name", "user", "scopes", "expires_at", "revoked_at", "last_used_at"]
    exclude = ["digest"]
