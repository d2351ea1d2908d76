"""Test-database support, called from pytest's django_db_setup (tests/conftest.py, tests/audit/conftest.py)."""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

TRUNCATE_SETTING = "alm.allow_audit_truncate"


def enable_audit_truncate_for_test_database(connection: BaseDatabaseWrapper) -> None:
    """Let the TEST database truncate the audit table, which Django's flush between transactional
    tests does with TRUNCATE. Production never sets this, so there the trigger refuses TRUNCATE.

    Sets the database default (ALTER DATABASE … SET) and closes the connection, because a database
    default only applies to sessions that start afterwards. No-op on SQLite (no triggers there).
    Refuses any database that is not the test database.
    """
    if connection.vendor != "postgresql":
        return
    name = connection.settings_dict["NAME"]
    configured_test_name = (connection.settings_dict.get("TEST") or {}).get("NAME")
    if not (name == configured_test_name or str(name).startswith("test_")):
        raise RuntimeError(f"refusing to allow audit TRUNCATE on {name!r}: not a test database")
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE {connection.ops.quote_name(name)} SET {TRUNCATE_SETTING} = 'on'")
    connection.close()
