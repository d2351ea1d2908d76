"""Reads for deployments: what a user may see."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from alm_portal.accounts import policy
from alm_portal.accounts.models import User
from deployments.models import Job


def jobs_visible_to(*, user: User) -> QuerySet[Job]:
    """Admins and auditors see every job; others the jobs of their teams' environments and their own."""
    jobs = Job.objects.select_related("environment", "created_by")
    team_ids = policy.team_ids_visible_to(user)
    if team_ids is None:
        return jobs
    return jobs.filter(Q(environment__team_id__in=team_ids) | Q(created_by=user))
