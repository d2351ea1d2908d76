"""Helpers shared by the audit tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection, transaction

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import record


def requires_postgres(test: Any) -> Any:
    """PostgreSQL-only behaviour (triggers, advisory locks, real concurrency). tests/conftest.py
    skips `postgres`-marked tests on SQLite with a reason, and fails them under CI=true."""
    return pytest.mark.postgres(test)


@dataclass
class Person:
    """Just enough of a user for AuditContext.for_user (which is duck-typed)."""

    pk: int
    username: str
    display_name: str = ""

    def get_username(self) -> str:
        return self.username


MAKER = Person(pk=101, username="maker", display_name="Mia Maker")


def maker_context(**overrides: Any) -> AuditContext:
    values = {"auth_method": "session", "request_id": "req-test", "client_ip": "203.0.113.7", "user_agent": "pytest"}
    return AuditContext.for_user(MAKER, **(values | overrides))


def write_events(count: int, *, action: str = "test.event") -> list[AuditEvent]:
    events = []
    for number in range(count):
        with transaction.atomic():
            events.append(record(context=maker_context(), action=action, after={"number": number}))
    return events


def tamper(sql: str, params: list[Any] | tuple[Any, ...] = ()) -> None:
    """Change audit rows behind the application's back, as a table owner could: on PostgreSQL the
    append-only triggers are disabled for this statement only (inside the test's transaction)."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
