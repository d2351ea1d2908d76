"""`create_api_token USER [--name N] [--scope S]... [--days D]`: prints the token alone on its last line."""

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from alm_portal.accounts import services
from alm_portal.audit.context import AuditContext
from alm_portal.errors import DomainError


class Command(BaseCommand):
    help = "Create an API token for USER and print it (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default=None, help="Token name (default cli-<UTC time>).")
        parser.add_argument(
            "--scope", action="append", dest="scopes", default=None, help="read, request, approve, admin"
        )
        parser.add_argument("--days", type=int, default=30, help="Expiry in days, 1 to 90 (default 30).")

    def _fail(self, message: str) -> None:
        self.stderr.write(f"error: {message}")
        sys.exit(2)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = services.user_get(username=options["username"])
            token, text = services.api_token_create(
                user=user,
                name=options["name"],
                scopes=options["scopes"] or ["read"],
                days=options["days"],
                context=AuditContext.system(),
            )
        except DomainError as refusal:
            detail = "; ".join(
                f"{field}: {' '.join(map(str, messages))}"
                for field, messages in (refusal.details.items() if isinstance(refusal.details, dict) else [])
                if isinstance(messages, list)
            )
            self._fail(f"{refusal.message}{' (' + detail + ')' if detail else ''}")
            return
        scopes = ", ".join(token.scopes)
        expires = f"{token.expires_at:%Y-%m-%d %H:%M}Z"
        self.stdout.write(f"Token {token.name!r} for {user.username}, scopes {scopes}, expires {expires}")
        self.stdout.write(text)
