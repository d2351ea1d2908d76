"""Fixtures for the audit tests.

`django_db_setup` extends pytest-django's: after the test database exists (with the append-only
triggers from the migrations), it allows TRUNCATE there so Django's flush between transactional
tests works. tests/conftest.py may call the same function; doing it twice is harmless.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from alm_portal.audit.testing import enable_audit_truncate_for_test_database


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        for alias in connections:
            enable_audit_truncate_for_test_database(connections[alias])
    yield


@pytest.fixture(autouse=True)
def checkpoint_storage(settings: Any, tmp_path: Path) -> Path:
    """A fresh artifact storage per test: checkpoints must not outlive the database rows they sign."""
    location = tmp_path / "artifacts"
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    }
    settings.ALM_AUDIT_CHECKPOINT_KEY = "test-checkpoint-key"
    return location / "audit-checkpoints"
