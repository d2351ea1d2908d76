"""Shared fixtures: personas, API clients and the service requirements of tests.

Tests that need PostgreSQL or Redis carry `@pytest.mark.postgres` / `@pytest.mark.redis`. Without
the service they are skipped with a reason; with CI=true a missing service fails them instead, so
CI can never go green by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

pytest_plugins = [
    "tests.support.emulator",
    "tests.support.worker",
    "tests.support.api",
    "tests.support.second_database",
    "tests.support.git_host",
]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _using_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def _redis_problem() -> str | None:
    if not settings.REDIS_URL:
        return "needs Redis: set REDIS_URL=redis://127.0.0.1:6379/<n>"
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"needs Redis: {settings.REDIS_URL} does not answer ({exc})"
    return None


def _missing_service(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and a required service is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") and not _using_postgres():
        _missing_service("needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db>")
    if item.get_closest_marker("redis"):
        problem = _redis_problem()
        if problem:
            _missing_service(problem)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """After Django creates the test database, let only it TRUNCATE the audit table (its flush needs that)."""
    from django.db import connection

    from alm_portal.audit.testing import enable_audit_truncate_for_test_database

    with django_db_blocker.unblock():
        enable_audit_truncate_for_test_database(connection)
    yield


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    """Throttle counters and export slots start from nothing in every test. Only Redis needs this: the
    database cache table is emptied with every other table between tests."""
    from django.core.cache import cache

    if settings.CACHES["default"]["BACKEND"].endswith("RedisCache") and not _redis_problem():
        client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
        for key in client.scan_iter(f"{settings.CACHES['default']['KEY_PREFIX']}:*"):
            client.delete(key)


@pytest.fixture(autouse=True)
def artifact_storage(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A fresh artifact storage per test: stored zips and audit checkpoints never outlive the rows
    that describe them, and tests never write into the developer's var/."""
    location = tmp_path_factory.mktemp("artifacts")
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    }
    settings.ALM_ARTIFACT_DIR = location
    return location


# --- personas (the demo's people, docs/demo.md §3, created fresh per test) ---------------------------------


@pytest.fixture
def make_user(db: Any) -> Any:
    from alm_portal.accounts import services
    from alm_portal.audit.context import AuditContext

    def _make(username: str, role: str = "maker", team: Any = None, password: str = "correct-horse-battery") -> Any:
        user = services.user_create(username=username, role=role, password=password, context=AuditContext.system())
        if team is not None:
            services.team_add_member(team=team, user=user, context=AuditContext.system())
        return user

    return _make


@pytest.fixture
def team(db: Any) -> Any:
    from alm_portal.accounts import services
    from alm_portal.audit.context import AuditContext

    return services.team_create(name="Contoso", slug="contoso", context=AuditContext.system())


@pytest.fixture
def maker(make_user: Any, team: Any) -> Any:
    return make_user("maker", "maker", team)


@pytest.fixture
def approver(make_user: Any, team: Any) -> Any:
    return make_user("approver", "approver", team)


@pytest.fixture
def second_approver(make_user: Any, team: Any) -> Any:
    return make_user("approver2", "approver", team)


@pytest.fixture
def admin_user(make_user: Any) -> Any:
    return make_user("admin", "admin")


@pytest.fixture
def auditor(make_user: Any) -> Any:
    return make_user("auditor", "auditor")


@pytest.fixture
def outsider(make_user: Any) -> Any:
    from alm_portal.accounts import services
    from alm_portal.audit.context import AuditContext

    other = services.team_create(name="Fabrikam", slug="fabrikam", context=AuditContext.system())
    return make_user("maker2", "maker", other)


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def token_for(db: Any) -> Any:
    """token_for(user, scopes=[...]) -> the token text, created through the service."""
    from alm_portal.accounts import services
    from alm_portal.audit.context import AuditContext

    def _token(user: Any, scopes: list[str] | None = None, days: int = 30, name: str | None = None) -> str:
        _, text = services.api_token_create(
            user=user, scopes=scopes or ["read"], days=days, name=name, context=AuditContext.system()
        )
        return text

    return _token
