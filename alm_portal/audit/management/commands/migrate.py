"""`manage.py migrate`, as the owner role when DATABASE_MIGRATE_URL is set, then granting the application role.

Django's own command does the migrating; this one only connects it with the migration role's credentials and,
afterwards, gives the role of DATABASE_URL DML and nothing more (alm_portal/database_roles.py). It lives in the
audit app because the audit log's guarantees rest on it: the application role cannot rewrite the log.
Without DATABASE_MIGRATE_URL (SQLite, the test suite, a single-role installation) it is Django's command.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrateCommand

from alm_portal import database_roles


class Command(DjangoMigrateCommand):
    help = (
        "Migrate the database (as DATABASE_MIGRATE_URL's role when it is set), then grant the application role "
        "of DATABASE_URL DML on every table, and only SELECT and INSERT on the audit log."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"]
        with database_roles.connected_as_owner(alias) as app_role:
            super().handle(*args, **options)
            if app_role is None or options["plan"] or options["check_unapplied"]:
                return
            try:
                statements = database_roles.grant_application_role(app_role=app_role, alias=alias)
            except database_roles.RoleSetupError as problem:
                raise CommandError(str(problem)) from None
            if options["verbosity"] >= 1:
                self.stdout.write(f"Granted {app_role} DML ({len(statements)} statements; docs/security.md).")
