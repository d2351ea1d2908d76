"""The audit log over the API: who may read it, cursor pages on seq, filters, verification, and exports
that verify offline (JSON Lines) or open safely in a spreadsheet (CSV); reading it is itself audited."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import transaction

from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import record
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now

pytestmark = pytest.mark.django_db
VERIFIER = Path(__file__).resolve().parents[2] / "scripts" / "verify_audit_export.py"


def emit(action: str, **kwargs) -> AuditEvent:
    with transaction.atomic():
        return record(context=AuditContext.system(), action=action, **kwargs)


def stream_text(response) -> str:
    return b"".join(response.streaming_content).decode("utf-8")


@pytest.mark.parametrize("persona", ["maker", "maker2", "approver"])
def test_only_auditors_and_admins_read_the_audit_log(api_world, persona):
    for url in ("/api/v1/audit-events/", "/api/v1/audit-events/verification/", "/api/v1/audit-events/export/"):
        response = api_world.client(persona).get(url)
        assert response.status_code == 403, url
        assert response.json()["error"]["code"] == "permission_denied"


def test_the_list_is_newest_first_in_cursor_pages_without_a_count(api_world):
    auditor = api_world.client("auditor")
    head = AuditEvent.objects.order_by("-seq").first().seq
    first = auditor.get("/api/v1/audit-events/?page_size=3").json()
    assert set(first) == {"next", "previous", "results"}  # no count
    assert [event["seq"] for event in first["results"]] == [head, head - 1, head - 2]
    assert {"prev_hash", "hash", "occurred_at", "action", "outcome"} <= set(first["results"][0])

    second = auditor.get(first["next"]).json()
    assert [event["seq"] for event in second["results"]] == [head - 3, head - 4, head - 5]
    assert auditor.get("/api/v1/audit-events/?page_size=500").status_code == 200  # capped at 200, not refused


def test_every_query_writes_one_audit_viewed_event_with_its_filters(api_world):
    auditor = api_world.client("auditor")
    before = AuditEvent.objects.filter(action="audit.viewed").count()
    auditor.get("/api/v1/audit-events/?action=promotion&outcome=success")
    viewed = AuditEvent.objects.filter(action="audit.viewed").order_by("-seq")
    assert viewed.count() == before + 1
    event = viewed.first()
    assert event.actor_id == api_world.users["auditor"].pk and event.actor_kind == "api_token"
    assert event.after["filters"] == {"action": "promotion", "outcome": "success"}


def test_filters(api_world):
    auditor = api_world.client("auditor")
    promotion = api_world.ids["promotion"]
    by_object = auditor.get(
        f"/api/v1/audit-events/?object_type=deployments.promotion&object_id={promotion}&page_size=200"
    ).json()
    assert {event["action"] for event in by_object["results"]} == {"promotion.requested"}
    by_prefix = auditor.get("/api/v1/audit-events/?action=promotion&page_size=200").json()["results"]
    assert by_prefix and all(event["action"].startswith("promotion.") for event in by_prefix)
    stage = api_world.ids["stage_prod"]
    related = auditor.get(f"/api/v1/audit-events/?related_object=deployments.stage:{stage}").json()["results"]
    assert {event["action"] for event in related} >= {"stage_window.created", "stage_freeze.created"}
    maker = api_world.users["maker"].pk
    by_actor = auditor.get(f"/api/v1/audit-events/?actor={maker}&page_size=200").json()["results"]
    assert by_actor and all(event["actor_id"] == maker for event in by_actor)
    future = auditor.get("/api/v1/audit-events/?since=2999-01-01T00:00:00Z").json()["results"]
    assert future == []
    past = auditor.get("/api/v1/audit-events/?until=2000-01-01T00:00:00Z").json()["results"]
    assert past == []
    bad = auditor.get("/api/v1/audit-events/?since=yesterday&outcome=maybe")
    assert bad.status_code == 400 and set(bad.json()["error"]["details"]) == {"since", "outcome"}


def test_jsonl_export_verifies_offline_and_is_audited_outside_itself(api_world):
    response = api_world.client("admin").get("/api/v1/audit-events/export/?file_format=jsonl")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-ndjson")
    text = stream_text(response)
    exported = AuditEvent.objects.filter(action="audit.exported").get()
    assert exported.after["to_seq"] == exported.seq - 1
    assert text.count("\n") == exported.seq - 1  # every event up to the head, not the export's own

    result = subprocess.run(
        [sys.executable, str(VERIFIER), "-"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"checked={exported.seq - 1} head_seq={exported.seq - 1}")


def test_csv_export_neutralises_formula_cells(api_world):
    target = ObjectRef(type="deployments.promotion", id="1", repr='=HYPERLINK("http://evil","click")')
    emit("promotion.requested", target=target, after={"note": "@SUM(A1)"})
    for text in ("+1", "-1", "\tx"):
        emit("promotion.requested", target=ObjectRef(type="deployments.promotion", id="2", repr=text))
    response = api_world.client("auditor").get(
        "/api/v1/audit-events/export/?file_format=csv&object_type=deployments.promotion"
    )
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(stream_text(response))))
    reprs = [row["object_repr"] for row in rows]
    assert '\'=HYPERLINK("http://evil","click")' in reprs
    assert {"'+1", "'-1", "'\tx"} <= set(reprs)
    assert not any(row[name].startswith(("=", "+", "-", "@")) for row in rows for name in row)
    assert all(len(row["hash"]) == 64 for row in rows)
    assert AuditEvent.objects.filter(action="audit.exported").get().after["file_format"] == "csv"


def cells_split_on(text: str, separator: str) -> list[str]:
    """The cells a spreadsheet sees when it splits CSV text on `separator` (a `;` locale): separators and
    line ends inside double quotes belong to the cell, as RFC 4180 readers treat them."""
    cells, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
            current.append(char)
        elif not quoted and char in (separator, "\n"):
            cells.append("".join(current).strip('\r"'))
            current = []
        else:
            current.append(char)
    cells.append("".join(current).strip('\r"'))
    return cells


def test_csv_export_quotes_every_field_so_a_semicolon_locale_starts_no_formula(api_world):
    # Finding 12: `a;=1+1` was written unquoted; a spreadsheet splitting on ';' made `=1+1` a cell of its own.
    emit("promotion.requested", target=ObjectRef(type="deployments.promotion", id="3", repr="a;=1+1"))
    emit("promotion.requested", target=ObjectRef(type="deployments.promotion", id="4", repr="=2+2"))
    response = api_world.client("auditor").get(
        "/api/v1/audit-events/export/?file_format=csv&object_type=deployments.promotion"
    )
    text = stream_text(response)
    assert '"a;=1+1"' in text
    for separator in (";", ",", "\t"):
        formulas = [cell for cell in cells_split_on(text, separator) if cell[:1] in ("=", "+", "-", "@")]
        assert formulas == [], separator
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert all(line.startswith('"') for line in text.split("\r\n") if line)  # every record starts quoted
    reprs = [row[rows[0].index("object_repr")] for row in rows[1:]]
    assert {"a;=1+1", "'=2+2"} <= set(reprs)  # the leading-character rule still applies


def test_an_unknown_file_format_is_refused(api_world):
    response = api_world.client("auditor").get("/api/v1/audit-events/export/?file_format=xlsx")
    assert response.status_code == 400
    assert "file_format" in response.json()["error"]["details"]


def test_verification_is_a_job_the_auditor_polls_and_its_result_is_shown(api_world):
    auditor = api_world.client("auditor")
    never = auditor.get("/api/v1/audit-events/verification/").json()
    assert never["valid"] is None and never["verified_at"] is None

    accepted = auditor.post("/api/v1/audit-events/verification/")
    assert accepted.status_code == 202
    job = accepted.json()["job"]
    assert job["kind"] == "audit_verify" and job["status"] == "pending" and job["progress"] == 0
    assert accepted["Location"] == f"/api/v1/jobs/{job['id']}/"
    waiting = auditor.get(accepted["Location"])
    assert waiting.status_code == 200 and waiting.json()["status"] == "pending"

    job_run_now(Job.objects.get(pk=job["id"]))

    polled = auditor.get(accepted["Location"]).json()
    assert polled["status"] == "succeeded" and polled["progress"] == 100
    result = auditor.get("/api/v1/audit-events/verification/").json()
    assert result["valid"] is True and result["reason"] is None and result["first_broken_seq"] is None
    assert polled["result"]["valid"] is True
    assert (polled["result"]["head_seq"], polled["result"]["head_hash"]) == (result["head_seq"], result["head_hash"])
    assert result["checked"] == polled["result"]["checked"] and result["verified_at"].endswith("Z")
    assert result["event_seq"] == polled["result"]["event_seq"]
    # Who asked is on the job and its `job.enqueued` event; the worker did the verifying.
    asked = AuditEvent.objects.get(action="job.enqueued", object_id=str(job["id"]))
    assert asked.actor_id == api_world.users["auditor"].pk
    verified = AuditEvent.objects.get(action="audit.verified")
    assert verified.actor_kind == "worker" and verified.request_id == asked.request_id


def test_a_broken_chain_is_the_result_of_a_successful_job(api_world, monkeypatch):
    emit("promotion.requested")
    from alm_portal.audit import chain_walk

    monkeypatch.setattr(chain_walk, "audit_chain_rows", lambda **kwargs: iter([]))  # as if every row had vanished
    job = Job.objects.get(pk=api_world.client("admin").post("/api/v1/audit-events/verification/").json()["job"]["id"])
    job = job_run_now(job)
    assert job.status == "succeeded" and job.result["valid"] is False and job.result["reason"] == "seq_gap"
    shown = api_world.client("auditor").get("/api/v1/audit-events/verification/").json()
    assert shown["valid"] is False and shown["first_broken_seq"] == 1 and shown["reason"] == "seq_gap"


def test_a_verification_still_waiting_is_reused_not_queued_twice(api_world):
    first = api_world.client("auditor").post("/api/v1/audit-events/verification/").json()["job"]
    second = api_world.client("admin").post("/api/v1/audit-events/verification/").json()["job"]
    assert first["id"] == second["id"]
    assert Job.objects.filter(kind="audit_verify").count() == 1


def test_a_broker_that_is_down_still_queues_the_verification(
    api_world, monkeypatch, django_capture_on_commit_callbacks
):
    from alm_portal.jobs.tasks import run_job

    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(run_job, "apply_async", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_world.client("auditor").post("/api/v1/audit-events/verification/")
    # The job row is its own outbox: the dispatcher sends it once the broker is back.
    assert response.status_code == 202
    assert Job.objects.get(pk=response.json()["job"]["id"]).status == "pending"


def test_beat_queues_a_daily_verification_job_once(api_world, settings):
    from alm_portal.audit_verification.tasks import audit_verify_run

    schedule = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["audit.verify"] <= 86400
    first = audit_verify_run.apply().get()
    second = audit_verify_run.apply().get()
    job = Job.objects.get(kind="audit_verify")
    assert first == second == job.pk and job.created_by is None


# --- filtered exports verify as what they are (issue 13, item 4) ---------------------------------------------


def _verify(text: str, *args: str) -> subprocess.CompletedProcess[str]:
    # -I -S: isolated, no site-packages: the verifier needs nothing but the standard library.
    return subprocess.run(
        [sys.executable, "-I", "-S", str(VERIFIER), *args, "-"], input=text, capture_output=True, text=True, check=False
    )


def _filtered_export(api_world) -> tuple[str, list[dict]]:
    """The auditor's export of promotion events: rows scattered over the chain (seq gaps)."""
    for index in range(3):
        emit("environment.touched", after={"n": index})  # between the promotion events, outside the filter
        emit("promotion.requested", target=ObjectRef(type="deployments.promotion", id=str(index), repr="p"))
    emit("promotion.approved", target=ObjectRef(type="deployments.promotion", id="2", repr="p"))  # consecutive
    response = api_world.client("auditor").get("/api/v1/audit-events/export/?file_format=jsonl&action=promotion")
    assert response.status_code == 200 and response["X-Audit-Export-Filtered"] == "true"
    text = stream_text(response)
    rows = [json.loads(line) for line in text.splitlines()]
    return text, rows


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def test_a_filtered_export_states_its_filter_and_verifies_as_filtered(api_world):
    text, rows = _filtered_export(api_world)
    header, events = rows[0]["audit_export"], rows[1:]
    assert header["filtered"] is True and header["filters"] == {"action": "promotion"}
    assert events and all(event["action"].startswith("promotion.") for event in events)
    seqs = [event["seq"] for event in events]
    assert any(later - earlier > 1 for earlier, later in itertools.pairwise(seqs))  # gaps by design

    result = _verify(text)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'filter={"action": "promotion"}'
    links = sum(1 for earlier, later in zip([0, *seqs], seqs, strict=False) if later == earlier + 1)
    summary = f"checked={len(events)} links_checked={links} unlinked={len(events) - links} head_seq={seqs[-1]}"
    assert lines[1] == f"{summary} head_hash={events[-1]['hash']}"
    assert lines[2].startswith("note=filtered export")


