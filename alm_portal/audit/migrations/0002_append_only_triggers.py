"""PostgreSQL triggers that make the audit table append-only (docs/audit.md).

UPDATE and DELETE are always refused. TRUNCATE (which row triggers do not see) is refused by a
statement trigger unless the setting alm.allow_audit_truncate is 'on'; only the test database sets
it, because Django's flush between transactional tests truncates every table.

This stops the application and careless hands, not a table owner or superuser, who can disable
triggers: the hash chain and the signed checkpoints outside the database are what detect that.
SQLite (the embedded default) gets no triggers; Django's SQLite flush uses DELETE.
"""

from django.db import migrations

# No '%' anywhere below: the SQL goes through the driver's parameter formatting.

TABLE = "audit_auditevent"

CREATE = f"""
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'audit events are append-only: ' || TG_OP || ' on ' || TG_TABLE_NAME || ' is not allowed',
        ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE OR REPLACE FUNCTION audit_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- current_setting(..., true) is NULL when the setting was never defined.
    IF coalesce(current_setting('alm.allow_audit_truncate', true), '') <> 'on' THEN
        RAISE EXCEPTION USING
            MESSAGE = 'audit events are append-only: TRUNCATE on ' || TG_TABLE_NAME || ' is not allowed',
            ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_refuse_update_delete
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

CREATE TRIGGER audit_refuse_truncate
    BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();
"""

DROP = f"""
DROP TRIGGER IF EXISTS audit_refuse_truncate ON {TABLE};
DROP TRIGGER IF EXISTS audit_refuse_update_delete ON {TABLE};
DROP FUNCTION IF EXISTS audit_refuse_truncate();
DROP FUNCTION IF EXISTS audit_refuse_change();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        # Statement triggers: even an UPDATE or DELETE that matches no row is refused, so a code
        # path that tries one fails in every test, not only when rows happen to exist.
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP), elidable=False),
    ]
