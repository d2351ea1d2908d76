"""Security headers, cookies and error pages on pages, API and admin, in production mode (subprocess)
and in the test settings the rest of the suite runs with."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tests.security.production import HOST, production_responses
from tests.security.urls import EXCEPTION_MARKER

ONE_YEAR = 31536000
# One of each kind of response: a page, an API answer, the admin, both 500s, the API docs and its script.
KINDS = {
    "page": "/accounts/login/",
    "api": "/api/v1/me/",
    "admin": "/admin/login/",
    "page_500": "/security-probe/fail/",
    "api_500": "/api/v1/security-probe/fail/",
    "api_docs": "/api/docs/",
    "session": "/security-probe/session/",
    "message": "/security-probe/message/",
}
STRICT_REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    paths = [*KINDS.values(), "http:/accounts/login/", "http:/api/v1/me/", "http:/healthz", "http:/readyz"]
    return production_responses(paths, tmp_path_factory.mktemp("production"))


def _https(production: dict[str, Any], kind: str) -> dict[str, Any]:
    return production["https:" + KINDS[kind]]


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_strict_csp(header: str) -> None:
    directives = csp_directives(header)
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    scripts = directives.get("script-src", directives["default-src"])
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    assert "'unsafe-inline'" not in directives.get("style-src", [])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_of_response_carries_the_security_headers(production: dict[str, Any], kind: str) -> None:
    headers = _https(production, kind)["headers"]

    hsts = headers["Strict-Transport-Security"]
    assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= ONE_YEAR  # type: ignore[union-attr]
    assert "includeSubDomains" in hsts
    assert_strict_csp(headers["Content-Security-Policy"])
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] in STRICT_REFERRER_POLICIES
    assert headers["X-Frame-Options"] == "DENY"


def test_the_expected_kinds_actually_answered(production: dict[str, Any]) -> None:
    statuses = {kind: _https(production, kind)["status"] for kind in KINDS}

    assert statuses == {
        "page": 200,
        "api": 401,
        "admin": 200,
        "page_500": 500,
        "api_500": 500,
        "api_docs": 200,
        "session": 204,
        "message": 204,
    }


@pytest.mark.parametrize(("kind", "cookie"), [("session", "__Host-sessionid"), ("page", "__Host-csrftoken")])
def test_cookies_are_host_prefixed_secure_httponly_and_same_site(
    production: dict[str, Any], kind: str, cookie: str
) -> None:
    cookies = _https(production, kind)["cookies"]

    assert set(cookies) == {cookie}
    attributes = cookies[cookie]
    # What browsers demand of a __Host- cookie: Secure, Path=/ and no Domain.
    assert attributes["secure"] and attributes["path"] == "/" and attributes["domain"] == ""
    assert attributes["httponly"]
    assert attributes["samesite"] in ("Lax", "Strict")


def test_every_other_cookie_is_secure_httponly_and_same_site_too(production: dict[str, Any]) -> None:
    cookies = {name: value for answer in production.values() for name, value in answer["cookies"].items()}

    assert "messages" in cookies  # flash messages ride in a cookie until the next page shows them
    for name, attributes in cookies.items():
        assert attributes["secure"] and attributes["httponly"], name
        assert attributes["samesite"] in ("Lax", "Strict"), name


def test_admin_sets_the_same_host_prefixed_csrf_cookie(production: dict[str, Any]) -> None:
    assert set(_https(production, "admin")["cookies"]) == {"__Host-csrftoken"}


def test_plain_http_is_redirected_to_https_except_the_probes(production: dict[str, Any]) -> None:
    for path in ("/accounts/login/", "/api/v1/me/"):
        answer = production["http:" + path]
        assert answer["status"] == 301
        assert answer["headers"]["Location"] == f"https://{HOST}{path}"
    assert production["http:/healthz"]["status"] == 200
    assert production["http:/readyz"]["status"] in (200, 503)  # answered, not redirected


def test_a_failing_page_shows_the_plain_500_page_without_a_trace(production: dict[str, Any]) -> None:
    body = _https(production, "page_500")["body"]

    assert "Something went wrong" in body
    assert "Traceback" not in body and EXCEPTION_MARKER not in body and "RuntimeError" not in body
    assert "<script" not in body


def test_a_failing_api_call_answers_the_error_shape_without_a_trace(production: dict[str, Any]) -> None:
    answer = _https(production, "api_500")
    body = answer["body"]

    assert answer["headers"]["Content-Type"] == "application/json"
    assert '"code": "server_error"' in body
    assert "Traceback" not in body and EXCEPTION_MARKER not in body and "RuntimeError" not in body


def test_the_api_docs_page_needs_no_inline_script_or_style(production: dict[str, Any]) -> None:
    body = _https(production, "api_docs")["body"]

    tags = re.findall(r"<script\b[^>]*>", body)
    assert len(tags) == 3 and all("src=" in tag for tag in tags), tags
    assert "<style" not in body and not re.search(r"\sstyle\s*=", body)
    assert "/static/css/swagger.css" in body


# --- the same policy in the settings every other test runs with ---------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "status"), [("/", 200), ("/api/v1/me/", 200), ("/admin/", 302), ("/api/docs/", 200)])
def test_signed_in_responses_carry_the_policy_in_test_settings(api_world: Any, path: str, status: int) -> None:
    client = Client()
    client.force_login(api_world.users["admin"])

    response = client.get(path)

    assert response.status_code == status  # portal admins are not Django staff: /admin/ sends them to its login
    assert_strict_csp(response["Content-Security-Policy"])
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] in STRICT_REFERRER_POLICIES


@pytest.mark.django_db
def test_in_process_errors_show_no_trace(settings: Any, make_user: Any) -> None:
    settings.ROOT_URLCONF = "tests.security.urls"
    assert settings.DEBUG is False
    client = Client(raise_request_exception=False)

    page = client.get("/security-probe/fail/")
    api = client.get("/api/v1/security-probe/fail/")

    assert page.status_code == 500 and api.status_code == 500
    for response in (page, api):
        text = response.content.decode()
        assert EXCEPTION_MARKER not in text and "Traceback" not in text
    assert api.json()["error"]["code"] == "server_error"
    assert api.json()["error"]["details"]["request_id"] == api["X-Request-ID"]
