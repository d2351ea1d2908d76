"""The canonical form and hash of an audit event (docs/audit.md), in the standard library only.

    canonical = json.dumps({every field except hash}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)                       # encoded as UTF-8
    hash      = sha256(prev_hash + canonical).hexdigest()          # genesis prev_hash = 64 zeros

Times are RFC 3339 UTC with microseconds and `Z`. This module is the one definition used by
record(), verification and export; scripts/verify_audit_export.py repeats the few lines it needs
(it must run without the project installed), and a test pins both to the same golden hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

GENESIS_HASH = "0" * 64

# Every AuditEvent column except `hash`, by the name it has in the hash input (the FK is `actor_id`).
# Adding a field changes every hash from then on: only ever append here together with a migration,
# and keep scripts/verify_audit_export.py in step (tests/audit/test_canonical.py compares them).
CANONICAL_FIELDS: tuple[str, ...] = (
    "seq",
    "occurred_at",
    "actor_id",
    "actor_display",
    "actor_kind",
    "auth_method",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "related_type",
    "related_id",
    "related_repr",
    "before",
    "after",
    "outcome",
    "message",
    "request_id",
    "client_ip",
    "user_agent",
    "prev_hash",
)


class BreakReason(StrEnum):
    """Why verification stopped; printed as `reason=<value>` by verify_audit and the offline verifier."""

    HASH_MISMATCH = "hash_mismatch"
    PREV_HASH_MISMATCH = "prev_hash_mismatch"
    SEQ_GAP = "seq_gap"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with exactly six fractional digits and `Z`, e.g. 2026-11-26T11:08:56.123456Z."""
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(fields: Mapping[str, Any]) -> str:
    """The hash input for one event. `fields` must hold exactly CANONICAL_FIELDS (a datetime in
    `occurred_at` is formatted here); anything more or less is a programming error, not a new format."""
    if set(fields) != set(CANONICAL_FIELDS):
        missing = sorted(set(CANONICAL_FIELDS) - set(fields))
        extra = sorted(set(fields) - set(CANONICAL_FIELDS))
        raise ValueError(f"canonical audit fields differ: missing={missing} extra={extra}")
    values = dict(fields)
    if isinstance(values["occurred_at"], datetime):
        values["occurred_at"] = format_timestamp(values["occurred_at"])
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 over prev_hash followed by the canonical JSON, as lowercase hex."""
    return hashlib.sha256((str(fields["prev_hash"]) + canonical_json(fields)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: BreakReason
    detail: str


class ChainWalker:
    """Checks rows one at a time in seq order, keeping only the previous hash, so a chain of any
    length is verified in constant memory. `add()` returns the first break and must not be called
    again after one."""

    def __init__(self, *, start_seq: int = 1, start_prev_hash: str = GENESIS_HASH) -> None:
        self.expected_seq = start_seq
        self.prev_hash = start_prev_hash
        self.checked = 0
        self.head_seq = start_seq - 1
        self.head_hash = start_prev_hash

    def add(self, row: Mapping[str, Any]) -> ChainBreak | None:
        seq = row["seq"]
        if seq != self.expected_seq:
            # Name the first missing seq: that is where the chain stops being continuous.
            return ChainBreak(self.expected_seq, BreakReason.SEQ_GAP, f"expected seq {self.expected_seq}, found {seq}")
        if row["prev_hash"] != self.prev_hash:
            return ChainBreak(seq, BreakReason.PREV_HASH_MISMATCH, "prev_hash is not the previous row's hash")
        fields = {name: row[name] for name in CANONICAL_FIELDS}
        if event_hash(fields) != row["hash"]:
            return ChainBreak(seq, BreakReason.HASH_MISMATCH, "the row's content does not match its hash")
        self.checked += 1
        self.expected_seq = seq + 1
        self.prev_hash = self.head_hash = row["hash"]
        self.head_seq = seq
        return None
