"""Who may do what, for roles, teams and token scopes (docs/roles.md). The one place these rules live.

Workflow-specific rules (self-approval, N approvers, windows) live in deployments/policy.py and
build on these.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from alm_portal.accounts.choices import ROLE_SCOPES, Role, Scope

if TYPE_CHECKING:
    from alm_portal.accounts.models import ApiToken, User


def role_scopes(role: str) -> frozenset[str]:
    return ROLE_SCOPES.get(role, frozenset())


def scopes_beyond_role(*, role: str, scopes: Iterable[str]) -> list[str]:
    """The requested scopes the role does not have (a token never exceeds its user's role)."""
    allowed = role_scopes(role)
    return sorted(set(scopes) - allowed)


def effective_scopes(*, user: User, token: ApiToken | None) -> frozenset[str]:
    """A session acts with the role's scopes; a token with its own scopes, capped by the role now."""
    if not user.is_active:
        return frozenset()
    allowed = role_scopes(user.role)
    if token is None:
        return allowed
    return frozenset(token.scopes) & allowed


def is_admin(user: User) -> bool:
    return user.is_active and user.role == Role.ADMIN


def can_administer(*, user: User, token: ApiToken | None) -> bool:
    return Scope.ADMIN in effective_scopes(user=user, token=token)


def sees_all_teams(user: User) -> bool:
    """Admins administer everything and auditors read everything; others see their teams only."""
    return user.is_active and user.role in (Role.ADMIN, Role.AUDITOR)


def team_ids_visible_to(user: User) -> set[int] | None:
    """Team ids whose objects the user may read; None means every team."""
    if sees_all_teams(user):
        return None
    return set(user.memberships.values_list("team_id", flat=True))


def changes_anything(user: User) -> bool:
    """Auditors change nothing, whatever else a view might allow."""
    return user.is_active and user.role != Role.AUDITOR
