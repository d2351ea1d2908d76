"""Fixtures of the API tests (tests/api/): a small world with every persona and one of each object.

Loaded by tests/conftest.py (`pytest_plugins`). The demo's layout (docs/demo.md) in small, without the
emulator: contoso-dev → test (1 approval) → prod (2 approvals), approver named on both stages; the
maker uploads the corpus's Success 1.0.0.0 and 1.1.0.0 (real stored artifacts) and requests 1.1.0.0
into test; a health-check job, a webhook, a window and a freeze. Everything is made through the
services; broker publishes go nowhere.

Personas (issue 6's matrix): anonymous, maker (contoso), maker2 (fabrikam: another team), approver
(contoso, named on the stages), admin, auditor, and readonly (an admin's token with only `read`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "solutions"
PERSONAS = ("anonymous", "maker", "maker2", "approver", "admin", "auditor", "readonly")


def corpus_file(name: str) -> io.BytesIO:
    stream = io.BytesIO((CORPUS / name).read_bytes())
    stream.name = name
    return stream


@dataclass
class ApiWorld:
    users: dict[str, Any]
    tokens: dict[str, str]
    ids: dict[str, int]
    objects: dict[str, Any] = field(default_factory=dict)

    def client(self, persona: str) -> APIClient:
        """An API client authenticated as `persona` by its bearer token (anonymous: none)."""
        client = APIClient()
        if persona != "anonymous":
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.tokens[persona]}")
        return client


@pytest.fixture
def no_publish(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Broker publishes are recorded, never sent (jobs are run inline where a test needs them)."""
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        "alm_portal.celery.publish_best_effort", lambda task, args=(), countdown=None: sent.append(args) or True
    )
    return sent


@pytest.fixture
def api_settings(settings: Any) -> Any:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALM_ALLOW_LOOPBACK = True
    return settings


@pytest.fixture
def api_world(api_settings: Any, no_publish: Any, make_user: Any, team: Any, token_for: Any) -> ApiWorld:
    from django.utils import timezone

    from alm_portal.accounts import services as accounts
    from alm_portal.audit.context import AuditContext
    from alm_portal.job_kinds import JobKind
    from alm_portal.jobs.services import job_enqueue
    from alm_portal.notifications.services import webhook_endpoint_create
    from deployments import workflow
    from deployments.services import pipeline_create, stage_add, stage_freeze_add, stage_window_add
    from environments.models import Environment
    from solutions.services import solution_version_upload

    system = AuditContext.system()
    fabrikam = accounts.team_create(name="Fabrikam", slug="fabrikam", context=system)
    users = {
        "maker": make_user("maker", "maker", team),
        "maker2": make_user("maker2", "maker", fabrikam),
        "approver": make_user("approver", "approver", team),
        "admin": make_user("admin", "admin"),
        "auditor": make_user("auditor", "auditor"),
    }
    users["readonly"] = users["admin"]
    # Not a persona of the matrix: the second person prod's two approvals need (docs/demo.md).
    users["approver2"] = make_user("approver2", "approver", team)
    scopes = {
        "maker": ["read", "request"],
        "maker2": ["read", "request"],
        "approver": ["read", "request", "approve"],
        "admin": ["read", "request", "approve", "admin"],
        "auditor": ["read"],
        "readonly": ["read"],
    }
    tokens = {name: token_for(users[name], scopes=scopes[name], name=f"{name}-token") for name in scopes}

    def environment(name: str, owner: Any, kind: str) -> Environment:
        return Environment.objects.create(
            name=name,
            url=f"https://{name}.crm4.dynamics.com",
            kind=kind,
            tenant_id="00000000-0000-0000-0000-000000000001",
            authority="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001",
            team=owner,
        )

    environments = {
        "dev": environment("contoso-dev", team, "development"),
        "test": environment("contoso-test", team, "test"),
        "prod": environment("contoso-prod", team, "production"),
        "fabrikam": environment("fabrikam-dev", fabrikam, "development"),
    }
    pipeline = pipeline_create(name="Contoso", team=team, development_environment=environments["dev"], context=system)
    stages = {
        name: stage_add(
            pipeline=pipeline,
            name=name,
            target_environment=environments[name],
            required_approvals=approvals,
            approver_users=[users["approver"], users["approver2"]],
            context=system,
        )
        for name, approvals in (("test", 1), ("prod", 2))
    }
    window = stage_window_add(
        stage=stages["prod"],
        weekdays=[1, 2, 3, 4, 5, 6, 7],
        start_time=timezone.datetime(2000, 1, 1, 0, 0).time(),
        end_time=timezone.datetime(2000, 1, 1, 0, 0).time(),
        time_zone="Europe/Berlin",
        context=system,
    )
    now = timezone.now()
    freeze = stage_freeze_add(
        stage=stages["prod"],
        starts_at=now + timedelta(days=300),
        ends_at=now + timedelta(days=301),
        reason="Year-end",
        context=system,
    )
    maker_context = AuditContext.for_user(users["maker"], auth_method="session", request_id="req-api-world")
    versions = {}
    for name, text in (("Success_1_0_0_0_managed.zip", "1.0"), ("Success_1_1_0_0_managed.zip", "1.1")):
        outcome = solution_version_upload(
            file=corpus_file(name), user=users["maker"], context=maker_context, home_environment=environments["dev"]
        )
        versions[text] = outcome.version
    promotion = workflow.promotion_request(
        version=versions["1.1"],
        stage=stages["test"],
        requested_by=users["maker"],
        context=maker_context,
        comment="Release 1.1 to test",
    )
    # Asked for by a person (scheduled checks are not audited), so the job has a log.
    admin_context = AuditContext.for_user(users["admin"], auth_method="session", request_id="req-api-world")
    job = job_enqueue(kind=JobKind.HEALTH_CHECK, environment=environments["test"], params={}, context=admin_context)
    webhook = webhook_endpoint_create(
        name="ci-hook", url="https://127.0.0.1:9/hook", events=["promotion."], secret="s" * 32, context=system
    )
    spare_token, _ = accounts.api_token_create(user=users["maker"], name="spare", scopes=["read"], context=system)
    ids = {
        "environment": environments["test"].pk,
        "solution": versions["1.1"].solution_id,
        "version": versions["1.1"].pk,
        "old_version": versions["1.0"].pk,
        "pipeline": pipeline.pk,
        "stage": stages["test"].pk,
        "stage_prod": stages["prod"].pk,
        "window": window.pk,
        "freeze": freeze.pk,
        "promotion": promotion.pk,
        "job": job.pk,
        "webhook": webhook.pk,
        "token": spare_token.pk,
    }
    return ApiWorld(
        users=users,
        tokens=tokens,
        ids=ids,
        objects={"environments": environments, "stages": stages, "versions": versions, "pipeline": pipeline},
    )
