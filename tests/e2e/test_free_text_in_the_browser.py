"""Text people type is stored whole or refused whole, with the limit in words: never cut, never dropped
(issue 13, item 2).

- An approver approves with a 12,000-character comment: the page refuses it with the limit, keeps the
  text in the box and records nothing; with 2,000 characters the approval, its audit event and the page
  all have the comment whole.
- Every text field of every form on every page (pages enumerated through tests/ui/test_pages.py, as
  every persona that sees a form): the field states its limit and has no `maxlength` (Chromium would
  cut a longer paste without a word); one character over the limit is refused with the limit in words,
  the text comes back in the field (secrets excepted: they are never rendered back) and nothing is
  recorded in the audit log.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from alm_portal.audit.models import AuditEvent
from deployments.models import Approval
from tests.e2e.conftest import (  # noqa: F401 - fixtures are found by name
    browser,
    promotion_url,
    sign_in_with_password,
)
from tests.e2e.site import Site, open_page, site_fixture  # noqa: F401 - the fixture is found by name

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Controls a person types free text into (not choices, dates, numbers, files or checkboxes).
TEXT_CONTROLS = (
    "textarea, input:not([type]), input[type=text], input[type=search], input[type=url], input[type=email], "
    "input[type=password], input[type=tel]"
)
COLLECT_FORMS = """selector => Array.from(document.querySelectorAll("form")).map((form, index) => ({
    index,
    method: (form.getAttribute("method") || "get").toLowerCase(),
    action: new URL(form.action, location.href).pathname,
    controls: Array.from(form.querySelectorAll(selector)).map(control => ({
        name: control.name,
        limit: control.getAttribute("data-max-length"),
        maxlength: control.getAttribute("maxlength"),
        writeOnly: control.type === "password" || control.hasAttribute("data-write-only"),
    })),
}))"""


SENT_BACK = """([action, name]) => Array.from(document.forms)
    .filter(form => new URL(form.action, location.href).pathname === action)
    .flatMap(form => Array.from(form.elements).filter(element => element.name === name))
    .map(element => element.value)"""


def _long_text(length: int) -> str:
    """Text whose every 10-character step is distinct, so a cut anywhere shows (no spaces: forms trim)."""
    return "".join(f"w{index:08d}-" for index in range(length // 10 + 1))[:length]


def _recorded() -> int:
    """Changes in the audit log (a sign-in, a page view or a refusal is not a change)."""
    return AuditEvent.objects.exclude(action__startswith="auth.").exclude(action__startswith="page.").count()


def test_a_comment_over_the_limit_is_refused_and_kept_and_one_within_it_is_stored_whole(
    new_page: Any, live_server: Any, site: Site
) -> None:
    approver = site.people["approver"]
    page = sign_in_with_password(new_page(), live_server, approver.username)
    page.goto(promotion_url(live_server, site.waiting))
    too_long = _long_text(12_000)
    page.fill("#approve-comment", too_long)
    before = _recorded()
    page.click("#approve-button")
    page.wait_for_load_state()

    assert "Your approval is recorded." not in page.content()
    assert "At most 2000 characters; this has 12000" in page.locator("#approvals").inner_text()
    assert page.locator("#approve-comment").input_value() == too_long  # nothing to type again
    assert not Approval.objects.filter(promotion=site.waiting).exists()
    assert _recorded() == before

    whole = _long_text(2_000)
    page.fill("#approve-comment", whole)
    page.click("#approve-button")
    page.wait_for_selector("text=Your approval is recorded.")
    approval = Approval.objects.get(promotion=site.waiting, approver=approver)
    assert approval.comment == whole
    event = AuditEvent.objects.get(action="promotion.approval_recorded", object_id=str(site.waiting.pk))
    assert event.after["comment"] == whole
    assert page.locator("#approvals .free-text").inner_text() == whole


def _pattern(path: str) -> str:
    return re.sub(r"/\d+/", "/{id}/", path)


def test_every_text_field_of_every_form_states_its_limit_and_refuses_more_keeping_the_text(
    new_page: Any, live_server: Any, site: Site
) -> None:
    cases: dict[tuple[str, str, str], tuple[str, str, dict[str, Any], dict[str, Any]]] = {}
    problems: list[str] = []
    for persona in ("maker", "approver", "admin"):
        page = sign_in_with_password(new_page(), live_server, site.people[persona].username)
        for _name, path in site.urls:
            if open_page(page, live_server.url + path) is None:
                continue
            for form in page.evaluate(COLLECT_FORMS, TEXT_CONTROLS):
                if form["method"] != "post":
                    continue  # searches and filters change nothing
                for control in form["controls"]:
                    key = (_pattern(path), _pattern(form["action"]), re.sub(r"-\d+-", "-N-", control["name"]))
                    if control["maxlength"] is not None:
                        problems.append(f"{key}: maxlength={control['maxlength']} (the browser would cut silently)")
                    if control["limit"] is None:
                        problems.append(f"{key}: states no limit (data-max-length)")
                        continue
                    cases.setdefault(key, (persona, path, form, control))
    assert problems == [], "\n".join(problems)
    # Every kind of form the portal has: promotions, approvals, rollbacks, pipelines, stages, freezes,
    # settings, environments, credentials, tokens and uploads.
    actions = {action for _, action, _ in cases}
    expected_actions = (
        *("/approve/", "/reject/", "/cancel/", "/rollback/", "/promote/", "/freezes/", "/settings/"),
        *("/environments/new/", "/rotate/", "/accounts/tokens/", "/solutions/upload/", "/pipelines/new/"),
    )
    for expected in expected_actions:
        assert any(expected in action for action in actions), (expected, sorted(actions))

    pages: dict[str, Any] = {}
    for (path_pattern, action_pattern, _), (persona, path, sent, control) in sorted(cases.items()):
        page = pages.get(persona) or sign_in_with_password(new_page(), live_server, site.people[persona].username)
        pages[persona] = page
        page.goto(live_server.url + path)
        limit = int(control["limit"])
        text = _long_text(limit + 1)
        form = page.locator("form").nth(sent["index"])
        field = form.locator(f'[name="{control["name"]}"]')
        field.evaluate("(element, value) => { element.value = value; }", text)
        before = _recorded()
        with page.expect_navigation():
            form.evaluate("form => form.submit()")
        where = f"{control['name']} of the form to {action_pattern} on {path_pattern} (as {persona})"
        body = page.locator("main").inner_text()
        if f"At most {limit} characters; this has {limit + 1}" not in body:
            problems.append(f"{where}: {limit + 1} characters were not refused with the limit in words")
        if _recorded() != before:
            problems.append(f"{where}: something was recorded although the form was refused")
        if not control["writeOnly"]:
            values = page.evaluate(SENT_BACK, [sent["action"], control["name"]])
            if text not in values:
                problems.append(f"{where}: the text did not come back whole ({[len(v) for v in values]})")
    assert problems == [], "\n".join(problems)
