"""Who may do what, for roles, teams and token scopes (docs/roles.md). The one place these rules live.

Pages and the API ask the same functions: a page acts with its session's role (`token=None`), an API
call with the scopes of the token it presented, capped by the role. `scope_refusal` is the one check
of "does this caller hold this scope"; the DRF permission class asks it for each endpoint's scope and
the services ask it for options that need more than the endpoint does (an admin-only rollback
strategy, a freeze override), so a rule never lives in a view alone (docs/security.md).

Workflow-specific rules (self-approval, N approvers, windows) live in deployments/policy.py and
build on these.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from alm_portal.accounts.choices import ROLE_SCOPES, Role, Scope
from alm_portal.errors import DomainError, PermissionRefused, ScopeInsufficient

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


def scope_refusal(*, user: User, token: ApiToken | None, scope: str, doing: str = "do this") -> DomainError | None:
    """None when the caller holds `scope`; otherwise the error to raise: scope_insufficient when the
    role has the scope but the presented token does not, permission_denied when the role lacks it."""
    if scope in effective_scopes(user=user, token=token):
        return None
    if not user.is_active:
        return PermissionRefused("Your account is disabled.")
    if token is not None and scope in role_scopes(user.role):
        return ScopeInsufficient(
            f"This token lacks the '{scope}' scope needed to {doing}.", details={"needs_scope": scope}
        )
    return PermissionRefused(
        f"The {user.role} role may not {doing} (it needs the '{scope}' scope).", details={"needs_scope": scope}
    )


def require_scope(*, user: User, token: ApiToken | None, scope: str, doing: str = "do this") -> None:
    refusal = scope_refusal(user=user, token=token, scope=scope, doing=doing)
    if refusal is not None:
        raise refusal


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


def works_for_own_teams(user: User) -> bool:
    """Makers and approvers act on their own teams' objects (admins on every team's, auditors on none)."""
    return user.is_active and user.role in (Role.MAKER, Role.APPROVER)


def changes_anything(user: User) -> bool:
    """Auditors change nothing, whatever else a view might allow."""
    return user.is_active and user.role != Role.AUDITOR


def reads_audit_log(user: User) -> bool:
    """The audit log (timeline, export, verification, an object's history) is for auditors and admins."""
    return user.is_active and user.role in (Role.AUDITOR, Role.ADMIN)


def reads_metrics(*, user: User, token: ApiToken | None) -> bool:
    """Operational metrics (/metrics) are for admins and auditors, by session or by a token with `read`."""
    return reads_audit_log(user) and Scope.READ in effective_scopes(user=user, token=token)


# The roles whose people may be named to decide on promotions (deployments.policy.decision_refusal).
DECIDING_ROLES: tuple[str, ...] = (Role.APPROVER, Role.ADMIN)


def decides_promotions(user: User) -> bool:
    """Approvers and admins may be named to decide on promotions (the approvals inbox is theirs)."""
    return user.is_active and user.role in DECIDING_ROLES


# --- API tokens -------------------------------------------------------------------------------------


class ScopeNotAllowed(DomainError):
    """A token was asked for scopes its user's role, or the token creating it, does not have."""

    status = 400
    code = "scope_not_allowed"


def token_mint_refusal(*, user: User, parent: ApiToken | None, scopes: Iterable[str]) -> DomainError | None:
    """A token never exceeds its user's role, and a token-authenticated caller never mints a scope its
    own token lacks (the expiry rule, no later than the parent, is the service's: it needs the clock)."""
    beyond = scopes_beyond_role(role=user.role, scopes=scopes)
    if beyond:
        return ScopeNotAllowed(
            f"The {user.role} role does not allow the scope(s): {', '.join(beyond)}.",
            details={"scopes": beyond, "role": user.role},
        )
    if parent is not None:
        beyond = sorted(set(scopes) - effective_scopes(user=user, token=parent))
        if beyond:
            return ScopeNotAllowed(
                f"This token cannot create a token with the scope(s): {', '.join(beyond)}.",
                details={"scopes": beyond},
            )
    return None


def token_revoke_refusal(*, user: User, acting_token: ApiToken | None, target: ApiToken) -> DomainError | None:
    """Revoking a token needs every scope that token has: a read-only token cannot end a token that
    may request promotions. A session holds its role's scopes, which cover all of its user's tokens."""
    needed = sorted(set(target.scopes) - effective_scopes(user=user, token=acting_token))
    if not needed:
        return None
    if acting_token is not None and not set(needed) - role_scopes(user.role):
        return ScopeInsufficient(
            f"Revoking the token {target.name!r} needs the scope(s) it has: this token lacks {', '.join(needed)}.",
            details={"needs_scopes": needed},
        )
    return PermissionRefused(
        f"Revoking the token {target.name!r} needs the scope(s) it has: {', '.join(needed)}.",
        details={"needs_scopes": needed},
    )
