"""Every action a page can POST, as every persona, through the page and through the API, with a VALID body.

The read matrices (tests/ui/test_pages.py, tests/api/test_authorization_matrix.py) send empty or
placeholder bodies: a refusal then looks the same as a validation error, and a page answers a redirect
whether the action happened or not. Here every cell sends what the action needs to succeed, and the
outcome is judged by its effect, not by its status code:

- "done": the action's own audit event was written (the change happened);
- "refused": it answered, and nothing was written (403, or a page's redirect with the refusal in words);
- "hidden": 404, the object is not even visible to the persona.

A page and its API twin must have the same outcome for every persona: one rule, enforced in the services
(or accounts/policy.py), whichever interface asks. Where they refuse differently (the API refuses a token
lacking the endpoint's scope before it looks the object up, so 403 where the page answers 404), the action
says so in `api_expected`; whether the change happens is the same on both, always. Each cell runs in a
savepoint that is rolled back. The API's tokens hold every scope of their persona's role; a token holding
one scope alone is tests/api/test_authorization_matrix.py's.

The list of actions is checked against the URL resolver: every page whose view takes a POST has an entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from deployments import workflow
from deployments.choices import RollbackStrategy
from deployments.models import Promotion, Stage
from solutions.models import SourceBinding

pytestmark = [pytest.mark.django_db]

PERSONAS = ("maker", "maker2", "approver", "admin", "auditor")
DONE, REFUSED, HIDDEN = "done", "refused", "hidden"


@dataclass
class World:
    users: dict[str, Any]
    tokens: dict[str, str]
    ids: dict[str, int]
    objects: dict[str, Any] = field(default_factory=dict)


def _ctx(user: Any) -> AuditContext:
    return AuditContext.for_user(user, auth_method="session", request_id="req-action-matrix")


def _to_queued(promotion: Promotion, *, approver: Any) -> Promotion:
    system = AuditContext.system()
    workflow.promotion_preflight_finished(
        promotion_id=promotion.pk, status="passed", result={"checks": []}, context=system
    )
    workflow.promotion_approve(promotion=promotion, user=approver, comment="fine", context=_ctx(approver))
    promotion.refresh_from_db()
    assert promotion.status == "queued", promotion.status
    return promotion


def _succeed(promotion: Promotion, *, approver: Any, previous_version: str) -> Promotion:
    """Drive a requested promotion to succeeded through the state machine, as the runner would."""
    promotion = _to_queued(promotion, approver=approver)
    system = AuditContext.system()
    workflow.promotion_mark_running(
        promotion_id=promotion.pk, job_id=promotion.run_job_id, previous_version=previous_version, context=system
    )
    workflow.promotion_mark_succeeded(promotion_id=promotion.pk, result={}, context=system)
    promotion.refresh_from_db()
    return promotion


def _fail(promotion: Promotion, *, approver: Any) -> Promotion:
    promotion = _to_queued(promotion, approver=approver)
    system = AuditContext.system()
    workflow.promotion_mark_running(
        promotion_id=promotion.pk, job_id=promotion.run_job_id, previous_version="1.1.0.0", context=system
    )
    workflow.promotion_mark_failed(
        promotion_id=promotion.pk,
        error_code="import_failed",
        error_message="The import failed.",
        result={},
        context=system,
    )
    promotion.refresh_from_db()
    return promotion


def _environment(name: str, team: Any, kind: str = "test") -> Any:
    from environments.models import Environment

    return Environment.objects.create(
        name=name,
        url=f"https://{name}.crm4.dynamics.com",
        kind=kind,
        tenant_id="00000000-0000-0000-0000-000000000001",
        authority="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001",
        team=team,
    )


@pytest.fixture
def world(api_world: Any, monkeypatch: pytest.MonkeyPatch) -> World:
    """tests/support/api.py's world, plus one promotion in each state an action needs and a spare pipeline
    nobody promoted through (a stage or pipeline with history is never deleted)."""
    from deployments.services import pipeline_create, stage_add

    users, objects = api_world.users, api_world.objects
    maker, approver = users["maker"], users["approver"]
    team = objects["pipeline"].team
    # 1.1.0.0 deployed to test over 1.0.0.0: rollbacks.
    deployed = _succeed(
        Promotion.objects.get(pk=api_world.ids["promotion"]), approver=approver, previous_version="1.0.0.0"
    )
    # 1.0.0.0 into test, failed: retry.
    failed = _fail(
        workflow.promotion_request(
            version=objects["versions"]["1.0"],
            stage=objects["stages"]["test"],
            requested_by=maker,
            context=_ctx(maker),
            comment="Back to 1.0",
        ),
        approver=approver,
    )
    # 1.1.0.0 into prod, waiting for its approvals: approve, reject, cancel.
    pending = workflow.promotion_request(
        version=objects["versions"]["1.1"],
        stage=Stage.objects.get(pk=api_world.ids["stage_prod"]),
        requested_by=maker,
        context=_ctx(maker),
        comment="Release 1.1",
    )
    workflow.promotion_preflight_finished(
        promotion_id=pending.pk, status="passed", result={"checks": []}, context=AuditContext.system()
    )
    system = AuditContext.system()
    spare = pipeline_create(
        name="Spare", team=team, development_environment=_environment("spare-dev", team, "development"), context=system
    )
    first = stage_add(pipeline=spare, name="first", target_environment=_environment("spare-a", team), context=system)
    second = stage_add(pipeline=spare, name="second", target_environment=_environment("spare-b", team), context=system)
    empty = pipeline_create(
        name="Empty", team=team, development_environment=_environment("empty-dev", team, "development"), context=system
    )
    # Environments no job is queued for (one active job per environment), and a free development one.
    _environment("unused-dev", team, "development")
    _environment("unused-target", team)
    quiet = _environment("quiet", team)
    # The team's solution is kept in Git: change, build and unbind act on this binding (nothing calls Git here).
    SourceBinding.objects.create(
        solution_id=api_world.ids["solution"], url="https://git.example.com/contoso/solutions.git"
    )
    # The plan reads the target best effort; these environments do not exist, so the inventory it is.
    monkeypatch.setattr("deployments.rollback._plan_client", lambda promotion, factory: None)
    # Denied attempts are audited in a transaction of their own, which cannot open inside a cell's savepoint.
    for module in ("alm_portal.api.exceptions", "alm_portal.refusals"):
        monkeypatch.setattr(f"{module}.record_outcome", lambda **kwargs: None)
    ids = {
        **api_world.ids,
        "deployed": deployed.pk,
        "failed": failed.pk,
        "pending": pending.pk,
        "spare": spare.pk,
        "spare_first": first.pk,
        "spare_second": second.pk,
        "empty": empty.pk,
        "quiet": quiet.pk,
        "team": team.pk,
        "maker_user": maker.pk,
        "spare_token": api_world.ids["token"],
    }
    return World(users=users, tokens=api_world.tokens, ids=ids, objects=objects)


Body = Callable[[World], dict[str, Any]]


def _none(world: World) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Action:
    """One action: its page (URL name, argument, form body), its API twin (method, path, body) and the audit
    event that shows it happened. `api_expected` states where the API refuses before it looks the object
    up (an endpoint that needs a scope the persona lacks answers 403 where the page answers 404)."""

    event: str
    page: str | None
    page_arg: str | None
    page_body: Body
    api: str | None
    api_body: Body
    expected: dict[str, str]
    api_method: str = "post"
    api_expected: dict[str, str] = field(default_factory=dict)
    api_format: str = "json"
    api_headers: dict[str, str] = field(default_factory=dict)

    def api_expectation(self, persona: str) -> str:
        return self.api_expected.get(persona, self.expected[persona])


def _rollback(strategy: str, expected: dict[str, str]) -> Action:
    confirm = "Success"  # the corpus solution's unique name (uninstalling asks for it typed)

    def page_body(world: World) -> dict[str, Any]:
        return {"strategy": strategy, "confirm": confirm, "comment": "Roll back: the release broke invoicing"}

    def api_body(world: World) -> dict[str, Any]:
        return {"strategy": strategy, "confirm": confirm, "justification": "Roll back: the release broke invoicing"}

    return Action(
        event="promotion.requested",
        page="deployments:promotion-rollback",
        page_arg="deployed",
        page_body=page_body,
        api="/api/v1/promotions/{deployed}/rollback/",
        api_body=api_body,
        expected=expected,
    )


def _corpus(name: str) -> Any:
    from tests.support.api import corpus_file

    return corpus_file(name)


def _upload(world: World) -> dict[str, Any]:
    return {"file": _corpus("IncidentReporting_1_0_0_5_managed.zip"), "team": world.ids["team"]}


def _settings_file(world: World) -> dict[str, Any]:
    import io
    import json

    stream = io.BytesIO(json.dumps({"EnvironmentVariables": [], "ConnectionReferences": []}).encode())
    stream.name = "settings.json"
    return {"file": stream, "etag": ""}


def _settings_rows(world: World) -> dict[str, Any]:
    rows = {"ev-TOTAL_FORMS": "1", "ev-INITIAL_FORMS": "0", "cr-TOTAL_FORMS": "0", "cr-INITIAL_FORMS": "0"}
    return {**rows, "ev-0-SchemaName": "contoso_ApiUrl", "ev-0-Value": "https://api.contoso.example", "etag": ""}


def _stage_form(world: World, *, name: str, environment: str) -> dict[str, Any]:
    from environments.models import Environment

    return {
        "name": name,
        "target_environment": Environment.objects.get(name=environment).pk,
        "required_approvals": 0,
        "import_mode": "upgrade",
        "requires_previous_stage": "on",
        "activate_flows_and_plugins": "on",
    }


def _pipeline_form(world: World, *, name: str, dev: str) -> dict[str, Any]:
    from environments.models import Environment

    return {"name": name, "team": world.ids["team"], "development_environment": Environment.objects.get(name=dev).pk}


def _environment_fields(world: World, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "url": f"https://{name}.crm4.dynamics.com",
        "kind": "test",
        "tenant_id": "00000000-0000-0000-0000-000000000001",
        "team": world.ids["team"],
        "description": "Registered by the action matrix",
        "is_active": True,
    }


CREDENTIAL = {
    "client_id": "11111111-2222-3333-4444-555555555555",
    "credential_type": "secret",
    "client_secret": "s3cret-value~1",
}

# Who may do what (docs/security.md): the outcome each persona's valid request must have.
D, R, H = DONE, REFUSED, HIDDEN
TEAM_REQUESTS = {"maker": D, "maker2": H, "approver": D, "admin": D, "auditor": R}
ADMIN_ONLY = {"maker": R, "maker2": H, "approver": R, "admin": D, "auditor": R}
ROLLBACKS = {
    RollbackStrategy.REVERSION_UPGRADE: TEAM_REQUESTS,
    RollbackStrategy.REVERSION_UPDATE: TEAM_REQUESTS,
    RollbackStrategy.UNINSTALL_REINSTALL: ADMIN_ONLY,
    RollbackStrategy.HOLDING_APPLY: ADMIN_ONLY,
    RollbackStrategy.HOLDING_REMOVE: ADMIN_ONLY,
}
# The requester and admins; never another team; auditors never.
REQUESTER_OR_ADMIN = {"maker": D, "maker2": H, "approver": R, "admin": D, "auditor": R}
# Approvers named on the stage, never the requester (maker); the admin is not named on it.
NAMED_APPROVER = {"maker": R, "maker2": H, "approver": D, "admin": R, "auditor": R}
# Pipelines, stages, windows, freezes, settings, environments: admins, refused before any lookup.
ADMINS = {"maker": R, "maker2": R, "approver": R, "admin": D, "auditor": R}
# An admin's action on a team's environment: the page looks the environment up first (another team's is not
# found), the API refuses a token without the admin scope before any lookup.
TEAM_ADMINS = {"maker": R, "maker2": H, "approver": R, "admin": D, "auditor": R}
EVERYONE = {"maker": D, "maker2": D, "approver": D, "admin": D, "auditor": D}
# Tokens without the scope an endpoint needs are refused before the object is looked up.
SCOPE_FIRST = {"maker2": R}

ACTIONS: dict[str, Action] = {
    **{f"rollback:{strategy}": _rollback(strategy, expected) for strategy, expected in ROLLBACKS.items()},
    "approve": Action(
        event="promotion.approval_recorded",
        page="deployments:promotion-approve",
        page_arg="pending",
        page_body=lambda w: {"comment": "Checked the diff"},
        api="/api/v1/promotions/{pending}/approve/",
        api_body=lambda w: {"comment": "Checked the diff"},
        expected=NAMED_APPROVER,
        api_expected=SCOPE_FIRST,
    ),
    "reject": Action(
        event="promotion.rejected",
        page="deployments:promotion-reject",
        page_arg="pending",
        page_body=lambda w: {"comment": "Not this week"},
        api="/api/v1/promotions/{pending}/reject/",
        api_body=lambda w: {"comment": "Not this week"},
        expected=NAMED_APPROVER,
        api_expected=SCOPE_FIRST,
    ),
    "cancel": Action(
        event="promotion.cancelled",
        page="deployments:promotion-cancel",
        page_arg="pending",
        page_body=lambda w: {"comment": "Superseded by 1.2"},
        api="/api/v1/promotions/{pending}/cancel/",
        api_body=lambda w: {"comment": "Superseded by 1.2"},
        expected=REQUESTER_OR_ADMIN,
    ),
    "retry": Action(
        event="promotion.retried",
        page="deployments:promotion-retry",
        page_arg="failed",
        page_body=lambda w: {"comment": "The target is back"},
        api="/api/v1/promotions/{failed}/retry/",
        api_body=lambda w: {"comment": "The target is back"},
        expected=REQUESTER_OR_ADMIN,
    ),
    "request": Action(
        event="promotion.requested",
        page="deployments:promotion-request",
        page_arg="old_version",
        page_body=lambda w: {"stage": w.ids["stage"], "comment": "Back to 1.0 in test"},
        api="/api/v1/promotions/",
        api_body=lambda w: {"version": w.ids["old_version"], "stage": w.ids["stage"], "justification": "Back to 1.0"},
        expected=TEAM_REQUESTS,
        # The version is in the body, not the URL: an invisible one is "no such version" (400).
        api_expected={"maker2": R},
    ),
    "export": Action(
        event="solution.export_requested",
        page="solutions:solution-export",
        page_arg="solution",
        page_body=lambda w: {"bump": "revision"},
        api="/api/v1/solutions/{solution}/export/",
        api_body=lambda w: {"bump": "revision"},
        expected=TEAM_REQUESTS,
    ),
    "source-bind": Action(
        event="solution.source_bound",
        page="solutions:solution-source-bind",
        page_arg="solution",
        page_body=lambda w: {
            "url": "https://git.example.com/contoso/apps.git",
            "branch": "main",
            "root_folder": "apps",
        },
        api="/api/v1/solutions/{solution}/source/",
        api_method="put",
        api_body=lambda w: {"url": "https://git.example.com/contoso/apps.git", "branch": "main", "root_folder": "apps"},
        expected=TEAM_REQUESTS,
    ),
    "source-build": Action(
        event="solution.build_requested",
        page="solutions:solution-source-build",
        page_arg="solution",
        page_body=lambda w: {"ref": "main"},
        api="/api/v1/solutions/{solution}/source/builds/",
        api_body=lambda w: {"ref": "main"},
        expected=TEAM_REQUESTS,
    ),
    "source-unbind": Action(
        event="solution.source_unbound",
        page="solutions:solution-source-unbind",
        page_arg="solution",
        page_body=_none,
        api="/api/v1/solutions/{solution}/source/",
        api_method="delete",
        api_body=_none,
        expected=TEAM_REQUESTS,
    ),
    "upload": Action(
        event="solution_version.created",
        page="solutions:version-upload",
        page_arg=None,
        page_body=_upload,
        api="/api/v1/versions/upload/",
        api_body=_upload,
        api_format="multipart",
        # The body names Contoso as the new solution's team: not maker2's to choose.
        expected={"maker": D, "maker2": R, "approver": D, "admin": D, "auditor": R},
    ),
    "pipeline-create": Action(
        event="pipeline.created",
        page="deployments:pipeline-create",
        page_arg=None,
        page_body=lambda w: _pipeline_form(w, name="Another", dev="unused-dev"),
        api="/api/v1/pipelines/",
        api_body=lambda w: _pipeline_form(w, name="Another", dev="unused-dev"),
        expected=ADMINS,
    ),
    "pipeline-edit": Action(
        event="pipeline.updated",
        page="deployments:pipeline-edit",
        page_arg="spare",
        page_body=lambda w: {**_pipeline_form(w, name="Spare (renamed)", dev="spare-dev"), "description": "x"},
        api="/api/v1/pipelines/{spare}/",
        api_method="patch",
        api_body=lambda w: {"name": "Spare (renamed)"},
        expected=ADMINS,
    ),
    "pipeline-delete": Action(
        event="pipeline.deleted",
        page="deployments:pipeline-delete",
        page_arg="empty",
        page_body=_none,
        api="/api/v1/pipelines/{empty}/",
        api_method="delete",
        api_body=_none,
        expected=ADMINS,
    ),
    "stage-create": Action(
        event="stage.created",
        page="deployments:stage-create",
        page_arg="spare",
        page_body=lambda w: _stage_form(w, name="third", environment="unused-target"),
        api="/api/v1/pipelines/{spare}/stages/",
        api_body=lambda w: {
            "name": "third",
            "environment": _stage_form(w, name="", environment="unused-target")["target_environment"],
            "required_approvals": 0,
        },
        expected=ADMINS,
    ),
    "stage-edit": Action(
        event="stage.updated",
        page="deployments:stage-edit",
        page_arg="spare_first",
        page_body=lambda w: _stage_form(w, name="first (renamed)", environment="spare-a"),
        api="/api/v1/stages/{spare_first}/",
        api_method="patch",
        api_body=lambda w: {"name": "first (renamed)"},
        expected=ADMINS,
    ),
    "stage-delete": Action(
        event="stage.deleted",
        page="deployments:stage-delete",
        page_arg="spare_second",
        page_body=_none,
        api="/api/v1/stages/{spare_second}/",
        api_method="delete",
        api_body=_none,
        expected=ADMINS,
    ),
    "stage-move": Action(
        event="pipeline.stages_reordered",
        page="deployments:stage-move",
        page_arg="spare_second",
        page_body=lambda w: {"direction": "up"},
        api="/api/v1/pipelines/{spare}/reorder/",
        api_body=lambda w: {"stages": [w.ids["spare_second"], w.ids["spare_first"]]},
        expected=ADMINS,
    ),
    "window-create": Action(
        event="stage_window.created",
        page="deployments:window-create",
        page_arg="stage_prod",
        page_body=lambda w: {"weekdays": [1, 2], "start_time": "08:00", "end_time": "18:00", "time_zone": "UTC"},
        api="/api/v1/stages/{stage_prod}/windows/",
        api_body=lambda w: {"days": [1, 2], "start": "08:00", "end": "18:00", "time_zone": "UTC"},
        expected=ADMINS,
    ),
    "window-edit": Action(
        event="stage_window.updated",
        page="deployments:window-edit",
        page_arg="window",
        page_body=lambda w: (
            {
                f"window-{w.ids['window']}-{name}": value
                for name, value in (("weekdays", [1, 2, 3]), ("start_time", "07:00"), ("end_time", "19:00"))
            }
            | {f"window-{w.ids['window']}-time_zone": "Europe/Berlin"}
        ),
        api="/api/v1/stages/{stage_prod}/windows/{window}/",
        api_method="patch",
        api_body=lambda w: {"days": [1, 2, 3], "start": "07:00", "end": "19:00"},
        expected=ADMINS,
    ),
    "window-delete": Action(
        event="stage_window.deleted",
        page="deployments:window-delete",
        page_arg="window",
        page_body=_none,
        api="/api/v1/stages/{stage_prod}/windows/{window}/",
        api_method="delete",
        api_body=_none,
        expected=ADMINS,
    ),
    "freeze-create": Action(
        event="stage_freeze.created",
        page="deployments:freeze-create",
        page_arg="stage_prod",
        page_body=lambda w: {"starts_at": "2031-12-20T00:00", "ends_at": "2032-01-02T00:00", "reason": "Holidays"},
        api="/api/v1/stages/{stage_prod}/freezes/",
        api_body=lambda w: {"start": "2031-12-20T00:00:00Z", "end": "2032-01-02T00:00:00Z", "reason": "Holidays"},
        expected=ADMINS,
    ),
    "freeze-edit": Action(
        event="stage_freeze.updated",
        page="deployments:freeze-edit",
        page_arg="freeze",
        page_body=lambda w: {
            f"freeze-{w.ids['freeze']}-starts_at": "2031-06-01T00:00",
            f"freeze-{w.ids['freeze']}-ends_at": "2031-06-02T00:00",
            f"freeze-{w.ids['freeze']}-reason": "Moved",
        },
        api="/api/v1/stages/{stage_prod}/freezes/{freeze}/",
        api_method="patch",
        api_body=lambda w: {"start": "2031-06-01T00:00:00Z", "end": "2031-06-02T00:00:00Z", "reason": "Moved"},
        expected=ADMINS,
    ),
    "freeze-delete": Action(
        event="stage_freeze.deleted",
        page="deployments:freeze-delete",
        page_arg="freeze",
        page_body=_none,
        api="/api/v1/stages/{stage_prod}/freezes/{freeze}/",
        api_method="delete",
        api_body=_none,
        expected=ADMINS,
    ),
    "stage-settings": Action(
        event="deployment_settings.updated",
        page="deployments:stage-settings",
        page_arg="stage_prod",
        page_body=_settings_rows,
        api="/api/v1/stages/{stage_prod}/settings/",
        api_method="put",
        api_body=lambda w: {
            "EnvironmentVariables": [{"SchemaName": "contoso_ApiUrl", "Value": "https://api.contoso.example"}],
            "ConnectionReferences": [],
        },
        api_headers={"HTTP_IF_MATCH": '""'},
        expected=ADMINS,
    ),
    "stage-settings-import": Action(
        event="deployment_settings.updated",
        page="deployments:stage-settings-import",
        page_arg="stage_prod",
        page_body=_settings_file,
        api="/api/v1/stages/{stage_prod}/settings/",
        api_method="put",
        api_body=lambda w: {"EnvironmentVariables": [], "ConnectionReferences": []},
        api_headers={"HTTP_IF_MATCH": '""'},
        expected=ADMINS,
    ),
    "environment-register": Action(
        event="environment.created",
        page="environments:register",
        page_arg=None,
        page_body=lambda w: {**_environment_fields(w, "brand-new"), **CREDENTIAL},
        api="/api/v1/environments/",
        api_body=lambda w: {**_environment_fields(w, "brand-new"), **CREDENTIAL},
        expected=ADMINS,
    ),
    "environment-edit": Action(
        event="environment.updated",
        page="environments:edit",
        page_arg="quiet",
        page_body=lambda w: {**_environment_fields(w, "quiet"), "description": "Edited"},
        api="/api/v1/environments/{quiet}/",
        api_method="patch",
        api_body=lambda w: {"description": "Edited"},
        expected=TEAM_ADMINS,
        api_expected=SCOPE_FIRST,
    ),
    "environment-rotate": Action(
        event="credential.added",
        page="environments:rotate",
        page_arg="quiet",
        page_body=lambda w: dict(CREDENTIAL),
        api="/api/v1/environments/{quiet}/",
        api_method="patch",
        api_body=lambda w: dict(CREDENTIAL),
        expected=TEAM_ADMINS,
        api_expected=SCOPE_FIRST,
    ),
    "environment-check": Action(
        event="job.enqueued",
        page="environments:check",
        page_arg="quiet",
        page_body=_none,
        api="/api/v1/environments/{quiet}/check/",
        api_body=_none,
        expected=TEAM_ADMINS,
        api_expected=SCOPE_FIRST,
    ),
    "environment-sync": Action(
        event="job.enqueued",
        page="environments:sync",
        page_arg="quiet",
        page_body=_none,
        api="/api/v1/environments/{quiet}/sync/",
        api_body=_none,
        expected=TEAM_ADMINS,
        api_expected=SCOPE_FIRST,
    ),
    "audit-verify": Action(
        event="job.enqueued",
        page="audit:verify",
        page_arg=None,
        page_body=_none,
        api="/api/v1/audit-events/verification/",
        api_body=_none,
        expected={"maker": R, "maker2": R, "approver": R, "admin": D, "auditor": D},
    ),
    "token-create": Action(
        event="api_token.created",
        page="accounts:api-tokens",
        page_arg=None,
        page_body=lambda w: {"name": "matrix", "scopes": ["read"], "days": 7},
        api="/api/v1/tokens/",
        api_body=lambda w: {"name": "matrix", "scopes": ["read"], "days": 7},
        expected=EVERYONE,
    ),
    "token-revoke": Action(
        event="api_token.revoked",
        page="accounts:api-token-revoke",
        page_arg="spare_token",
        page_body=_none,
        api="/api/v1/tokens/{spare_token}/revoke/",
        api_body=_none,
        # The maker's own token: everyone else is told it does not exist.
        expected={"maker": D, "maker2": H, "approver": H, "admin": H, "auditor": H},
    ),
    "sessions-end": Action(
        event="user.sessions_ended",
        page="accounts:user-sessions-end",
        page_arg="maker_user",
        page_body=_none,
        api=None,
        api_body=_none,
        expected=ADMINS,
    ),
    "entra-link": Action(
        event="user.sso_linked",
        page="accounts:user-entra-link",
        page_arg="maker_user",
        page_body=lambda w: {
            "tenant_id": "00000000-0000-0000-0000-000000000001",
            "object_id": "0a000000-0000-4000-8000-0000000000ff",
        },
        api=None,
        api_body=_none,
        expected=ADMINS,
    ),
}
# Pages that take a POST but change nothing a persona could be refused: signing in and out.
NOT_ACTIONS = {"accounts:login", "accounts:logout"}


def _effect_written(before_seq: int, event: str) -> bool:
    return AuditEvent.objects.filter(seq__gt=before_seq, action=event, outcome="success").exists()


def _last_seq() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def _judge(status: int, before_seq: int, event: str) -> str:
    if status == 404:
        return HIDDEN
    if status >= 500:
        return f"error {status}"
    return DONE if _effect_written(before_seq, event) else REFUSED


def _page_outcome(world: World, action: Action, persona: str) -> str:
    assert action.page is not None
    client = Client()
    client.force_login(world.users[persona])
    args = [world.ids[action.page_arg]] if action.page_arg else []
    with transaction.atomic():
        before = _last_seq()
        response = client.post(reverse(action.page, args=args), action.page_body(world))
        outcome = _judge(response.status_code, before, action.event)
        transaction.set_rollback(True)
    return outcome


def _api_outcome(world: World, action: Action, persona: str) -> str:
    from rest_framework.test import APIClient

    assert action.api is not None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.tokens[persona]}")
    url = action.api.format(**world.ids)
    with transaction.atomic():
        before = _last_seq()
        call = getattr(client, action.api_method)
        response = call(url, action.api_body(world), format=action.api_format, **action.api_headers)
        outcome = _judge(response.status_code, before, action.event)
        transaction.set_rollback(True)
    return outcome


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_the_page_and_the_api_enforce_the_same_rule_with_a_valid_body(world: World, name: str) -> None:
    action = ACTIONS[name]
    failures = []
    for persona in PERSONAS:
        expected = action.expected[persona]
        page = ""
        if action.page is not None:
            got = _page_outcome(world, action, persona)
            if got != expected:
                failures.append(f"page as {persona}: {got}, expected {expected}")
            page = got
        if action.api is not None:
            api_expected = action.api_expectation(persona)
            got = _api_outcome(world, action, persona)
            if got != api_expected:
                failures.append(f"API as {persona}: {got}, expected {api_expected}")
            if action.page is not None and (got == DONE) != (page == DONE):
                failures.append(f"{persona}: the page says {page}, the API {got}")
    assert failures == [], name


def _page_urls(world: World) -> dict[str, str]:
    """Every page URL of the resolver (the API and Django's admin apart), with an object of the world."""
    from django.urls import get_resolver

    from tests.ui.test_pages import PAGES, PUBLIC, _url, _walk

    names = {
        name
        for route, name in _walk(get_resolver().url_patterns)
        if name and not route.startswith(("api/v1/", "admin/"))
    }
    urls = {}
    for name in names:
        if name in PUBLIC:
            urls[name] = reverse(name)
        elif name in PAGES:
            urls[name] = _url(name, PAGES[name][1], world)
    assert set(urls) == names, "pages tests/ui/test_pages.py does not know"
    return urls


def _takes_post(url: str) -> bool:
    """Whether the view behind `url` handles a POST: a class-based view with a post method, or a function
    whose source (decorators included) requires or reads one."""
    import inspect

    from django.urls import resolve

    view = resolve(url).func
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        return hasattr(view_class, "post")
    source = inspect.getsource(inspect.unwrap(view))
    return any(mark in source for mark in ("@require_POST", "request.POST", 'request.method == "POST"'))


def test_every_page_that_takes_a_post_has_an_action_here(world: World) -> None:
    """Enumerated from the URL resolver: every page whose view takes a POST needs an entry in ACTIONS, with
    a valid body and every persona's outcome."""
    takes_post = {name for name, url in _page_urls(world).items() if _takes_post(url)}
    covered = {action.page for action in ACTIONS.values() if action.page}
    assert sorted(takes_post - covered - NOT_ACTIONS) == [], "pages that take a POST without an action here"
    assert sorted(covered - takes_post) == [], "actions for pages that take no POST"
    for name, action in ACTIONS.items():
        assert set(action.expected) == set(PERSONAS), name


def test_a_freeze_override_needs_the_admin_scope_whichever_way_it_is_asked(world: World, token_for: Any) -> None:
    """The API-only option of approving: the service checks the scope, not the view (it used to be the view)."""
    from rest_framework.test import APIClient

    from alm_portal.accounts.models import ApiToken
    from alm_portal.errors import ScopeInsufficient

    admin = world.users["admin"]
    approve_only = token_for(admin, scopes=["read", "approve"], name="approve-only")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {approve_only}")
    body = {"override_freeze": True, "reason": "Hotfix for a payroll outage"}
    url = f"/api/v1/promotions/{world.ids['pending']}/approve/"

    refused = client.post(url, body, format="json")
    full = APIClient()
    full.credentials(HTTP_AUTHORIZATION=f"Bearer {world.tokens['admin']}")
    allowed_through = full.post(url, body, format="json")

    assert refused.status_code == 403 and refused.json()["error"]["code"] == "scope_insufficient"
    # With the admin scope the scope check passes; no freeze covers this promotion, so that is what answers.
    assert allowed_through.status_code == 409 and allowed_through.json()["error"]["code"] == "not_frozen"
    token = ApiToken.objects.get(name="approve-only")
    with pytest.raises(ScopeInsufficient):
        workflow.promotion_override_freeze(
            promotion=Promotion.objects.get(pk=world.ids["pending"]),
            user=admin,
            reason="Hotfix",
            context=_ctx(admin),
            token=token,
        )
