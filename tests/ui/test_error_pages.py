"""Error pages say what happened in words, never with a stack trace, and carry the CSP; pages are
keyboard-friendly (skip link, labelled fields) and lists say what to do next when they are empty."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _as(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _no_internals(body: str) -> None:
    for leak in ("Traceback", 'File "', "Using the URLconf", "django.", "DEBUG"):
        assert leak not in body, leak


def test_a_missing_page_is_a_plain_404(api_world: Any) -> None:
    response = _as(api_world.users["maker"]).get("/no/such/page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "Nothing here" in body and "Back to the dashboard" in body
    _no_internals(body)


def test_a_refusal_says_why_in_words(api_world: Any) -> None:
    response = _as(api_world.users["maker"]).get(reverse("deployments:approvals-inbox"))
    assert response.status_code == 403
    body = response.content.decode()
    assert "The approvals inbox is for approvers and admins." in body
    assert "Content-Security-Policy" in response
    _no_internals(body)


def test_a_crash_shows_the_500_page_without_details(api_world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments import dashboard

    def explode(**_: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(dashboard, "running_jobs", explode)
    client = _as(api_world.users["maker"])
    client.raise_request_exception = False
    response = client.get(reverse("deployments:running-jobs"))
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong" in body and "secret internal detail" not in body
    assert "<script" not in body
    _no_internals(body)


def test_every_page_offers_a_skip_link_to_the_content(api_world: Any) -> None:
    body = _as(api_world.users["maker"]).get(reverse("home")).content.decode()
    assert '<a class="skip-link" href="#main">' in body and '<main class="container" id="main"' in body


@pytest.mark.parametrize(
    "name, arg",
    [
        ("home", None),
        ("solutions:solution-list", None),
        ("deployments:promotion-list", None),
        ("deployments:metrics", None),
        ("deployments:promotion-request", "version"),
        ("deployments:promotion-detail", "promotion"),
        ("environments:list", None),
    ],
)
def test_form_fields_have_labels(api_world: Any, name: str, arg: str | None) -> None:
    url = reverse(name, args=[api_world.ids[arg]]) if arg else reverse(name)
    body = _as(api_world.users["admin"]).get(url).content.decode()
    labelled = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', body))
    for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", body):
        if re.search(r'type="(hidden|submit)"', tag):
            continue
        field_id = re.search(r'\bid="([^"]+)"', tag)
        wrapped = False
        if field_id is None:
            # A field without an id must sit inside its <label>.
            position = body.index(tag)
            wrapped = body.rfind("<label", 0, position) > body.rfind("</label>", 0, position)
        assert wrapped or (field_id is not None and field_id[1] in labelled), (name, tag)


def test_empty_lists_say_what_to_do_next(api_world: Any, make_user: Any) -> None:
    loner = _as(make_user("loner", "maker"))
    assert "ask an admin to register your team" in loner.get(reverse("environments:list")).content.decode()
    assert "Solutions appear once a maker of your team uploads one" not in (
        loner.get(reverse("solutions:solution-list")).content.decode()
    )  # a maker may upload: the page says how instead
    assert "Upload a solution zip" in loner.get(reverse("solutions:solution-list")).content.decode()
    auditor = _as(api_world.users["auditor"])
    body = auditor.get(reverse("solutions:solution-list"), {"q": "nothing-like-this"}).content.decode()
    assert "No solution matches" in body
