"""Fixtures for the audit tests.

tests/conftest.py lets the test database TRUNCATE the audit table (Django's flush needs it) and
gives every test a fresh artifact storage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def checkpoint_storage(settings: Any, artifact_storage: Path) -> Path:
    """The chain's checkpoint folder in the per-test artifact storage (tests/conftest.py), signed with a test key."""
    settings.ALM_AUDIT_CHECKPOINT_KEY = "test-checkpoint-key"
    return artifact_storage / "audit-checkpoints" / settings.ALM_AUDIT_CHAIN_ID
