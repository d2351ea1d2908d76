"""Test-database support, called from pytest's django_db_setup (tests/conftest.py, tests/audit/conftest.py)."""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

TRUNCATE_SETTING = "alm.allow_audit_truncate"

# Only ever installed here, in the test database: production's function (audit migration 0005) refuses
# TRUNCATE whatever a session sets.
_TRUNCATE_WITH_TEST_ESCAPE = f"""
CREATE OR REPLACE FUNCTION audit_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('{TRUNCATE_SETTING}', true), '') <> 'on' THEN
        RAISE EXCEPTION USING
            MESSAGE = 'audit events are append-only: TRUNCATE on ' || TG_TABLE_NAME || ' is not allowed',
            ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$;
"""


def enable_audit_truncate_for_test_database(connection: BaseDatabaseWrapper) -> None:
    """Let the TEST database truncate the audit table, which Django's flush between transactional
    tests does with TRUNCATE. Production has no such escape: its trigger refuses TRUNCATE always.

    Replaces the trigger function with one that lets TRUNCATE through when the setting is 'on', sets the
    database default (ALTER DATABASE … SET) and closes the connection, because a database default only applies
    to sessions that start afterwards. No-op on SQLite (no triggers there). Refuses any database that is not
    the test database.
    """
    if connection.vendor != "postgresql":
        return
    name = connection.settings_dict["NAME"]
    configured_test_name = (connection.settings_dict.get("TEST") or {}).get("NAME")
    if not (name == configured_test_name or str(name).startswith("test_")):
        raise RuntimeError(f"refusing to allow audit TRUNCATE on {name!r}: not a test database")
    with connection.cursor() as cursor:
        cursor.execute(_TRUNCATE_WITH_TEST_ESCAPE)
        cursor.execute(f"ALTER DATABASE {connection.ops.quote_name(name)} SET {TRUNCATE_SETTING} = 'on'")
    connection.close()
