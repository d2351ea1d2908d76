"""The hash format is a contract with auditors' offline tools: it must never drift silently."""

from __future__ import annotations

import hashlib
import importlib.util
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from alm_portal.audit.canonical import CANONICAL_FIELDS, GENESIS_HASH, canonical_json, event_hash, format_timestamp

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "verify_audit_export.py"

GOLDEN_FIELDS = {
    "seq": 1,
    "occurred_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    "actor_id": 7,
    "actor_display": "Zoë Maker (zoe)",
    "actor_kind": "user",
    "auth_method": "session",
    "action": "promotion.approved",
    "object_type": "deployments.promotion",
    "object_id": "42",
    "object_repr": "Promotion 42",
    "related_type": "",
    "related_id": "",
    "related_repr": "",
    "before": {"status": "pending_approval"},
    "after": {"status": "approved", "approvals": 2},
    "outcome": "success",
    "message": "",
    "request_id": "req-1",
    "client_ip": "203.0.113.9",
    "user_agent": "pytest",
    "prev_hash": "0" * 64,
}

# Written by hand from docs/audit.md §2: keys sorted (also inside before/after), no spaces,
# non-ASCII kept as UTF-8, the time in UTC with six fractional digits and Z.
GOLDEN_CANONICAL = (
    '{"action":"promotion.approved","actor_display":"Zoë Maker (zoe)","actor_id":7,"actor_kind":"user",'
    '"after":{"approvals":2,"status":"approved"},"auth_method":"session","before":{"status":"pending_approval"},'
    '"client_ip":"203.0.113.9","message":"","object_id":"42","object_repr":"Promotion 42",'
    '"object_type":"deployments.promotion","occurred_at":"2026-01-02T03:04:05.678901Z","outcome":"success",'
    '"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","related_id":"",'
    '"related_repr":"","related_type":"","request_id":"req-1","seq":1,"user_agent":"pytest"}'
)
GOLDEN_HASH = "83a4ad74ce0d58fb0844cba4f3c4f24613cda209055961f9c4ec33700bd0045b"


def load_offline_verifier():
    spec = importlib.util.spec_from_file_location("verify_audit_export", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_canonical_json_is_the_hand_written_golden_string():
    assert canonical_json(GOLDEN_FIELDS) == GOLDEN_CANONICAL


def test_hash_is_sha256_of_prev_hash_then_canonical_utf8():
    independent = hashlib.sha256(("0" * 64 + GOLDEN_CANONICAL).encode("utf-8")).hexdigest()
    assert independent == GOLDEN_HASH
    assert event_hash(GOLDEN_FIELDS) == GOLDEN_HASH


def test_offline_verifier_uses_the_same_fields_and_hash():
    script = load_offline_verifier()
    assert tuple(script.FIELDS) == CANONICAL_FIELDS
    assert script.GENESIS == GENESIS_HASH
    exported_row = GOLDEN_FIELDS | {"occurred_at": "2026-01-02T03:04:05.678901Z"}
    assert script.event_hash(exported_row) == GOLDEN_HASH


def test_genesis_prev_hash_is_64_zeros():
    assert GENESIS_HASH == "0" * 64


def test_every_field_but_hash_is_hashed():
    assert "hash" not in CANONICAL_FIELDS
    assert len(set(CANONICAL_FIELDS)) == len(CANONICAL_FIELDS)


def test_timestamps_are_utc_with_microseconds_and_z():
    plus_two = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus_two)) == "2026-01-02T03:04:05.000000Z"
    with pytest.raises(ValueError):
        format_timestamp(datetime(2026, 1, 2, 3, 4, 5))  # naive: which zone?


def test_a_missing_or_extra_field_is_refused_not_hashed():
    with pytest.raises(ValueError):
        canonical_json({k: v for k, v in GOLDEN_FIELDS.items() if k != "message"})
    with pytest.raises(ValueError):
        canonical_json(GOLDEN_FIELDS | {"hash": "x"})
