"""The application's database role may read and write rows and nothing more; above all it cannot change or
remove audit events, nor switch off what stops that.

Finding 4 of the security review: as a role with only DML + TRUNCATE, `SET LOCAL alm.allow_audit_truncate='on';
TRUNCATE audit_auditevent;` emptied the log; as the application's database user (a superuser in compose),
`SET session_replication_role = replica` let an event be rewritten and re-hashed.

The database here is migrated by `manage.py migrate` with DATABASE_MIGRATE_URL (the owner role) and DATABASE_URL
(the application role), as docker-compose's `migrate` service does (tests/support/second_database.py).
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import errors

from tests.support.second_database import RoleDatabase

pytestmark = pytest.mark.postgres


def refused(database: RoleDatabase, role: str, *statements: str) -> BaseException:
    """Run `statements` in one transaction as `role`; return the error PostgreSQL raised (rolled back)."""
    conn = database.connect(role)
    try:
        with pytest.raises(psycopg2.Error) as raised, conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        return raised.value
    finally:
        conn.rollback()
        conn.close()


def scalar(database: RoleDatabase, role: str, sql: str) -> Any:
    conn = database.connect(role)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def with_events(role_database: RoleDatabase, tmp_path_factory: pytest.TempPathFactory) -> RoleDatabase:
    """Audit events written by the application itself, running as the application role."""
    artifacts = tmp_path_factory.mktemp("role-artifacts")
    for _ in range(2):
        verified = role_database.manage("verify_audit", env={"ALM_ARTIFACT_DIR": str(artifacts)})
        assert verified.returncode == 0, verified.stdout + verified.stderr
    assert scalar(role_database, role_database.app, "SELECT count(*) FROM audit_auditevent") == 2
    return role_database


def test_the_application_role_is_no_superuser_and_owns_nothing(with_events: RoleDatabase) -> None:
    app = with_events.app
    assert scalar(with_events, app, f"SELECT rolsuper FROM pg_roles WHERE rolname = '{app}'") is False
    assert scalar(with_events, app, f"SELECT count(*) FROM pg_tables WHERE tableowner = '{app}'") == 0
    owner = scalar(with_events, app, "SELECT tableowner FROM pg_tables WHERE tablename = 'audit_auditevent'")
    assert owner == with_events.owner


@pytest.mark.parametrize(
    "statements",
    [
        ("TRUNCATE audit_auditevent",),
        ("SET LOCAL alm.allow_audit_truncate = 'on'", "TRUNCATE audit_auditevent"),
        ("ALTER TABLE audit_auditevent ADD COLUMN note text",),
        ("ALTER TABLE audit_auditevent DISABLE TRIGGER USER",),
        ("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_refuse_update_delete",),
        ("DROP TRIGGER audit_refuse_update_delete ON audit_auditevent",),
        ("SET session_replication_role = replica",),
        ("UPDATE audit_auditevent SET message = 'rewritten' WHERE seq = 1",),
        ("DELETE FROM audit_auditevent WHERE seq = 2",),
        ("CREATE TABLE scratch (id int)",),
        ("CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE sql AS 'SELECT NULL'",),
    ],
    ids=[
        "truncate",
        "truncate-with-the-old-escape",
        "alter",
        "disable-triggers",
        "disable-one-trigger",
        "drop-trigger",
        "session-replication-role",
        "update-audit-row",
        "delete-audit-row",
        "create-table",
        "replace-trigger-function",
    ],
)
def test_the_application_role_is_refused(with_events: RoleDatabase, statements: tuple[str, ...]) -> None:
    error = refused(with_events, with_events.app, *statements)
    assert isinstance(error, errors.InsufficientPrivilege), repr(error)
    assert scalar(with_events, with_events.app, "SELECT count(*) FROM audit_auditevent") == 2


def test_the_application_role_reads_and_writes_every_other_table(with_events: RoleDatabase) -> None:
    conn = with_events.connect(with_events.app)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO accounts_team (name, slug, description, created_at) "
                "VALUES ('Roles', 'roles', '', now()) RETURNING id"
            )
            team = cursor.fetchone()[0]
            cursor.execute("UPDATE accounts_team SET name = 'Roles 2' WHERE id = %s", [team])
            assert cursor.rowcount == 1
            cursor.execute("DELETE FROM accounts_team WHERE id = %s", [team])
            assert cursor.rowcount == 1
            cursor.execute("SELECT count(*) FROM audit_auditevent")
            assert cursor.fetchone()[0] == 2
        conn.rollback()
    finally:
        conn.close()


def test_tables_of_later_migrations_get_the_same_rights(with_events: RoleDatabase) -> None:
    table = f"later_{uuid.uuid4().hex[:8]}"
    owner = with_events.connect(with_events.owner)
    owner.autocommit = True
    try:
        with owner.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {table} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text)")
        app = with_events.connect(with_events.app)
        try:
            with app.cursor() as cursor:
                cursor.execute(f"INSERT INTO {table} (note) VALUES ('x') RETURNING id")
                cursor.execute(f"UPDATE {table} SET note = 'y'")
                cursor.execute(f"DELETE FROM {table}")
            app.commit()
        finally:
            app.close()
        error = refused(with_events, with_events.app, f"TRUNCATE {table}")
        assert isinstance(error, errors.InsufficientPrivilege)
    finally:
        with owner.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        owner.close()


def test_no_session_setting_lets_truncate_through_outside_the_test_database(
    second_database: RoleDatabase, tmp_path: Path
) -> None:
    """In a database migrated by the product (not the test database), a role that holds TRUNCATE (a mistake,
    or an old installation's grants) still cannot empty the log: the trigger no longer reads a setting."""
    verified = second_database.manage("verify_audit", env={"ALM_ARTIFACT_DIR": str(tmp_path)})
    assert verified.returncode == 0, verified.stdout + verified.stderr
    before = scalar(second_database, second_database.owner, "SELECT count(*) FROM audit_auditevent")
    assert before >= 1
    extra = f"alm_truncating_{uuid.uuid4().hex[:8]}"
    superuser = _superuser_connection(second_database)
    try:
        with superuser.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {extra} LOGIN NOSUPERUSER")
            cursor.execute(f"GRANT USAGE ON SCHEMA public TO {extra}")
            cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON audit_auditevent TO {extra}")
        conn = second_database.connect(extra)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SET LOCAL alm.allow_audit_truncate = 'on'")
                try:
                    cursor.execute("TRUNCATE audit_auditevent")
                    conn.commit()
                except psycopg2.Error as error:
                    assert "append-only" in str(error)
                    conn.rollback()
        finally:
            conn.close()
        assert scalar(second_database, second_database.owner, "SELECT count(*) FROM audit_auditevent") == before
    finally:
        with superuser.cursor() as cursor:
            cursor.execute(f"REVOKE ALL ON audit_auditevent FROM {extra}")
            cursor.execute(f"REVOKE ALL ON SCHEMA public FROM {extra}")
            cursor.execute(f"DROP ROLE IF EXISTS {extra}")
        superuser.close()


def _superuser_connection(database: RoleDatabase) -> psycopg2.extensions.connection:
    from django.db import connection

    conn = psycopg2.connect(
        host=database.host, port=database.port, user=connection.settings_dict["USER"], dbname=database.name
    )
    conn.autocommit = True
    return conn


def test_migrate_refuses_to_grant_a_superuser(role_database: RoleDatabase) -> None:
    from django.db import connection

    superuser = str(connection.settings_dict["USER"])
    result = role_database.manage(
        "migrate", "--noinput", role=superuser, env={"DATABASE_MIGRATE_URL": role_database.url(role_database.owner)}
    )
    assert result.returncode != 0
    assert "is a superuser" in result.stderr


def test_migrate_needs_the_migration_role_to_be_another_role(role_database: RoleDatabase, tmp_path: Path) -> None:
    result = role_database.manage(
        "migrate", "--noinput", env={"DATABASE_MIGRATE_URL": role_database.url(role_database.app)}
    )
    assert result.returncode != 0
    assert "configuration error: DATABASE_MIGRATE_URL: must connect as another role than DATABASE_URL" in (
        result.stderr + result.stdout
    )


def test_an_existing_single_role_installation_moves_to_the_two_roles(tmp_path: Path) -> None:
    """docs/upgrading.md on a database migrated the old way (one superuser owning everything): the upgrade
    script, then migrate with both URLs; the log still verifies and the application role is held to DML."""
    from django.db import connection

    from tests.support.second_database import ROOT, _superuser

    suffix = uuid.uuid4().hex[:10]
    db = connection.settings_dict
    superuser = str(db["USER"])
    target = RoleDatabase(
        name=f"alm_upgrade_{suffix}",
        owner=f"alm_owner_{suffix}",
        app=f"alm_app_{suffix}",
        host=str(db["HOST"] or "127.0.0.1"),
        port=str(db["PORT"] or 5432),
    )
    env = {"ALM_ARTIFACT_DIR": str(tmp_path)}
    admin = _superuser()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {target.name}")
        for step in (("migrate", "--noinput"), ("verify_audit",)):
            done = target.manage(*step, role=superuser, env=env)
            assert done.returncode == 0, done.stdout + done.stderr

        script = subprocess.run(
            [
                "psql",
                "-v",
                "ON_ERROR_STOP=1",
                "--no-psqlrc",
                "-h",
                target.host,
                "-p",
                target.port,
                "-U",
                superuser,
                "-d",
                target.name,
                "-v",
                f"owner={target.owner}",
                "-v",
                f"app={target.app}",
                "-v",
                "owner_password=owner-password",
                "-v",
                "app_password=app-password",
                "-f",
                str(ROOT / "deploy" / "postgres" / "upgrade-to-roles.sql"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert script.returncode == 0, script.stdout + script.stderr
        migrated = target.manage("migrate", "--noinput", env={**env, "DATABASE_MIGRATE_URL": target.url(target.owner)})
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        verified = target.manage("verify_audit", env=env)  # as the application role now
        assert verified.returncode == 0, verified.stdout + verified.stderr

        owned_elsewhere = scalar(
            target,
            target.owner,
            f"SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> '{target.owner}'",
        )
        assert owned_elsewhere == 0
        for statements in (
            ("UPDATE audit_auditevent SET message = 'x'",),
            ("ALTER TABLE audit_auditevent DISABLE TRIGGER USER",),
        ):
            assert isinstance(refused(target, target.app, *statements), errors.InsufficientPrivilege)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {target.name} WITH (FORCE)")
            for role in (target.app, target.owner):
                cursor.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()
