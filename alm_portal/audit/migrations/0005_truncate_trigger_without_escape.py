"""The TRUNCATE trigger of the audit table no longer reads a session setting.

Migration 0002's trigger let TRUNCATE through when `alm.allow_audit_truncate` was 'on', and any session may
set a custom setting: `SET LOCAL alm.allow_audit_truncate = 'on'; TRUNCATE audit_auditevent;` emptied the log
for every role with TRUNCATE. Production now refuses TRUNCATE unconditionally; only the test database gets the
escape back (alm_portal/audit/testing.py), because Django's flush between tests truncates every table.
SQLite has no triggers.
"""

from django.db import migrations

STRICT = """
CREATE OR REPLACE FUNCTION audit_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'audit events are append-only: TRUNCATE on ' || TG_TABLE_NAME || ' is not allowed',
        ERRCODE = 'insufficient_privilege';
END;
$$;
"""

# 0002's function, for going back.
WITH_SETTING = """
CREATE OR REPLACE FUNCTION audit_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('alm.allow_audit_truncate', true), '') <> 'on' THEN
        RAISE EXCEPTION USING
            MESSAGE = 'audit events are append-only: TRUNCATE on ' || TG_TABLE_NAME || ' is not allowed',
            ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$;
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_deniedrequesttally")]

    operations = [migrations.RunPython(_on_postgresql(STRICT), _on_postgresql(WITH_SETTING), elidable=False)]
