"""Signed checkpoints outside the database: written at least every ALM_AUDIT_CHECKPOINT_SECONDS while events
arrive (not only hourly and on verification), and bound to the chain they belong to.

Finding 4 of the security review: whoever could rewrite audit rows (a superuser application role) re-hashed an
`api_token.created` event; verify_audit passed and signed a new checkpoint over the forged head. Everything
after the last (hourly) checkpoint could be rewritten undetected. And a second database sharing the artifact
storage read the first one's checkpoints as its own, reporting checkpoint_mismatch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection, transaction

from alm_portal.audit import checkpoints
from alm_portal.audit.canonical import CANONICAL_FIELDS, event_hash
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import audit_verify
from alm_portal.audit.tasks import audit_checkpoint_write

from .support import requires_postgres, write_events

pytestmark = pytest.mark.django_db


def signed_heads() -> list[int]:
    loaded = checkpoints.load_checkpoints()
    assert not loaded.problems
    return [checkpoint.head_seq for checkpoint in loaded.valid]


def interval_passes() -> None:
    """What time does between two checkpoints: the shared gate expires and this process may ask again."""
    cache.delete("audit:checkpoint-due")
    clock = getattr(checkpoints, "_due_clock", None)  # getattr: the test also runs against code without one
    if clock is not None:
        clock.last_asked = float("-inf")


def rewrite_and_rehash(seq: int, message: str) -> None:
    """What the owner of the database (or a superuser) can do behind the triggers: change an event and
    recompute its hash and every later one, so that the chain itself is consistent again."""
    rows = list(AuditEvent.objects.filter(seq__gte=seq).order_by("seq").values(*CANONICAL_FIELDS, "hash"))
    prev_hash = rows[0]["prev_hash"]
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        for row in rows:
            fields = {name: row[name] for name in CANONICAL_FIELDS}
            fields["prev_hash"] = prev_hash
            if row["seq"] == seq:
                fields["message"] = message
            new_hash = event_hash(fields)
            cursor.execute(
                "UPDATE audit_auditevent SET message = %s, prev_hash = %s, hash = %s WHERE seq = %s",
                [fields["message"], prev_hash, new_hash, row["seq"]],
            )
            prev_hash = new_hash
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


@pytest.mark.django_db(transaction=True)
def test_arriving_events_are_checkpointed_without_any_verification(settings: Any) -> None:
    settings.ALM_AUDIT_CHECKPOINT_SECONDS = 60
    interval_passes()  # whatever earlier tests in this process did
    write_events(1)
    assert signed_heads() == [1]  # the first commit signed itself: no beat, no verification involved
    write_events(5)
    assert signed_heads() == [1]  # within the interval nothing more is written
    interval_passes()
    write_events(1)
    assert signed_heads() == [1, 7]


@pytest.mark.django_db(transaction=True)
def test_a_rewrite_re_hashed_to_look_intact_is_found_once_a_checkpoint_covers_it(settings: Any) -> None:
    settings.ALM_AUDIT_CHECKPOINT_SECONDS = 60
    interval_passes()
    write_events(4)  # seq 1 signed at once
    interval_passes()
    write_events(1)  # seq 5: the interval passed, so seqs 1-5 are signed
    rewrite_and_rehash(3, "api_token.created for someone else")
    result = audit_verify(write_checkpoint=False)
    assert (result.first_broken_seq, result.reason) == (5, "checkpoint_mismatch")


def test_beat_signs_the_events_of_the_last_interval_once(checkpoint_storage: Path) -> None:
    write_events(2)  # in the test's transaction: the commit hook does not run here
    audit_checkpoint_write()
    audit_checkpoint_write()  # nothing new arrived: no second file
    assert signed_heads() == [2]
    write_events(1)
    audit_checkpoint_write()
    assert signed_heads() == [2, 3]


def test_an_empty_log_has_nothing_to_sign(checkpoint_storage: Path) -> None:
    assert checkpoints.write_checkpoint() is None
    assert audit_checkpoint_write() == ""
    assert not checkpoint_storage.exists()


def test_checkpoints_sign_their_chain_and_its_first_event(checkpoint_storage: Path, settings: Any) -> None:
    events = write_events(2)
    written = checkpoints.write_checkpoint()
    assert written is not None and written.name == "000000000/000000000001.json"
    payload = json.loads((checkpoint_storage / written.name).read_text())
    assert payload["chain_id"] == settings.ALM_AUDIT_CHAIN_ID
    assert payload["genesis_hash"] == events[0].hash


def test_a_thousand_checkpoints_to_a_folder(checkpoint_storage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoints, "PER_FOLDER", 2)
    write_events(1)
    names = [checkpoints.write_checkpoint().name for _ in range(5)]  # type: ignore[union-attr]
    assert names == [
        "000000000/000000000001.json",
        "000000000/000000000002.json",
        "000000001/000000000003.json",
        "000000001/000000000004.json",
        "000000002/000000000005.json",
    ]
    assert audit_verify().ok
    (checkpoint_storage / "000000001" / "000000000003.json").unlink()
    assert audit_verify().reason == "checkpoint_mismatch"


def test_checkpoints_of_other_chains_in_the_same_storage_are_not_read(settings: Any) -> None:
    write_events(2)
    settings.ALM_AUDIT_CHAIN_ID = "another-database"
    assert checkpoints.write_checkpoint() is not None  # written for another chain id
    settings.ALM_AUDIT_CHAIN_ID = "this-database"
    assert checkpoints.load_checkpoints().valid == []
    assert audit_verify().ok


def test_a_chain_id_given_to_two_databases_is_reported(settings: Any) -> None:
    """Two databases under one ALM_AUDIT_CHAIN_ID: the checkpoints sign another first event, and the break
    says so instead of looking like a rewrite at some seq."""
    write_events(2)
    assert audit_verify().ok
    rewrite_and_rehash(1, "a different first event")
    result = audit_verify(write_checkpoint=False)
    assert (result.first_broken_seq, result.reason) == (1, "checkpoint_mismatch")
    assert "ALM_AUDIT_CHAIN_ID" in result.detail


def test_checkpoints_of_the_old_layout_are_not_read_as_this_chains(artifact_storage: Path) -> None:
    write_events(1)
    legacy = artifact_storage / "audit-checkpoints" / "000000000001.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text('{"index": 1, "head_seq": 99}')
    assert checkpoints.load_checkpoints().valid == []
    assert audit_verify().ok


@requires_postgres
def test_a_second_database_sharing_the_artifact_storage_reads_only_its_own_checkpoints(
    second_database: Any, artifact_storage: Path, settings: Any
) -> None:
    env = {"ALM_ARTIFACT_DIR": str(artifact_storage), "ALM_AUDIT_CHECKPOINT_KEY": settings.ALM_AUDIT_CHECKPOINT_KEY}
    write_events(3)
    assert audit_verify().ok  # this database's checkpoint, in the shared storage
    for _ in range(2):  # the other database: its first verification, then one against its own checkpoint
        other = second_database.manage("verify_audit", env=env)
        assert other.returncode == 0, other.stdout + other.stderr
    assert audit_verify().ok
    chains = sorted(path.name for path in (artifact_storage / "audit-checkpoints").iterdir())
    assert len(chains) == 2 and settings.ALM_AUDIT_CHAIN_ID in chains
