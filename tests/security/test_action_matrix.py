"""Every action a page can POST, as every persona, through the page and through the API, with a VALID body.

The read matrices (tests/ui/test_pages.py, tests/api/test_authorization_matrix.py) send empty or
placeholder bodies: a refusal then looks the same as a validation error, and a page answers a redirect
whether the action happened or not. Here every cell sends what the action needs to succeed, and the
outcome is judged by its effect, not by its status code:

- "done": the action's own audit event was written (the change happened);
- "refused": it answered, and nothing was written (403, or a page's redirect with the refusal in words);
- "hidden": 404, the object is not even visible to the persona.

A page and its API twin must have the same outcome for every persona: one rule, enforced in the services
(or accounts/policy.py), whichever interface asks. Each cell runs in a savepoint that is rolled back.

The list of actions is checked against the URL resolver: every page that accepts a POST has an entry.
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
from deployments.models import Promotion

pytestmark = [pytest.mark.django_db]

PERSONAS = ("maker", "maker2", "approver", "admin", "auditor")
DONE, REFUSED, HIDDEN = "done", "refused", "hidden"


@dataclass
class World:
    users: dict[str, Any]
    tokens: dict[str, str]
    ids: dict[str, int]
    objects: dict[str, Any] = field(default_factory=dict)


def _succeed(promotion: Promotion, *, approver: Any, previous_version: str) -> Promotion:
    """Drive a requested promotion to succeeded through the state machine, as the runner would."""
    system = AuditContext.system()
    workflow.promotion_preflight_finished(
        promotion_id=promotion.pk, status="passed", result={"checks": []}, context=system
    )
    approved = AuditContext.for_user(approver, auth_method="session")
    workflow.promotion_approve(promotion=promotion, user=approver, comment="fine", context=approved)
    promotion.refresh_from_db()
    assert promotion.status == "queued", promotion.status
    workflow.promotion_mark_running(
        promotion_id=promotion.pk, job_id=promotion.run_job_id, previous_version=previous_version, context=system
    )
    workflow.promotion_mark_succeeded(promotion_id=promotion.pk, result={}, context=system)
    promotion.refresh_from_db()
    return promotion


@pytest.fixture
def world(api_world: Any, monkeypatch: pytest.MonkeyPatch) -> World:
    """tests/support/api.py's world, with 1.1.0.0 deployed to test over 1.0.0.0: a rollback can be asked."""
    deployed = Promotion.objects.get(pk=api_world.ids["promotion"])
    _succeed(deployed, approver=api_world.users["approver"], previous_version="1.0.0.0")
    # The plan reads the target best effort; these environments do not exist, so the inventory it is.
    monkeypatch.setattr("deployments.rollback._plan_client", lambda promotion, factory: None)
    # Denied attempts are audited in a transaction of their own, which cannot open inside a cell's savepoint.
    for module in ("alm_portal.api.exceptions", "deployments.views"):
        monkeypatch.setattr(f"{module}.record_outcome", lambda **kwargs: None)
    ids = {**api_world.ids, "deployed": deployed.pk}
    return World(users=api_world.users, tokens=api_world.tokens, ids=ids, objects=api_world.objects)


@dataclass(frozen=True)
class Action:
    """One action: its page (URL name, argument, form body), its API twin (path, JSON body) and the audit
    event that shows it happened."""

    event: str
    page: str | None
    page_arg: str | None
    page_body: Callable[[World], dict[str, Any]]
    api: str | None
    api_body: Callable[[World], dict[str, Any]]
    expected: dict[str, str]


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


# Makers and approvers of the solution's team roll back with the re-versioning strategies; the strategies
# that delete data or finish/remove a holding solution are admin-only; auditors change nothing.
TEAM_REQUESTS = {"maker": DONE, "maker2": HIDDEN, "approver": DONE, "admin": DONE, "auditor": REFUSED}
ADMIN_ONLY = {"maker": REFUSED, "maker2": HIDDEN, "approver": REFUSED, "admin": DONE, "auditor": REFUSED}
ROLLBACKS = {
    RollbackStrategy.REVERSION_UPGRADE: TEAM_REQUESTS,
    RollbackStrategy.REVERSION_UPDATE: TEAM_REQUESTS,
    RollbackStrategy.UNINSTALL_REINSTALL: ADMIN_ONLY,
    RollbackStrategy.HOLDING_APPLY: ADMIN_ONLY,
    RollbackStrategy.HOLDING_REMOVE: ADMIN_ONLY,
}

ACTIONS: dict[str, Action] = {
    **{f"rollback:{strategy}": _rollback(strategy, expected) for strategy, expected in ROLLBACKS.items()},
}


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
    with transaction.atomic():
        before = _last_seq()
        response = client.post(action.api.format(**world.ids), action.api_body(world), format="json")
        outcome = _judge(response.status_code, before, action.event)
        transaction.set_rollback(True)
    return outcome


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_the_page_and_the_api_enforce_the_same_rule_with_a_valid_body(world: World, name: str) -> None:
    action = ACTIONS[name]
    failures = []
    for persona in PERSONAS:
        expected = action.expected[persona]
        if action.page is not None:
            got = _page_outcome(world, action, persona)
            if got != expected:
                failures.append(f"page as {persona}: {got}, expected {expected}")
        if action.api is not None:
            got = _api_outcome(world, action, persona)
            if got != expected:
                failures.append(f"API as {persona}: {got}, expected {expected}")
    assert failures == [], name
