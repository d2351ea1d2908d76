"""`link_entra_identity USER --tenant-id T --object-id O`: an admin links a local account to an Entra ID identity."""

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from alm_portal.accounts import services
from alm_portal.audit.context import AuditContext
from alm_portal.errors import DomainError


class Command(BaseCommand):
    help = (
        "Link USER to the Entra ID identity with this tenant id and object id: its sign-ins then sign in as USER. "
        "Sign-ins never link an existing account by name; a refused one names both ids."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--tenant-id", required=True, help="The directory (tenant) id, a GUID.")
        parser.add_argument("--object-id", required=True, help="The user's object id in that tenant, a GUID.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = services.user_get(username=options["username"])
            services.user_link_entra_identity(
                user=user,
                tenant_id=options["tenant_id"],
                object_id=options["object_id"],
                context=AuditContext.system(),
                how="linked by an admin (link_entra_identity)",
            )
        except DomainError as refusal:
            details = refusal.details if isinstance(refusal.details, dict) else {}
            detail = "; ".join(f"{field}: {' '.join(map(str, problems))}" for field, problems in details.items())
            self.stderr.write(f"error: {refusal.message}{' (' + detail + ')' if detail else ''}")
            sys.exit(2)
        self.stdout.write(
            f"{user.username} is linked to object {user.entra_object_id} of tenant {user.entra_tenant_id}"
        )
