"""Verification split over seq ranges in several processes finds exactly what one pass finds.

Ranges are shrunk to a few rows so that a short chain spans several of them; the forked workers
read committed rows, hence transactional tests.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from alm_portal.audit import chain_walk
from alm_portal.audit.canonical import event_hash
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import audit_verify

from .support import tamper, write_events

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_walk, "MIN_RANGE_ROWS", 4)


def outcome(result: Any) -> tuple[Any, ...]:
    return (result.checked, result.head_seq, result.head_hash, result.first_broken_seq, result.reason)


def both(**kwargs: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(parallel, serial) results of the same chain: the `audit.verified` event the first run appends
    is removed again before the second run."""
    head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    parallel = audit_verify(workers=2, write_checkpoint=False, **kwargs)
    tamper("DELETE FROM audit_auditevent WHERE seq > %s", [head])
    serial = audit_verify(workers=1, write_checkpoint=False, **kwargs)
    return outcome(parallel), outcome(serial)


def test_ranges_cover_the_chain_without_overlap():
    spans = chain_walk.ranges(to_seq=30, workers=2)
    assert len(spans) > 2
    assert spans[0][0] == 1 and spans[-1][1] == 30
    assert all(left[1] + 1 == right[0] for left, right in pairwise(spans))


def test_an_intact_chain_verifies_in_parallel_with_the_same_head():
    events = write_events(30)
    result = audit_verify(workers=2)
    assert result.ok
    assert (result.checked, result.head_seq, result.head_hash) == (30, 30, events[-1].hash)
    assert result.checkpoint_written is not None
    assert audit_verify(workers=2).ok  # also against the checkpoint just written


def test_an_edited_event_in_a_later_range_is_named_as_in_one_pass():
    write_events(30)
    tamper("UPDATE audit_auditevent SET message = 'edited' WHERE seq = 17")
    parallel, serial = both()
    assert parallel == serial
    assert parallel[3:] == (17, "hash_mismatch")


@pytest.mark.parametrize("seq", [5, 9, 13])
def test_a_rehashed_edit_breaks_the_link_even_across_a_range_boundary(seq):
    write_events(30)
    row = AuditEvent.objects.values().get(seq=seq - 1)
    row["message"] = "rewritten"
    rehashed = event_hash({name: value for name, value in row.items() if name != "hash"})
    tamper("UPDATE audit_auditevent SET message = 'rewritten', hash = %s WHERE seq = %s", [rehashed, seq - 1])
    parallel, serial = both()
    assert parallel == serial
    assert parallel[3:] == (seq, "prev_hash_mismatch")


@pytest.mark.parametrize("seq", [8, 9, 29])
def test_a_deleted_event_is_the_same_seq_gap(seq):
    write_events(30)
    tamper("DELETE FROM audit_auditevent WHERE seq = %s", [seq])
    parallel, serial = both()
    assert parallel == serial
    assert parallel[3:] == (seq, "seq_gap")


def test_deleted_newest_events_are_found_by_the_checkpoint_in_parallel():
    write_events(30)
    assert audit_verify(workers=2).ok  # checkpoint at seq 30
    tamper("DELETE FROM audit_auditevent WHERE seq >= 25")
    parallel, serial = both()
    assert parallel == serial
    assert parallel[3:] == (25, "checkpoint_mismatch")


def test_a_checkpointed_row_with_another_hash_is_found_inside_a_range():
    write_events(12)
    assert audit_verify(workers=2).ok  # checkpoint at seq 12; its event is seq 13
    tamper("DELETE FROM audit_auditevent WHERE seq >= 12")
    write_events(20, action="test.replacement")  # a consistent chain again, but seq 12 changed
    parallel, serial = both()
    assert parallel == serial
    assert parallel[3:] == (12, "checkpoint_mismatch")
