"""Second PostgreSQL databases beside the test database, migrated by `manage.py migrate` in a subprocess.

- `second_database`: migrated the simple way (one role does everything), for another installation sharing
  the test's artifact storage;
- `role_database`: set up as docs/security.md says, an owner role that `migrate` uses (DATABASE_MIGRATE_URL)
  and an application role (DATABASE_URL) for web, worker and beat.

The server is shared with other people's tests: every role and database here has a unique name and is dropped
at the end of the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RoleDatabase:
    name: str
    owner: str
    app: str
    host: str
    port: str

    def url(self, role: str) -> str:
        return f"postgres://{role}@{self.host}:{self.port}/{self.name}"

    def connect(self, role: str) -> psycopg2.extensions.connection:
        return psycopg2.connect(host=self.host, port=self.port, user=role, dbname=self.name)

    def manage(
        self, *args: str, role: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`python manage.py <args>` as the application would run it (DATABASE_URL = the application role)."""
        full = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "DATABASE_"))}
        full.update(
            {
                "ALM_MODE": "test",
                "DATABASE_URL": self.url(role or self.app),
                "ALM_VAR_DIR": str(settings.VAR_DIR),
                "REDIS_URL": settings.REDIS_URL or "",
            }
        )
        full.update(env or {})
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=full,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


def _superuser() -> psycopg2.extensions.connection:
    db = connection.settings_dict
    admin = psycopg2.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname="postgres"
    )
    admin.autocommit = True
    return admin


@pytest.fixture(scope="session")
def second_database() -> Iterator[RoleDatabase]:
    """A fresh database migrated by the test server's superuser (owner and application role are one)."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("needs PostgreSQL")
    db = connection.settings_dict
    user = str(db["USER"])
    target = RoleDatabase(
        name=f"alm_second_{uuid.uuid4().hex[:10]}",
        owner=user,
        app=user,
        host=str(db["HOST"] or "127.0.0.1"),
        port=str(db["PORT"] or 5432),
    )
    admin = _superuser()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {target.name}")
        migrated = target.manage("migrate", "--noinput")
        assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
        yield target
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {target.name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="session")
def role_database() -> Iterator[RoleDatabase]:
    """A fresh database owned by a NOSUPERUSER owner role and migrated with DATABASE_MIGRATE_URL, the way
    docker-compose's `migrate` service does it; the application role got its grants from that migrate."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("needs PostgreSQL")
    suffix = uuid.uuid4().hex[:10]
    db = connection.settings_dict
    target = RoleDatabase(
        name=f"alm_roles_{suffix}",
        owner=f"alm_owner_{suffix}",
        app=f"alm_app_{suffix}",
        host=str(db["HOST"] or "127.0.0.1"),
        port=str(db["PORT"] or 5432),
    )
    admin = _superuser()
    try:
        # The script docker-compose runs when PostgreSQL starts empty, with this test's names.
        script = subprocess.run(
            ["bash", str(ROOT / "deploy" / "postgres" / "alm-roles.sh")],
            env={
                **os.environ,
                "PGHOST": target.host,
                "PGPORT": target.port,
                "POSTGRES_USER": str(db["USER"]),
                "ALM_DB_NAME": target.name,
                "ALM_DB_OWNER": target.owner,
                "ALM_DB_APP": target.app,
                "ALM_DB_OWNER_PASSWORD": "owner-password",
                "ALM_DB_APP_PASSWORD": "app-password",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert script.returncode == 0, script.stdout + script.stderr
        migrated = target.manage("migrate", "--noinput", env={"DATABASE_MIGRATE_URL": target.url(target.owner)})
        assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
        yield target
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {target.name} WITH (FORCE)")
            for role in (target.app, target.owner):
                cursor.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()
