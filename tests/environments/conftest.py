"""Fixtures for environments tests: an admin's audit context, registration against an emulator org
(over real HTTPS, trusting the emulator's CA through ALM_DATAVERSE_CA_BUNDLE), and audit readers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.dataverse.client import clear_throttle

CANARY_SECRET = "CanarySecret~9f3e1d-DoNotLeak-7a2b"


@pytest.fixture(autouse=True)
def _loopback_and_ca(settings: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    """The emulator lives on 127.0.0.1 with its own CA: allow loopback, trust that CA (when the
    test uses the emulator), and forget process-wide throttle state between tests."""
    settings.ALM_ALLOW_LOOPBACK = True
    # Personas get passwords; the production hasher's work factor would dominate these tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if "emulator" in request.fixturenames or "emulator_org" in request.fixturenames:
        server = request.getfixturevalue("emulator")
        settings.ALM_DATAVERSE_CA_BUNDLE = str(server.ca_file)
    clear_throttle()
    yield
    clear_throttle()


@pytest.fixture
def admin_context(admin_user: Any) -> AuditContext:
    return AuditContext.for_user(admin_user, auth_method="session", request_id="req-env-test")


@pytest.fixture
def register(admin_context: AuditContext, team: Any) -> Any:
    """register(org, **overrides) → an Environment pointing at the emulator org (no job queued)."""
    from environments import services

    counter = {"n": 0}

    def _register(org: Any, **overrides: Any) -> Any:
        counter["n"] += 1
        values: dict[str, Any] = {
            "name": f"{org.name}",
            "url": org.url,
            "kind": "test",
            "tenant_id": org.tenant_id,
            "authority": org.authority,
            "team": team,
            "client_id": org.client_id,
            "credential_type": "secret",
            "client_secret": org.client_secret,
            "context": admin_context,
            "check_health": False,
        }
        values.update(overrides)
        return services.environment_create(**values)

    return _register


def events(action: str | None = None, **filters: Any) -> list[AuditEvent]:
    queryset = AuditEvent.objects.order_by("seq")
    if action:
        queryset = queryset.filter(action=action)
    return list(queryset.filter(**filters))


def only_event(action: str, **filters: Any) -> AuditEvent:
    found = events(action, **filters)
    assert len(found) == 1, f"expected one {action} event, found {[(e.action, e.object_id) for e in found]}"
    return found[0]