def test_tampering_with_a_filtered_export_is_still_detected(api_world):
    _, rows = _filtered_export(api_world)
    header, events = rows[:1], rows[1:]

    edited = [dict(event) for event in events]
    edited[-1]["after"] = {"forged": True}
    result = _verify(_jsonl(header + edited))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == f"first_broken_seq={events[-1]['seq']} reason=hash_mismatch"

    swapped = [events[-1], *events[:-1]]
    result = _verify(_jsonl(header + swapped))
    assert result.returncode == 1 and result.stdout.splitlines()[-1].endswith("reason=seq_order")

    # A forger who rehashes one row cannot keep its link to the consecutive row before it.
    consecutive = next(i for i in range(1, len(events)) if events[i]["seq"] == events[i - 1]["seq"] + 1)
    forged = [dict(event) for event in events]
    row = forged[consecutive]
    row["prev_hash"] = "f" * 64
    canonical = json.dumps(
        {key: row[key] for key in row if key != "hash"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    row["hash"] = hashlib.sha256((row["prev_hash"] + canonical).encode("utf-8")).hexdigest()
    result = _verify(_jsonl(header + forged))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == f"first_broken_seq={row['seq']} reason=prev_hash_mismatch"

    # Without its header the file is not a filtered export any more: its gaps break the chain.
    result = _verify(_jsonl(events))
    assert result.returncode == 1 and result.stdout.splitlines()[-1].endswith("reason=seq_gap")
    # …unless the auditor says it is one (an export made before the header existed).
    result = _verify(_jsonl(events), "--filtered")
    assert result.returncode == 0 and result.stdout.splitlines()[0] == "filter=unknown (--filtered)"


def test_an_unfiltered_export_has_no_header_and_tampering_is_still_a_break(api_world):
    text = stream_text(api_world.client("admin").get("/api/v1/audit-events/export/?file_format=jsonl"))
    rows = [json.loads(line) for line in text.splitlines()]
    assert "audit_export" not in rows[0] and rows[0]["seq"] == 1
    result = _verify(text)
    assert result.returncode == 0 and result.stdout.splitlines() == [
        f"checked={len(rows)} head_seq={rows[-1]['seq']} head_hash={rows[-1]['hash']}"
    ]
    del rows[1]
    result = _verify(_jsonl(rows))
    assert result.returncode == 1 and result.stdout.splitlines()[-1] == "first_broken_seq=2 reason=seq_gap"


def test_the_verifier_explains_itself_on_help():
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(VERIFIER), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "usage: verify_audit_export.py" in result.stdout and "--filtered" in result.stdout
    assert "Traceback" not in result.stderr
    missing = subprocess.run(
        [sys.executable, "-I", "-S", str(VERIFIER), "/nonexistent/audit.jsonl"], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "cannot read" in missing.stderr
