"""Teams and who belongs to them, by hand or through single sign-on's group mapping. Every change writes
one audit event in the same transaction."""

from __future__ import annotations

import logging

from django.db import transaction

from alm_portal.accounts.models import Team, TeamMembership, User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.errors import ValidationFailed

logger = logging.getLogger(__name__)


def team_create(*, name: str, slug: str, context: AuditContext, description: str = "") -> Team:
    if Team.objects.filter(slug=slug).exists() or Team.objects.filter(name=name).exists():
        raise ValidationFailed("A team with this name already exists.", details={"name": ["Already taken."]})
    with transaction.atomic():
        team = Team.objects.create(name=name, slug=slug, description=description)
        record(context=context, action="team.created", target=team, after={"name": name, "slug": slug})
    return team


def team_add_member(*, team: Team, user: User, context: AuditContext) -> TeamMembership:
    with transaction.atomic():
        membership, created = TeamMembership.objects.get_or_create(team=team, user=user)
        if created:
            record(context=context, action="team.member_added", target=team, related=user)
    return membership


def team_remove_member(*, team: Team, user: User, context: AuditContext) -> None:
    with transaction.atomic():
        deleted, _ = TeamMembership.objects.filter(team=team, user=user).delete()
        if deleted:
            record(context=context, action="team.member_removed", target=team, related=user)


def user_sync_teams(*, user: User, team_slugs: set[str], managed_slugs: set[str], context: AuditContext) -> None:
    """Make the user a member of exactly `team_slugs` among the `managed_slugs` teams (single sign-on's
    group mapping); memberships of other teams are left alone. Each change is audited by the team
    service; a mapped team that does not exist yet is skipped with a warning."""
    teams = {team.slug: team for team in Team.objects.filter(slug__in=managed_slugs)}
    for missing in sorted((team_slugs | managed_slugs) - set(teams)):
        logger.warning("single sign-on maps to team %r, which does not exist", missing)
    current = set(user.memberships.filter(team__slug__in=managed_slugs).values_list("team__slug", flat=True))
    for slug in sorted(team_slugs - current):
        if slug in teams:
            team_add_member(team=teams[slug], user=user, context=context)
    for slug in sorted(current - team_slugs):
        team_remove_member(team=teams[slug], user=user, context=context)
