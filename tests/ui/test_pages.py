"""Every page of the web UI × every persona: allowed or forbidden, enumerated from the project's URL
resolver (a new page without an expectation here, in PAGES or PUBLIC, fails the enumeration test).

PAGES are the signed-in pages (anonymous is sent to the sign-in page); PUBLIC are the few that answer
without a session. Pages never accept an API token: a bearer token alone is anonymous there.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from alm_portal.accounts.models import ApiToken

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "maker", "maker2", "approver", "admin", "auditor")
ALL_OK = dict.fromkeys(PERSONAS[1:], 200)
TEAM_OK = {"maker": 200, "maker2": 404, "approver": 200, "admin": 200, "auditor": 200}
ADMIN_ONLY = {"maker": 403, "maker2": 403, "approver": 403, "admin": 200, "auditor": 403}
# POST actions: refusals come back as a redirect to the page with the reason; unseen objects are 404.
ACTION = {"maker": 302, "maker2": 404, "approver": 302, "admin": 302, "auditor": 403}
# The pipeline editor is for admins: everyone else is refused before any object is looked up.
ADMIN_ACTION = {**ADMIN_ONLY, "admin": 302}
# Admin-only actions on a team's object: other teams do not see it at all.
TEAM_ADMIN_ACTION = {"maker": 403, "maker2": 404, "approver": 403, "admin": 302, "auditor": 403}

# (namespace:name) -> (method, argument kind, expected status per signed-in persona)
PAGES: dict[str, tuple[str, str | None, dict[str, int]]] = {
    "home": ("get", None, ALL_OK),
    "deployments:promotion-list": ("get", None, ALL_OK),
    "deployments:promotion-detail": ("get", "promotion", TEAM_OK),
    "deployments:promotion-progress": ("get", "promotion", TEAM_OK),
    "deployments:promotion-source-diff": ("get", "promotion", TEAM_OK),
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
    "audit:verification": ("get", None, {"maker": 403, "maker2": 403, "approver": 403, "admin": 200, "auditor": 200}),
    "environments:list": ("get", None, ALL_OK),
    "environments:register": ("get", None, ADMIN_ONLY),
    "environments:detail": ("get", "environment", TEAM_OK),
    "environments:edit": ("get", "environment", {**TEAM_ADMIN_ACTION, "admin": 200}),
    "environments:rotate": ("post", "environment", {**TEAM_ADMIN_ACTION, "admin": 400}),
    "environments:check": ("post", "environment", TEAM_ADMIN_ACTION),
    "environments:sync": ("post", "environment", TEAM_ADMIN_ACTION),
    "solutions:solution-list": ("get", None, ALL_OK),
    "solutions:solution-detail": ("get", "solution", TEAM_OK),
    "solutions:solution-export": ("post", "solution", ACTION),
    "solutions:solution-exports": ("get", "solution", TEAM_OK),
    # An empty form is shown again with its reasons (400), on the solution's page.
    "solutions:solution-source-bind": ("post", "solution", {**ACTION, "maker": 400, "approver": 400, "admin": 400}),
    "solutions:solution-source-build": ("post", "solution", {**ACTION, "maker": 400, "approver": 400, "admin": 400}),
    "solutions:solution-source-unbind": ("post", "solution", ACTION),
    "solutions:version-upload": ("get", None, {**ALL_OK, "auditor": 403}),
    "solutions:version-detail": ("get", "version", TEAM_OK),
    # Only turns the compare form into a diff URL; the diff page decides who sees what.
    "solutions:version-compare": ("get", "version", dict.fromkeys(PERSONAS[1:], 302)),
    "solutions:version-diff": ("get", "version-pair", TEAM_OK),
    "accounts:api-tokens": ("get", None, ALL_OK),
    "accounts:api-token-revoke": (
        "post",
        "token",  # the maker's own token: everyone else is told it does not exist
        {"maker": 302, "maker2": 404, "approver": 404, "admin": 404, "auditor": 404},
    ),
    "accounts:user-list": ("get", None, ADMIN_ONLY),
    "accounts:user-sessions": ("get", "user", ADMIN_ONLY),
    "accounts:user-sessions-end": ("post", "user", {**ADMIN_ONLY, "admin": 302}),
    # An empty body is refused with the form again (400), what was typed kept beside its reasons.
    "accounts:user-entra-link": ("post", "user", {**ADMIN_ONLY, "admin": 400}),
}

# Pages that answer without a session: (method, status for anonymous). Sign-in and sign-out are covered
# in depth by tests/ui/test_sso.py and tests/accounts/.
PUBLIC: dict[str, tuple[str, int]] = {
    "accounts:login": ("get", 200),
    "accounts:logout": ("post", 302),
    "accounts:sso-login": ("get", 404),  # single sign-on is not configured in the tests
    "accounts:sso-callback": ("get", 404),
    "healthz": ("get", 200),
    "readyz": ("get", 200),
    "api-schema": ("get", 200),  # the OpenAPI document describes operations, never data
    "api-docs": ("get", 200),  # the Swagger UI shell; it loads the schema with the caller's credentials
    "metrics": ("get", 401),  # a scraper's bearer token, or an admin's or auditor's session (tests/monitoring)
}


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            found += _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            found.append((prefix + str(pattern.pattern), f"{namespace}{pattern.name}" if pattern.name else None))
    return found


def _names() -> set[str]:
    """Every page the resolver routes to, by name: all but the API (tests/api's matrix) and Django's admin."""
    pages = [(route, name) for route, name in _walk(get_resolver().url_patterns)]
    pages = [(route, name) for route, name in pages if not route.startswith(("api/v1/", "admin/"))]
    unnamed = [route for route, name in pages if name is None]
    assert unnamed == [], "pages without a URL name cannot be given an expectation"
    return {name for _, name in pages if name is not None}


def test_every_ui_page_has_an_expectation_per_persona() -> None:
    names = _names()
    assert sorted(names - set(PAGES) - set(PUBLIC)) == [], "pages without an expectation"
    assert sorted((set(PAGES) | set(PUBLIC)) - names) == [], "expectations for pages that no longer exist"
    assert set(PAGES).isdisjoint(PUBLIC)
    for name, (_, _, expected) in PAGES.items():
        assert set(expected) == set(PERSONAS[1:]), name


def _url(name: str, arg: str | None, world: Any) -> str:
    if arg is None:
        return reverse(name)
    if arg == "user":
        return reverse(name, args=[world.users["maker"].pk])
    if arg == "token":
        return reverse(name, args=[ApiToken.objects.get(user=world.users["maker"], name="maker-token").pk])
    if arg == "version-pair":
        return reverse(name, args=[world.ids["version"], world.ids["old_version"]])
    key = {"stage": "stage_prod"}.get(arg, arg)
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


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_pages_answer_without_a_session(api_world: Any, name: str) -> None:
    method, status = PUBLIC[name]

    response = getattr(Client(), method)(reverse(name))

    assert response.status_code == status, (name, response.status_code)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_pages_treat_an_api_token_as_anonymous(api_world: Any, name: str) -> None:
    """An admin's full-scope token opens no page: pages authenticate by session only, so a stolen token
    cannot drive the UI (and the UI's CSRF protection is never bypassed by a header)."""
    method, arg, _ = PAGES[name]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_world.tokens['admin']}")

    response = getattr(client, method)(_url(name, arg, api_world))

    assert response.status_code == 302 and "/accounts/login/" in response["Location"], (name, response.status_code)
