"""Shared setup of the workflow, policy and settings tests (imported by them; holds no tests itself).

The demo's layout (docs/demo.md) in small: a Contoso pipeline contoso-dev → test (1 approval) → prod
(2 approvals), approver and approver2 named on both stages, one solution with managed versions
uploaded by the maker. Rows that are not the subject of these tests (environments, solutions,
versions) are created directly; pipelines and stages go through the services.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from deployments import workflow
from deployments.models import Promotion
from deployments.services import pipeline_create, stage_add

# A Wednesday, 10:00 UTC: inside a Monday–Friday office-hours window in Europe and the US.
T0 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """The personas get passwords; a slow hasher would cost about a second per test for nothing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class Clock:
    """A settable timezone.now() for the code under test (no time-machine needed)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now = self.now + timedelta(**delta)
        return self.now

    def set(self, when: datetime) -> datetime:
        self.now = when
        return self.now


@pytest.fixture(name="clock")
def clock_fixture(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fixed = Clock(T0)
    monkeypatch.setattr(timezone, "now", fixed)
    return fixed


@pytest.fixture(name="published")
def published_fixture(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Job ids the code asked the broker to run (after commit); nothing reaches a real broker."""
    import alm_portal.celery

    sent: list[int] = []

    def fake_publish(task: Any, *, args: tuple[Any, ...] = (), countdown: float | None = None) -> bool:
        sent.append(args[0])
        return True

    monkeypatch.setattr(alm_portal.celery, "publish_best_effort", fake_publish)
    return sent


def make_environment(name: str, team: Any, kind: str = "test") -> Any:
    from environments.models import Environment

    return Environment.objects.create(
        name=name,
        url=f"https://{name}.crm4.dynamics.com",
        kind=kind,
        tenant_id="00000000-0000-0000-0000-000000000001",
        authority="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001",
        team=team,
    )


@pytest.fixture(name="environments")
def environments_fixture(team: Any) -> dict[str, Any]:
    return {
        "dev": make_environment("contoso-dev", team, "development"),
        "test": make_environment("contoso-test", team, "test"),
        "prod": make_environment("contoso-prod", team, "production"),
        "prod2": make_environment("contoso-prod-2", team, "production"),
    }


@pytest.fixture(name="pipeline")
def pipeline_fixture(team: Any, environments: dict[str, Any], approver: Any, second_approver: Any) -> Any:
    system = AuditContext.system()
    contoso = pipeline_create(name="Contoso", team=team, development_environment=environments["dev"], context=system)
    for name, approvals in (("test", 1), ("prod", 2)):
        stage_add(
            pipeline=contoso,
            name=name,
            target_environment=environments[name],
            required_approvals=approvals,
            approver_users=[approver, second_approver],
            context=system,
        )
    return contoso


@pytest.fixture(name="stage_test")
def stage_test_fixture(pipeline: Any) -> Any:
    return pipeline.stages.get(name="test")


@pytest.fixture(name="stage_prod")
def stage_prod_fixture(pipeline: Any) -> Any:
    return pipeline.stages.get(name="prod")


@pytest.fixture(name="solution")
def solution_fixture(team: Any, pipeline: Any, environments: dict[str, Any]) -> Any:
    from solutions.models import Solution

    return Solution.objects.create(
        unique_name="IncidentReporting",
        display_name="Incident Reporting",
        publisher_unique_name="contoso",
        publisher_prefix="contoso",
        team=team,
        pipeline=pipeline,
        home_environment=environments["dev"],
    )


def make_version(solution: Any, text: str, *, uploaded_by: Any = None, managed: bool = True) -> Any:
    """A registry row with a managed (or only an unmanaged) artifact slot filled."""
    from solutions.models import SolutionVersion

    parts = [int(part) for part in text.split(".")] + [0] * (4 - len(text.split(".")))
    digest = hashlib.sha256(f"{solution.unique_name}-{text}-{managed}".encode()).hexdigest()
    flavour = "managed" if managed else "unmanaged"
    return SolutionVersion.objects.create(
        solution=solution,
        version=text,
        version_key=".".join(str(part) for part in parts),
        major=parts[0],
        minor=parts[1],
        build=parts[2],
        revision=parts[3],
        source_kind="uploaded",
        created_by=uploaded_by,
        **{
            f"{flavour}_path": f"solutions/{solution.unique_name}/{text}/{flavour}.zip",
            f"{flavour}_sha256": digest,
            f"{flavour}_size": 1234,
            f"{flavour}_manifest": {},
            f"{flavour}_uploaded_at": timezone.now(),
            f"{flavour}_uploaded_by": uploaded_by,
        },
    )


@pytest.fixture(name="version")
def version_fixture(solution: Any, maker: Any) -> Any:
    return make_version(solution, "1.0.0.1", uploaded_by=maker)


def as_user(user: Any) -> AuditContext:
    return AuditContext.for_user(user, auth_method="session", request_id="req-test")


WORKER = AuditContext.worker(request_id="req-worker")


def request(version: Any, stage: Any, user: Any, **kwargs: Any) -> Promotion:
    return workflow.promotion_request(version=version, stage=stage, requested_by=user, context=as_user(user), **kwargs)


def preflight(promotion: Promotion, status: str = "passed", checks: list[dict[str, Any]] | None = None) -> Promotion:
    return workflow.promotion_preflight_finished(
        promotion_id=promotion.pk, status=status, result={"status": status, "checks": checks or []}, context=WORKER
    )


def approve(promotion: Promotion, user: Any, **kwargs: Any) -> Promotion:
    return workflow.promotion_approve(promotion=promotion, user=user, context=as_user(user), **kwargs)


def run_to(promotion: Promotion, outcome: str = "succeeded", previous_version: str = "") -> Promotion:
    """Play the runner: queued → running → succeeded/failed."""
    promotion.refresh_from_db()
    workflow.promotion_mark_running(
        promotion_id=promotion.pk, job_id=promotion.run_job_id, previous_version=previous_version, context=WORKER
    )
    if outcome == "succeeded":
        return workflow.promotion_mark_succeeded(promotion_id=promotion.pk, result={"ok": True}, context=WORKER)
    return workflow.promotion_mark_failed(
        promotion_id=promotion.pk,
        error_code="MissingDependency",
        error_message="The solution needs contoso_Core.",
        result={"log": "…"},
        context=WORKER,
    )


def deployed(version: Any, stage: Any, requester: Any, approvers: list[Any], previous_version: str = "") -> Promotion:
    """A promotion of `version` that succeeded in `stage` (replacing `previous_version`, "" = a first install)."""
    promotion = request(version, stage, requester)
    preflight(promotion)
    for person in approvers:
        approve(promotion, person)
    return run_to(promotion, previous_version=previous_version)


def events_of(obj: Any, *, since: int = 0) -> list[AuditEvent]:
    """Audit events about `obj` (as object or related object), in order."""
    kind = f"{obj._meta.app_label}.{obj._meta.model_name}"
    return list(AuditEvent.objects.filter(seq__gt=since, object_type=kind, object_id=str(obj.pk)).order_by("seq"))


def actions_of(obj: Any, *, since: int = 0) -> list[str]:
    return [event.action for event in events_of(obj, since=since)]


def head_seq() -> int:
    last = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    return last or 0


def actions_since(since: int) -> list[str]:
    return list(AuditEvent.objects.filter(seq__gt=since).order_by("seq").values_list("action", flat=True))
