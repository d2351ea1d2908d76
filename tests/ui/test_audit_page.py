"""The audit page: filters by who, what, object, time and outcome; before/after; last verification."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alm_portal.jobs.models import Job

pytestmark = pytest.mark.django_db


def _page(world: Any, **query: str) -> Any:
    client = Client()
    client.force_login(world.users["auditor"])
    return client.get(reverse("audit:timeline"), query)


def _actions(response: Any) -> list[str]:
    return [event.action for event in response.context["page"].object_list]


def test_filters_by_action_object_and_who(api_world: Any) -> None:
    promotion = str(api_world.ids["promotion"])
    response = _page(api_world, what="promotion", object_type="deployments.promotion", object_id=promotion)
    assert _actions(response) and all(a.startswith("promotion.") for a in _actions(response))
    by_maker = _page(api_world, who="maker")
    assert by_maker.context["page"].object_list
    assert {event.actor_id for event in by_maker.context["page"].object_list} == {api_world.users["maker"].pk}
    nobody = _page(api_world, who="nobody-here")
    assert "No user is called nobody-here." in nobody.content.decode() and not _actions(nobody)


def test_filters_by_outcome_and_time(api_world: Any) -> None:
    client = Client()
    client.force_login(api_world.users["maker"])
    client.get(reverse("audit:timeline"))  # a maker is refused; nothing is recorded for a page GET
    assert _actions(_page(api_world, outcome="denied")) == []
    today = timezone.now().date()
    assert _actions(_page(api_world, **{"from": str(today)}))
    assert _actions(_page(api_world, to=str(today - timedelta(days=2)))) == []


def test_shows_before_after_and_the_empty_verification_state(api_world: Any) -> None:
    body = _page(api_world, what="promotion.requested").content.decode()
    # Field by field, each with its value before and after (not a printed Python dict).
    assert '<table class="changes">' in body and '<th scope="col">Before</th>' in body and "{&#x27;" not in body
    assert "The chain has not been verified yet." in body


def test_exports_carry_the_filters_and_stream_for_the_session(api_world: Any) -> None:
    response = _page(api_world, what="promotion", outcome="success", who="maker")
    csv_url = response.context["export_csv"]
    assert "action=promotion" in csv_url and "outcome=success" in csv_url
    assert f"actor={api_world.users['maker'].pk}" in csv_url
    client = Client()
    client.force_login(api_world.users["auditor"])
    exported = client.get(csv_url)
    assert exported.status_code == 200 and exported["Content-Type"].startswith("text/csv")
    assert "promotion.requested" in b"".join(exported.streaming_content).decode()


def test_verify_now_queues_a_job_and_says_so(api_world: Any) -> None:
    client = Client()
    client.force_login(api_world.users["auditor"])
    response = client.post(reverse("audit:verify"), follow=True)
    job = Job.objects.get(kind="audit_verify")
    assert f"Verification queued (job {job.pk})" in response.content.decode()
    assert job.created_by == api_world.users["auditor"]
