from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from alm_portal.accounts.demo import seed_demo_people


class Command(BaseCommand):
    help = "Lay out the demo (idempotent): teams, users and, with the emulator, environments and history."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("seed_demo is refused in production mode (ALM_MODE=production).")
        users, password = seed_demo_people()
        self.stdout.write(f"Demo users (password for all: {password}):")
        for user in users:
            teams = ", ".join(user.teams.values_list("name", flat=True)) or "no team"
            self.stdout.write(f"  {user.username:<10} {user.role:<9} {teams}")
