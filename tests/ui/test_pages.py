"""Every page of the web UI × every persona: allowed or forbidden, enumerated from the URL patterns
of the UI's url modules (a new page without an expectation here fails the enumeration test)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from alm_portal import urls as root_urls
from alm_portal.accounts import urls as account_urls
from alm_portal.accounts.models import ApiToken
from alm_portal.audit import urls as audit_urls
from deployments import urls as deployment_urls

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "maker", "maker2", "approver", "admin", "auditor")
ALL_OK = dict.fromkeys(PERSONAS[1:], 200)
TEAM_OK = {"maker": 200, "maker2": 404, "approver": 200, "admin": 200, "auditor": 200}
# POST actions: refusals come back as a redirect to the page with the reason; unseen objects are 404.
ADMIN_ONLY = {"maker": 403, "maker2": 403, "approver": 403, "admin": 200, "auditor": 403}
ACTION = {"maker": 302, "maker2": 404, "approver": 302, "admin": 302, "auditor": 403}
# The pipeline editor is for admins: everyone else is refused before any object is looked up.
ADMIN_ACTION = {**ADMIN_ONLY, "admin": 302}

# (namespace:name) -> (method, argument kind, expected status per signed-in persona)
PAGES: dict[str, tuple[str, str | None, dict[str, int]]] = {
    "home": ("get", None, ALL_OK),
    "deployments:promotion-list": ("get", None, ALL_OK),
    "deployments:promotion-detail": ("get", "promotion", TEAM_OK),
    "deployments:promotion-progress": ("get", "promotion", TEAM_OK),
    "deployments:promotion-approve": ("post", "promotion", ACTION),
    "deployments:promotion-reject": ("post", "promotion", ACTION),
    "deployments:promotion-cancel": ("post", "promotion", ACTION),
    "deployments:promotion-retry": ("post", "promotion", ACTION),
    "deployments:promotion-rollback": ("post", "promotion", ACTION),
    "deployments:promotion-request": (
        "get",
        "version",
        {"maker": 200, "maker2": 404, "approver": 200, "admin": 200, "auditor": 403},
    ),
    "deployments:promotion-request-preview": (
        "get",
        "version",
        {"maker": 200, "maker2": 404, "approver": 200, "admin": 200, "auditor": 403},
    ),
    "deployments:approvals-inbox": (
        "get",
        None,
        {"maker": 403, "maker2": 403, "approver": 200, "admin": 200, "auditor": 403},
    ),
    "deployments:pipeline-list": ("get", None, ALL_OK),
    "deployments:metrics": ("get", None, ALL_OK),
    "deployments:pipeline-detail": ("get", "pipeline", TEAM_OK),
    "deployments:running-jobs": ("get", None, ALL_OK),
    "deployments:pipeline-create": ("get", None, ADMIN_ONLY),
    "deployments:pipeline-edit": ("get", "pipeline", ADMIN_ONLY),
    "deployments:pipeline-delete": ("get", "pipeline", ADMIN_ONLY),
    "deployments:stage-create": ("get", "pipeline", ADMIN_ONLY),
    "deployments:stage-edit": ("get", "stage", ADMIN_ONLY),
    "deployments:stage-delete": ("post", "stage", ADMIN_ACTION),
    "deployments:stage-move": ("post", "stage", ADMIN_ACTION),
    # Invalid input (the matrix posts a comment) shows the stage page again with the errors.
    "deployments:window-create": ("post", "stage", ADMIN_ONLY),
    "deployments:freeze-create": ("post", "stage", ADMIN_ONLY),
    "deployments:window-edit": ("post", "window", ADMIN_ONLY),
    "deployments:freeze-edit": ("post", "freeze", ADMIN_ONLY),
    "deployments:window-delete": ("post", "window", ADMIN_ACTION),
    "deployments:freeze-delete": ("post", "freeze", ADMIN_ACTION),
    "deployments:stage-settings": ("get", "stage", ADMIN_ONLY),
    "deployments:stage-settings-import": ("post", "stage", ADMIN_ONLY),
    "deployments:stage-settings-export": ("get", "stage", ADMIN_ONLY),
    "audit:timeline": ("get", None, {"maker": 403, "maker2": 403, "approver": 403, "admin": 200, "auditor": 200}),
    "audit:verify": ("post", None, {"maker": 403, "maker2": 403, "approver": 403, "admin": 302, "auditor": 302}),
    "accounts:api-tokens": ("get", None, ALL_OK),
    "accounts:api-token-revoke": (
        "post",
        "token",  # the maker's own token: everyone else is told it does not exist
        {"maker": 302, "maker2": 404, "approver": 404, "admin": 404, "auditor": 404},
    ),
    "accounts:user-list": ("get", None, ADMIN_ONLY),
    "accounts:user-sessions": ("get", "user", ADMIN_ONLY),
    "accounts:user-sessions-end": ("post", "user", {**ADMIN_ONLY, "admin": 302}),
}
# Sign-in and sign-out serve anonymous visitors; tests/ui/test_sso.py and tests/accounts/ cover them.
SIGN_IN_PAGES = {"accounts:login", "accounts:sso-login", "accounts:sso-callback", "accounts:logout"}


def _names() -> set[str]:
    names = {f"deployments:{p.name}" for p in deployment_urls.urlpatterns if isinstance(p, URLPattern)}
    names |= {f"audit:{p.name}" for p in audit_urls.urlpatterns if isinstance(p, URLPattern)}
    names |= {p.name for p in root_urls.urlpatterns if isinstance(p, URLPattern) and p.name == "home"}
    names |= {f"accounts:{p.name}" for p in account_urls.urlpatterns if isinstance(p, URLPattern)} - SIGN_IN_PAGES
    return names


def test_every_ui_page_has_an_expectation_per_persona() -> None:
    assert _names() == set(PAGES)
    for name, (_, _, expected) in PAGES.items():
        assert set(expected) == set(PERSONAS[1:]), name


def _url(name: str, arg: str | None, world: Any) -> str:
    if arg is None:
        return reverse(name)
    if arg == "user":
        return reverse(name, args=[world.users["maker"].pk])
    if arg == "token":
        return reverse(name, args=[ApiToken.objects.get(user=world.users["maker"], name="maker-token").pk])
    key = {
        "promotion": "promotion",
        "version": "version",
        "pipeline": "pipeline",
        "stage": "stage_prod",
        "window": "window",
        "freeze": "freeze",
    }[arg]
    return reverse(name, args=[world.ids[key]])


def _client(world: Any, persona: str) -> Client:
    client = Client()
    if persona != "anonymous":
        client.force_login(world.users[persona])
    return client


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_allows_or_forbids_by_role(api_world: Any, name: str, persona: str) -> None:
    method, arg, expected = PAGES[name]
    url = _url(name, arg, api_world)
    client = _client(api_world, persona)
    data = {"comment": "Looks fine", "strategy": "reversion_update"} if method == "post" else None
    response = getattr(client, method)(url, data) if data else getattr(client, method)(url)
    if persona == "anonymous":
        assert response.status_code == 302
        assert re.search(r"/accounts/login/", response["Location"])
        return
    assert response.status_code == expected[persona], (name, persona, response.status_code)
    if response.status_code in (403, 404):
        body = response.content.decode()
        assert "Traceback" not in body


@pytest.mark.parametrize("name", [name for name, (method, _, _) in PAGES.items() if method == "post"])
def test_actions_refuse_get(api_world: Any, name: str) -> None:
    response = _client(api_world, "admin").get(_url(name, PAGES[name][1], api_world))
    assert response.status_code == 405
