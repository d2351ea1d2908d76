"""The demo's people and teams (docs/demo.md), laid out idempotently through the services."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from alm_portal.accounts import services
from alm_portal.accounts.choices import Role
from alm_portal.accounts.models import Team, User
from alm_portal.audit.context import AuditContext


@dataclass(frozen=True)
class DemoPerson:
    username: str
    display_name: str
    role: str
    team: str | None


DEMO_TEAMS = {"contoso": "Contoso", "fabrikam": "Fabrikam"}
DEMO_PEOPLE = (
    DemoPerson("admin", "Ada Admin", Role.ADMIN, None),
    DemoPerson("maker", "Max Maker", Role.MAKER, "contoso"),
    DemoPerson("approver", "April Approver", Role.APPROVER, "contoso"),
    DemoPerson("approver2", "Bo Approver", Role.APPROVER, "contoso"),
    DemoPerson("auditor", "Audrey Auditor", Role.AUDITOR, None),
    DemoPerson("maker2", "Mia Maker", Role.MAKER, "fabrikam"),
)


def demo_password() -> str:
    """DEMO_PASSWORD if set; else one generated once into var/ so every `make run` prints the same one."""
    if settings.DEMO_PASSWORD:
        return settings.DEMO_PASSWORD
    path = Path(settings.VAR_DIR) / "demo-password"
    if path.exists():
        return path.read_text().strip()
    password = "demo-" + secrets.token_urlsafe(12)
    path.write_text(password)
    path.chmod(0o600)
    return password


def demo_people_lines(users: list[User], password: str) -> list[str]:
    """How to sign in, as `seed_demo` and `demo_ready` print it: one line per person, the password once."""
    lines = [f"Demo users (password for all: {password}):"]
    for user in users:
        teams = ", ".join(user.teams.values_list("name", flat=True)) or "no team"
        lines.append(f"  {user.username:<10} {user.role:<9} {teams:<9} {user.display_name}")
    return lines


def directory_names(identities: list[dict[str, Any]]) -> dict[str, str]:
    """Username → display name of the sign-in directory's people (the emulator's demo identities, whose
    usernames are `<username>@<tenant domain>`), so the portal calls everyone what Entra ID does."""
    names = {}
    for identity in identities:
        username = str(identity.get("username") or "").split("@", 1)[0]
        if username and identity.get("display_name"):
            names[username] = str(identity["display_name"])
    return names


def seed_demo_people(*, directory: dict[str, str] | None = None) -> tuple[list[User], str]:
    """Create or bring up to date the demo teams and users; returns them and their password. `directory`
    (username → display name, from the sign-in directory) overrides the names above."""
    context = AuditContext.system()
    directory = directory or {}
    password = demo_password()
    teams = {}
    for slug, name in DEMO_TEAMS.items():
        team = Team.objects.filter(slug=slug).first() or services.team_create(name=name, slug=slug, context=context)
        teams[slug] = team
    users = []
    for person in DEMO_PEOPLE:
        user = User.objects.filter(username=person.username).first()
        display_name = directory.get(person.username, person.display_name)
        if user is None:
            user = services.user_create(
                username=person.username,
                role=person.role,
                display_name=display_name,
                password=password,
                context=context,
            )
        else:
            services.user_set_display_name(user=user, display_name=display_name, context=context)
            services.user_set_role(user=user, role=person.role, context=context)
            if not user.check_password(password):
                services.user_set_password(user=user, password=password, context=context)
            if not user.is_active:
                services.user_enable(user=user, context=context)
        if person.team:
            services.team_add_member(team=teams[person.team], user=user, context=context)
        users.append(user)
    return users, password
