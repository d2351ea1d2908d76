"""Fixtures of the solution registry tests: corpus zips, re-versioned copies, environments on the emulator."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.dataverse.package import reversion_package

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "solutions"

INCIDENT_102_UNMANAGED = "IncidentReporting_1_0_0_2.zip"
INCIDENT_102_MANAGED = "IncidentReporting_1_0_0_1_managed.zip"  # holds 1.0.0.2 despite its name (MANIFEST.md)
INCIDENT_104_UNMANAGED = "IncidentReporting_1_0_0_4.zip"
INCIDENT_105_MANAGED = "IncidentReporting_1_0_0_5_managed.zip"


def corpus_bytes(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def reversioned(name: str, version: str) -> bytes:
    """A corpus zip whose solution.xml says `version` (nothing else changes)."""
    out = io.BytesIO()
    reversion_package(CORPUS / name, version, out)
    return out.getvalue()


def upload_file(data: bytes, name: str = "package.zip") -> io.BytesIO:
    stream = io.BytesIO(data)
    stream.name = name
    return stream


@pytest.fixture
def context_of() -> Any:
    def _context(user: Any) -> AuditContext:
        return AuditContext.for_user(user, auth_method="session", request_id="test-request")

    return _context


@pytest.fixture
def upload(context_of: Any) -> Any:
    """upload(user, data_or_corpus_name, **kwargs) through the service."""
    from solutions import services

    def _upload(user: Any, data: bytes | str, **kwargs: Any) -> Any:
        payload = corpus_bytes(data) if isinstance(data, str) else data
        return services.solution_version_upload(
            file=upload_file(payload), user=user, context=context_of(user), **kwargs
        )

    return _upload


@pytest.fixture
def emulator_settings(settings: Any, emulator: Any) -> Any:
    """Trust the emulator's CA, allow loopback, and poll exports quickly."""
    settings.ALM_DATAVERSE_CA_BUNDLE = str(emulator.ca_file)
    settings.ALM_ALLOW_LOOPBACK = True
    settings.ALM_EXPORT_POLL_SECONDS = 0.1
    settings.ALM_EXPORT_WAIT_IN_TASK_SECONDS = 20
    return settings


@pytest.fixture
def make_environment(db: Any, emulator_settings: Any) -> Any:
    """make_environment(org, team, name=...) registers an emulator org as a portal environment."""
    from environments import services as environment_services

    def _make(org: Any, team: Any, name: str | None = None, kind: str = "development") -> Any:
        return environment_services.environment_create(
            name=name or org.name,
            url=org.url,
            kind=kind,
            tenant_id=org.tenant_id,
            authority=org.authority,
            team=team,
            client_id=org.client_id,
            credential_type="secret",
            client_secret=org.client_secret,
            context=AuditContext.system(),
            check_health=False,
        )

    return _make


@pytest.fixture
def dev_environment(make_environment: Any, emulator_org: Any, team: Any) -> Any:
    return make_environment(emulator_org, team, name="contoso-dev")


@pytest.fixture(autouse=True)
def no_broker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Jobs run inline here (job_run_now); the after-commit nudge to a worker goes nowhere. Tests that start a real
    worker mark themselves `redis` and keep the real publish."""
    sent: list[tuple[Any, ...]] = []
    if request.node.get_closest_marker("redis"):
        return sent
    monkeypatch.setattr(
        "alm_portal.celery.publish_best_effort",
        lambda task, args=(), countdown=None: sent.append(args) or True,
    )
    return sent
