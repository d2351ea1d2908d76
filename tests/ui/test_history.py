"""Every object page has a history tab: the object's audit events and those naming it as related, paged,
escaped, with before/after values left to the audit page (linked for auditors and admins only)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse

from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.history import HISTORY_PAGE_SIZE
from alm_portal.audit.services import record

pytestmark = pytest.mark.django_db

OBJECT_PAGES = {
    "environments:detail": ("environment", "environments.environment"),
    "solutions:solution-detail": ("solution", "solutions.solution"),
    "solutions:version-detail": ("version", "solutions.solutionversion"),
    "deployments:promotion-detail": ("promotion", "deployments.promotion"),
    "deployments:pipeline-detail": ("pipeline", "deployments.pipeline"),
}


def _as(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _record(world: Any, object_type: str, key: str, *, action: str, message: str = "", related: bool = False) -> None:
    reference = ObjectRef(type=object_type, id=str(world.ids[key]), repr=f"{key} {world.ids[key]}")
    other = ObjectRef(type="tests.thing", id="1", repr="a thing")
    with transaction.atomic():
        record(
            context=AuditContext.for_user(world.users["admin"], auth_method="session", request_id="req-history"),
            action=action,
            target=other if related else reference,
            related=reference if related else None,
            after={"name": "new"},
            message=message,
        )


@pytest.mark.parametrize("name", sorted(OBJECT_PAGES))
def test_the_history_tab_lists_the_objects_events_and_related_ones(api_world: Any, name: str) -> None:
    key, object_type = OBJECT_PAGES[name]
    _record(api_world, object_type, key, action="thing.renamed")
    _record(api_world, object_type, key, action="thing.noticed", related=True)
    response = _as(api_world.users["maker"]).get(reverse(name, args=[api_world.ids[key]]))
    assert response.status_code == 200
    actions = [event["action"] for event in response.context["history"].object_list]
    assert actions[:2] == ["thing.noticed", "thing.renamed"]
    assert response.context["history"].object_list[1]["changed"] == ["name"]
    body = response.content.decode()
    assert 'id="history"' in body and 'href="#history"' in body
    assert response.context["history_audit_link"] == ""  # makers do not read the audit log


def test_history_is_escaped(api_world: Any) -> None:
    _record(api_world, "environments.environment", "environment", action="x.y", message="<script>alert(1)</script>")
    body = _as(api_world.users["admin"]).get(reverse("environments:detail", args=[api_world.ids["environment"]]))
    text = body.content.decode()
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_history_pages_and_auditors_get_a_link_to_the_full_events(api_world: Any) -> None:
    for index in range(HISTORY_PAGE_SIZE + 3):
        _record(api_world, "deployments.pipeline", "pipeline", action=f"pipeline.touched{index}")
    url = reverse("deployments:pipeline-detail", args=[api_world.ids["pipeline"]])
    client = _as(api_world.users["auditor"])
    first = client.get(url)
    assert len(first.context["history"].object_list) == HISTORY_PAGE_SIZE
    assert "history_page=2#history" in first.content.decode()
    second = client.get(url, {"history_page": 2})
    assert second.context["history"].number == 2 and second.context["history"].object_list
    link = first.context["history_audit_link"]
    assert link.startswith(reverse("audit:timeline")) and f"object_id={api_world.ids['pipeline']}" in link


def test_an_object_without_events_says_where_they_will_appear(api_world: Any) -> None:
    quiet = api_world.objects["environments"]["fabrikam"]  # created without a service: nothing audited
    response = _as(api_world.users["admin"]).get(reverse("environments:detail", args=[quiet.pk]))
    assert response.context["history"].paginator.count == 0
    assert "Nothing recorded about this yet." in response.content.decode()
