"""Re-encrypt every stored credential secret with the newest ALM_ENCRYPTION_KEY.

Rotation: put the new key first in ALM_ENCRYPTION_KEY (comma separated), deploy, run this command,
then remove the old key. Secrets are never printed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from alm_portal.audit.context import AuditContext
from alm_portal.crypto import SecretUnreadable
from environments import services


class Command(BaseCommand):
    help = "Re-encrypt every stored credential secret with the newest ALM_ENCRYPTION_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            changed = services.credentials_reencrypt(context=AuditContext.system())
        except SecretUnreadable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"reencrypted={changed}")
