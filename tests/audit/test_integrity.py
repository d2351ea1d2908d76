"""The log cannot be changed quietly: triggers refuse changes, and verification finds the ones made
behind the triggers' back (by a table owner) and the rows deleted from the end."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.admin.sites import site
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory

from alm_portal.audit import checkpoints
from alm_portal.audit.canonical import event_hash
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import audit_verify

from .support import requires_postgres, tamper, write_events

pytestmark = pytest.mark.django_db


def run_verify() -> tuple[int, list[str]]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue().splitlines()
    return 0, out.getvalue().splitlines()


@requires_postgres
@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_auditevent SET message = 'edited' WHERE seq = 1", "DELETE FROM audit_auditevent WHERE seq = 1"],
)
def test_postgresql_refuses_update_and_delete(statement):
    write_events(1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert AuditEvent.objects.get(seq=1).message == ""


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_postgresql_refuses_truncate_unless_the_test_database_allows_it():
    write_events(1)
    for value in ("off", ""):  # production never defines the setting; 'off' or empty must refuse too
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL alm.allow_audit_truncate = %s", [value])
            cursor.execute("TRUNCATE audit_auditevent")
    assert AuditEvent.objects.count() == 1
    # Only the test database turns it on, so that Django's flush after this very test succeeds.
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('alm.allow_audit_truncate', true)")
        assert cursor.fetchone()[0] == "on"


def test_an_intact_chain_verifies_and_prints_the_head():
    events = write_events(3)
    code, lines = run_verify()
    assert code == 0
    assert lines == [f"checked=3 head_seq=3 head_hash={events[-1].hash}"]


def test_verification_is_audited_and_leaves_a_checkpoint(checkpoint_storage, settings):
    events = write_events(2)
    result = audit_verify()
    assert result.ok and result.checkpoint_written == "000000000/000000000001.json"
    payload = json.loads((checkpoint_storage / "000000000" / "000000000001.json").read_text())
    assert (payload["head_seq"], payload["head_hash"]) == (2, events[-1].hash)
    assert (payload["chain_id"], payload["genesis_hash"]) == (settings.ALM_AUDIT_CHAIN_ID, events[0].hash)

    event = AuditEvent.objects.get(seq=result.event_seq)
    assert (event.action, event.outcome, event.actor_kind) == ("audit.verified", "success", "system")
    assert event.after["checked"] == 2
    assert audit_verify().ok  # the verification event itself chains on


def test_an_edited_event_is_named_by_its_seq():
    write_events(5)
    tamper("UPDATE audit_auditevent SET message = 'nothing to see' WHERE seq = 3")
    code, lines = run_verify()
    assert code == 1
    assert lines[-1] == "first_broken_seq=3 reason=hash_mismatch"
    assert lines[0].startswith("checked=2 head_seq=2 ")


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link():
    write_events(4)
    row = AuditEvent.objects.values().get(seq=2)
    row["message"] = "rewritten"
    rehashed = event_hash({name: value for name, value in row.items() if name != "hash"})
    tamper("UPDATE audit_auditevent SET message = 'rewritten', hash = %s WHERE seq = 2", [rehashed])
    assert run_verify()[1][-1] == "first_broken_seq=3 reason=prev_hash_mismatch"


def test_a_deleted_middle_event_is_a_seq_gap():
    write_events(5)
    tamper("DELETE FROM audit_auditevent WHERE seq = 3")
    code, lines = run_verify()
    assert code == 1
    assert lines[-1] == "first_broken_seq=3 reason=seq_gap"


def test_deleted_newest_events_are_found_by_the_checkpoint():
    write_events(5)
    first = audit_verify()  # checkpoint at seq 5; its own event is seq 6
    assert first.ok and first.head_seq == 5
    tamper("DELETE FROM audit_auditevent WHERE seq >= 4")
    code, lines = run_verify()
    assert code == 1
    assert lines == [lines[0], "first_broken_seq=4 reason=checkpoint_mismatch"]
    assert lines[0].startswith("checked=3 head_seq=3 ")


def test_a_rewritten_and_rehashed_chain_is_found_by_the_checkpoint():
    write_events(3)
    assert audit_verify().ok  # checkpoint at seq 3
    # Delete the tail and append fresh, valid events over the same seqs: the chain itself is
    # consistent again, but seq 3 no longer has the hash the checkpoint signed.
    tamper("DELETE FROM audit_auditevent WHERE seq >= 3")
    write_events(2, action="test.replacement")
    result = audit_verify()
    assert (result.first_broken_seq, result.reason) == (3, "checkpoint_mismatch")


def test_a_forged_checkpoint_is_reported(checkpoint_storage):
    write_events(2)
    assert audit_verify().ok
    path = checkpoint_storage / "000000000" / "000000000001.json"
    payload = json.loads(path.read_text())
    path.write_text(json.dumps(payload | {"head_seq": 1}))  # signature no longer matches

    code, lines = run_verify()
    assert code == 1
    assert lines[-1] == "first_broken_seq=1 reason=checkpoint_mismatch"


def test_a_removed_checkpoint_breaks_the_checkpoint_sequence(checkpoint_storage):
    write_events(1)
    for _ in range(3):
        checkpoints.write_checkpoint()
    (checkpoint_storage / "000000000" / "000000000002.json").unlink()
    result = audit_verify()
    assert result.reason == "checkpoint_mismatch"
    assert "000000000/000000000003.json" in result.detail


def test_a_failed_verification_is_audited_and_writes_no_checkpoint(checkpoint_storage):
    write_events(3)
    tamper("UPDATE audit_auditevent SET action = 'test.other' WHERE seq = 2")
    result = audit_verify()
    assert result.checkpoint_written is None
    assert not checkpoint_storage.exists()
    event = AuditEvent.objects.get(seq=result.event_seq)
    assert (event.action, event.outcome, event.message) == (
        "audit.verified",
        "failed",
        "first_broken_seq=2 reason=hash_mismatch",
    )


def test_verification_reads_in_small_chunks():
    write_events(7)
    result = audit_verify(chunk_size=2)
    assert (result.ok, result.checked, result.head_seq) == (True, 7, 7)


def test_the_hourly_checkpoint_signs_the_current_head(checkpoint_storage):
    events = write_events(2)
    written = checkpoints.write_checkpoint()
    again = checkpoints.write_checkpoint()
    assert (written.head_seq, written.head_hash, written.index) == (2, events[-1].hash, 1)
    assert again.previous_checkpoint_hash == written.digest
    loaded = checkpoints.load_checkpoints()
    assert [c.index for c in loaded.valid] == [1, 2] and not loaded.problems


def test_the_admin_is_read_only():
    model_admin = site._registry[AuditEvent]
    request = RequestFactory().get("/admin/audit/auditevent/")
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert not model_admin.get_actions(request)
