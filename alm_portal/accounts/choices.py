"""Roles and API token scopes (docs/roles.md)."""

from django.db import models


class Role(models.TextChoices):
    MAKER = "maker", "Maker"
    APPROVER = "approver", "Approver"
    ADMIN = "admin", "Admin"
    AUDITOR = "auditor", "Auditor"


class Scope(models.TextChoices):
    READ = "read", "Read"
    REQUEST = "request", "Request promotions, upload, export"
    APPROVE = "approve", "Approve or reject"
    ADMIN = "admin", "Administer"


# What each role may ever do; a token's scopes are a subset of its user's role's scopes.
# Approvers are makers who may also decide; auditors read everything and change nothing.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.MAKER: frozenset({Scope.READ, Scope.REQUEST}),
    Role.APPROVER: frozenset({Scope.READ, Scope.REQUEST, Scope.APPROVE}),
    Role.ADMIN: frozenset({Scope.READ, Scope.REQUEST, Scope.APPROVE, Scope.ADMIN}),
    Role.AUDITOR: frozenset({Scope.READ}),
}
