"""Two PostgreSQL roles: the owner, which `manage.py migrate` uses, and the application role of web, worker and
beat, which may only read and write rows (docs/security.md "Database roles").

- DATABASE_MIGRATE_URL connects as the owner of the schema. `migrate` (alm_portal/audit/management/commands/
  migrate.py) uses it when it is set, then grants the application role (the user of DATABASE_URL):
  SELECT, INSERT, UPDATE, DELETE on every table and USAGE, SELECT, UPDATE on every sequence; on the audit
  table only SELECT and INSERT; and the same by default on tables and sequences the owner creates later.
- The application role gets no TRUNCATE, REFERENCES or TRIGGER, owns nothing (so cannot ALTER or DISABLE
  TRIGGER), and must not be a superuser (which could also SET session_replication_role and skip triggers):
  `migrate` refuses to grant to one.

The statements are idempotent: every `migrate` applies them again, so an upgrade only needs the two URLs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

AUDIT_TABLE = "audit_auditevent"


class RoleSetupError(RuntimeError):
    """The roles are set up in a way that would give the application more than DML."""


def application_role(alias: str = "default") -> str | None:
    """The role the application connects as, when migrations run as another one (else None)."""
    migrate = getattr(settings, "ALM_DATABASE_MIGRATE", None)
    if not migrate:
        return None
    return str(connections[alias].settings_dict["USER"])


@contextmanager
def connected_as_owner(alias: str = "default") -> Iterator[str | None]:
    """Within the block, `alias` connects with DATABASE_MIGRATE_URL's credentials; yields the application
    role to grant afterwards, or None when DATABASE_MIGRATE_URL is unset (one role does everything)."""
    migrate: dict[str, Any] | None = getattr(settings, "ALM_DATABASE_MIGRATE", None)
    connection = connections[alias]
    if not migrate:
        yield None
        return
    app_role = str(connection.settings_dict["USER"])
    saved = {key: connection.settings_dict.get(key) for key in ("USER", "PASSWORD")}
    connection.close()
    connection.settings_dict.update(USER=migrate["USER"], PASSWORD=migrate["PASSWORD"])
    try:
        yield app_role
    finally:
        connection.close()
        connection.settings_dict.update(saved)


def _scalar(connection: BaseDatabaseWrapper, sql: str, params: list[Any] | None = None) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        row = cursor.fetchone()
    return row[0] if row else None


def grant_statements(*, owner: str, app_role: str, quote: Any) -> list[str]:
    """What the owner runs to give `app_role` DML and nothing more (also printed by docs/security.md)."""
    app, own = quote(app_role), quote(owner)
    return [
        f"GRANT USAGE ON SCHEMA public TO {app}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {app}",
        # The audit log is append-only for the application: rows are added and read, never changed.
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {AUDIT_TABLE} FROM {app}",
        f"REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM {app}",
        # Tables and sequences later migrations create get the same DML.
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {own} IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {own} IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {app}",
    ]


def grant_application_role(*, app_role: str, alias: str = "default") -> list[str]:
    """As the owner (inside connected_as_owner), give `app_role` DML on every table; returns the statements.

    Refuses when the application role is a superuser, owns a table, or is the owner itself: any of these
    would let the application rewrite the audit log behind its triggers.
    """
    connection = connections[alias]
    if connection.vendor != "postgresql":
        raise RoleSetupError("DATABASE_MIGRATE_URL is for PostgreSQL only")
    owner = str(_scalar(connection, "SELECT current_user"))
    if owner == app_role:
        raise RoleSetupError(
            f"DATABASE_MIGRATE_URL and DATABASE_URL both connect as {owner!r}; the application needs a role of its own"
        )
    exists = _scalar(connection, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", [app_role])
    if exists is None:
        raise RoleSetupError(f"the application role {app_role!r} (the user of DATABASE_URL) does not exist")
    if exists:
        raise RoleSetupError(
            f"the application role {app_role!r} is a superuser: it could disable the audit log's triggers; "
            "give web, worker and beat a role without SUPERUSER (docs/security.md)"
        )
    owned = _scalar(
        connection,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = %s",
        [app_role],
    )
    if owned:
        raise RoleSetupError(
            f"the application role {app_role!r} owns {owned} table(s); an owner can ALTER them and disable their "
            "triggers: REASSIGN OWNED BY it TO the migration role first (docs/upgrading.md)"
        )
    statements = grant_statements(owner=owner, app_role=app_role, quote=connection.ops.quote_name)
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    return statements
