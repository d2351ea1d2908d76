"""Use cases of the audit log: the only code that writes AuditEvent rows (docs/audit.md).

- record(): a success (or any) event inside the caller's transaction; if it raises, the caller's
  change rolls back with it, so there is never a change without its event.
- record_outcome(): a denied or failed event in a new transaction of its own, called after the
  caller's transaction has rolled back (API exception handler, page error path, task error path).
- audit_verify(): recompute the chain and compare it with the signed checkpoints.
- audit_export(): JSON Lines that scripts/verify_audit_export.py re-verifies without Django.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any, Protocol

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.utils import timezone

from alm_portal.audit import chain_walk, checkpoints, selectors
from alm_portal.audit.canonical import (
    CANONICAL_FIELDS,
    GENESIS_HASH,
    BreakReason,
    ChainBreak,
    event_hash,
    format_timestamp,
)
from alm_portal.audit.choices import Outcome
from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.locking import AUDIT_CHAIN_LOCK_KEY, hold_transaction_lock
from alm_portal.audit.models import AuditEvent

__all__ = [
    "AuditUsageError",
    "ExportResult",
    "VerificationResult",
    "audit_export",
    "audit_verify",
    "record",
    "record_outcome",
    "scrub_secrets",
]

# `promotion.approved`, `api_token.created`, `auth.sign_in_failed`: lowercase dotted segments.
_ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

# Key words that mark a value as secret. A key is split into words (snake, kebab, dotted and
# camelCase), so `client_secret`, `accessToken` and `private-key` match while `tokens_revoked` or
# `secretary` do not.
_SECRET_WORDS = frozenset({"secret", "password", "passwd", "passphrase", "token", "certificate", "apikey", "pwd"})
_SECRET_WORD_PAIRS = frozenset({("private", "key"), ("api", "key"), ("client", "secret"), ("signing", "key")})
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

_CHUNK_SIZE = 2000


class AuditUsageError(RuntimeError):
    """The audit API was called in a way that could lose or orphan an event (wrong transaction)."""


# --- writing --------------------------------------------------------------------------------------


def record(
    *,
    context: AuditContext,
    action: str,
    target: Model | ObjectRef | None = None,
    related: Model | ObjectRef | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    outcome: str = Outcome.SUCCESS,
    message: str = "",
) -> AuditEvent:
    """Append one event inside the caller's transaction and return it.

    Must be called inside `transaction.atomic()`: the event commits with the change or not at all.
    It takes the chain lock for the rest of that transaction, so call it last, after the change's
    own writes: the lock is then held only until commit, and a transaction never waits for a row
    lock while holding it (which could deadlock with another writer).
    Any exception (lock timeout, a seq race caught by the primary key, a bad argument) propagates so
    that the caller's change is rolled back; never catch and ignore it.
    """
    connection = transaction.get_connection()
    if not _in_caller_transaction(connection):
        raise AuditUsageError(
            "audit.record() must be called inside the caller's transaction.atomic() block, so the change "
            "and its event commit or roll back together; use record_outcome() after a rollback"
        )
    return _append(
        context=context,
        action=action,
        target=target,
        related=related,
        before=before,
        after=after,
        outcome=outcome,
        message=message,
    )


def record_outcome(
    *,
    context: AuditContext,
    action: str,
    outcome: str,
    message: str,
    target: Model | ObjectRef | None = None,
    related: Model | ObjectRef | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append a denied or failed event in a transaction of its own and commit it.

    Call it after the attempted change has rolled back, i.e. outside every atomic block: a durable
    atomic block refuses to nest, so calling it inside a (possibly broken) transaction raises
    AuditUsageError instead of writing an event that the surrounding rollback would discard. In
    tests, the test case's own wrapping transaction is allowed, as for any durable block.
    """
    if outcome not in (Outcome.DENIED, Outcome.FAILED):
        raise ValueError(f"record_outcome() is for denied or failed events, got outcome={outcome!r}")
    if _in_caller_transaction(transaction.get_connection()):
        raise AuditUsageError(
            "audit.record_outcome() must be called after the caller's transaction has ended (outside "
            "transaction.atomic()), or the denied/failed event would be rolled back with it"
        )
    with transaction.atomic(durable=True):
        return _append(
            context=context,
            action=action,
            target=target,
            related=related,
            before=before,
            after=after,
            outcome=outcome,
            message=message,
        )


def _in_caller_transaction(connection: BaseDatabaseWrapper) -> bool:
    """True inside an atomic block opened by application code. The blocks a Django TestCase wraps
    around each test do not count, so tests see the same rules as production."""
    if not connection.in_atomic_block:
        return False
    blocks = getattr(connection, "atomic_blocks", None)
    if not blocks:
        return True
    return any(not getattr(block, "_from_testcase", False) for block in blocks)


def _append(
    *,
    context: AuditContext,
    action: str,
    target: Model | ObjectRef | None,
    related: Model | ObjectRef | None,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    outcome: str,
    message: str,
) -> AuditEvent:
    if not _ACTION_PATTERN.match(action):
        raise ValueError(f"audit action must be a dotted lowercase code like 'promotion.approved', got {action!r}")
    if outcome not in Outcome.values:
        raise ValueError(f"outcome must be one of {Outcome.values}, got {outcome!r}")
    target_ref = _object_ref(target)
    related_ref = _object_ref(related)
    # Everything that can fail on bad input happens before the lock, to keep the lock short.
    event = AuditEvent(
        actor_id=context.actor_id,
        actor_display=_text(context.actor_display, "actor_display"),
        actor_kind=str(context.actor_kind),
        auth_method=_text(context.auth_method, "auth_method"),
        action=action,
        object_type=_text(target_ref.type, "object_type"),
        object_id=_text(target_ref.id, "object_id"),
        object_repr=_text(target_ref.repr, "object_repr"),
        related_type=_text(related_ref.type, "related_type"),
        related_id=_text(related_ref.id, "related_id"),
        related_repr=_text(related_ref.repr, "related_repr"),
        before=_json_payload(before),
        after=_json_payload(after),
        outcome=str(outcome),
        message=_text(message, "message"),
        request_id=_text(context.request_id, "request_id"),
        client_ip=_client_ip(context.client_ip),
        user_agent=_text(context.user_agent, "user_agent"),
    )

    # seq = max + 1 under a transaction-level lock: writers queue here until the previous writer's
    # transaction ends, then read its committed row. If two ever raced anyway (another isolation
    # level, a second database), the primary key on seq turns the race into an IntegrityError in
    # one of them, never into a fork of the chain.
    hold_transaction_lock(AUDIT_CHAIN_LOCK_KEY)
    head_seq, head_hash = _chain_head()
    event.seq, event.prev_hash = head_seq + 1, head_hash
    # Taken after the lock so that occurred_at follows seq order on one clock.
    event.occurred_at = timezone.now()
    event.hash = event_hash(_canonical_fields_of(event))
    event.save()
    # Once committed: a signed checkpoint outside the database if the last one is older than the interval.
    transaction.on_commit(checkpoints.checkpoint_when_due)
    return event


def _chain_head() -> tuple[int, str]:
    """(seq, hash) of the newest committed event, or (0, genesis) for an empty log."""
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    return (head[0], head[1]) if head else (0, GENESIS_HASH)


def _canonical_fields_of(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in CANONICAL_FIELDS}


def _object_ref(obj: Model | ObjectRef | None) -> ObjectRef:
    if obj is None:
        return ObjectRef(type="", id="", repr="")
    if isinstance(obj, ObjectRef):
        return obj
    return ObjectRef.of(obj)


def _text(value: Any, field: str) -> str:
    """A string that PostgreSQL and SQLite store byte for byte, so the stored row hashes like the
    written one: no NUL (PostgreSQL refuses it), no lone surrogates, cut to the column's length."""
    text = _clean_str("" if value is None else str(value))
    max_length = getattr(AuditEvent._meta.get_field(field), "max_length", None)
    return text[:max_length] if max_length else text


def _clean_str(text: str) -> str:
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _client_ip(value: str | None) -> str:
    return _text(value or "", "client_ip")


def scrub_secrets(value: Any) -> Any:
    """Drop every mapping key that names a secret (password, token, client secret, private key,
    certificate…), at any depth. Secrets never reach the audit log, not even hashed."""
    if isinstance(value, Mapping):
        return {key: scrub_secrets(item) for key, item in value.items() if not _names_a_secret(str(key))}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub_secrets(item) for item in value]
    return value


def _names_a_secret(key: str) -> bool:
    words = [word for word in _WORD_SPLIT.split(_CAMEL_BOUNDARY.sub("_", key).lower()) if word]
    if any(word in _SECRET_WORDS for word in words):
        return True
    return any(pair in _SECRET_WORD_PAIRS for pair in pairwise(words))


def _json_payload(value: Mapping[str, Any] | None) -> Any:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"before/after must be a mapping of field names to values, got {type(value).__name__}")
    return _json_safe(scrub_secrets(value))


_JSON_ENCODER = DjangoJSONEncoder()


def _json_safe(value: Any) -> Any:
    """Plain JSON values that come back from a PostgreSQL jsonb column exactly as written, so the
    hash recomputed from the stored row matches: jsonb keeps numbers as decimals and would return
    1e20 as 100000000000000000000 and -0.0 as 0.0, hence integral floats become ints; NaN and
    infinity (which jsonb refuses) become strings; dates, decimals and UUIDs become their ISO/text
    form."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {_clean_str(str(key)): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(item) for item in value]
    try:
        return _clean_str(_JSON_ENCODER.default(value))
    except TypeError:
        return _clean_str(str(value))


# --- verification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationResult:
    """What audit_verify() found. `checked`/`head_*` describe the verified prefix of the chain."""

    checked: int
    head_seq: int
    head_hash: str
    first_broken_seq: int | None = None
    reason: BreakReason | None = None
    detail: str = ""
    checkpoints_checked: int = 0
    checkpoint_written: str | None = None
    event_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def lines(self) -> list[str]:
        """The verify_audit output contract (docs/audit.md §6), shared with the offline verifier."""
        lines = [f"checked={self.checked} head_seq={self.head_seq} head_hash={self.head_hash}"]
        if not self.ok:
            lines.append(f"first_broken_seq={self.first_broken_seq} reason={self.reason}")
        return lines


def audit_verify(
    *,
    context: AuditContext | None = None,
    chunk_size: int = _CHUNK_SIZE,
    write_checkpoint: bool = True,
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> VerificationResult:
    """Recompute the whole chain and compare it with every signed checkpoint.

    Stops at the first break: a missing seq (seq_gap), a row not linked to its predecessor
    (prev_hash_mismatch), a row whose content no longer matches its hash (hash_mismatch), or a
    disagreement with a checkpoint (checkpoint_mismatch: a checkpointed row is missing, e.g. the
    newest rows were deleted, or has another hash; or a checkpoint file is forged, altered or
    missing from the sequence). When the chain is intact a new checkpoint of the verified head is
    written. Either way one `audit.verified` event (success or failed) is appended afterwards.

    workers > 1 checks seq ranges in that many processes (PostgreSQL, outside a transaction; see
    audit.chain_walk) with the same result as one pass.
    `on_progress(checked, total)` is called after every chunk (a job reports progress and renews
    its lease with it).
    """
    context = context or AuditContext.system()
    # Checkpoints first, then the head: every checkpointed seq was committed before we look, so a
    # checkpoint written while we read cannot look like a deleted tail.
    loaded = checkpoints.load_checkpoints()
    genesis = checkpoints.genesis_hash()
    stop_at = selectors.audit_head_seq()
    expected: dict[int, list[checkpoints.Checkpoint]] = {}
    for checkpoint in loaded.valid:
        expected.setdefault(checkpoint.head_seq, []).append(checkpoint)

    checkpoint_hashes = {
        seq: [(checkpoint.name, checkpoint.head_hash) for checkpoint in signed] for seq, signed in expected.items()
    }
    if workers > 1:
        walk = chain_walk.walk_parallel(
            to_seq=stop_at,
            expected=checkpoint_hashes,
            chunk_size=chunk_size,
            workers=workers,
            on_progress=on_progress,
        )
    else:
        walk = chain_walk.walk_serial(
            to_seq=stop_at, expected=checkpoint_hashes, chunk_size=chunk_size, on_progress=on_progress
        )
    found = walk.found
    if found is None:
        beyond = [checkpoint for checkpoint in loaded.valid if checkpoint.head_seq > walk.head_seq]
        if beyond:
            newest = max(beyond, key=lambda checkpoint: checkpoint.head_seq)
            found = ChainBreak(
                walk.head_seq + 1,
                BreakReason.CHECKPOINT_MISMATCH,
                f"checkpoint {newest.name} signed seq {newest.head_seq} but the chain ends at seq {walk.head_seq}",
            )
    problems = [
        ChainBreak(problem.head_seq, BreakReason.CHECKPOINT_MISMATCH, problem.detail) for problem in loaded.problems
    ]
    # Every checkpoint of the chain signs its first event: one that signs another was written for a chain that
    # has since been rewritten from seq 1, or by another database given the same ALM_AUDIT_CHAIN_ID.
    other_start = next((c for c in loaded.valid if c.genesis_hash != genesis), None)
    if other_start is not None:
        problems.append(
            ChainBreak(
                1,
                BreakReason.CHECKPOINT_MISMATCH,
                f"checkpoint {other_start.name} of chain {other_start.chain_id!r} signs another first event: the "
                "log was rewritten from its start, or another database uses the same ALM_AUDIT_CHAIN_ID",
            )
        )
    for candidate in problems:
        if found is None or candidate.seq < found.seq:
            found = candidate

    written = None
    if found is None and write_checkpoint:
        signed = checkpoints.write_checkpoint(head_seq=walk.head_seq, head_hash=walk.head_hash)
        written = signed.name if signed is not None else None

    result = VerificationResult(
        checked=walk.checked,
        head_seq=walk.head_seq,
        head_hash=walk.head_hash,
        first_broken_seq=found.seq if found else None,
        reason=found.reason if found else None,
        detail=found.detail if found else "",
        checkpoints_checked=len(loaded.valid) + len(loaded.problems),
        checkpoint_written=written,
    )
    # Viewing the integrity of the log is itself audited (an auditor's action or a scheduled job).
    with transaction.atomic():
        event = record(
            context=context,
            action="audit.verified",
            outcome=Outcome.SUCCESS if result.ok else Outcome.FAILED,
            message="" if result.ok else " ".join(result.lines()[1:]),
            after={
                "checked": result.checked,
                "head_seq": result.head_seq,
                "head_hash": result.head_hash,
                "first_broken_seq": result.first_broken_seq,
                "reason": str(result.reason) if result.reason else None,
                "detail": result.detail,
                "checkpoints_checked": result.checkpoints_checked,
                "checkpoint_written": written,
                "chain_id": checkpoints.chain_id(),
            },
        )
    return VerificationResult(**{**result.__dict__, "event_seq": event.seq})


# --- export ---------------------------------------------------------------------------------------


class TextSink(Protocol):
    def write(self, text: str, /) -> object: ...


@dataclass(frozen=True)
class ExportResult:
    count: int
    first_seq: int | None
    last_seq: int | None


def export_line(row: Mapping[str, Any]) -> str:
    """One JSON Lines record: every canonical field exactly as hashed (time as text) plus `hash`.

    The same values canonical_json() hashes (rows come from the database as plain JSON types), written once
    instead of through a JSON round trip: the export of a million rows spent most of its time there.
    """
    fields = {name: row[name] for name in CANONICAL_FIELDS}
    if isinstance(fields["occurred_at"], datetime):
        fields["occurred_at"] = format_timestamp(fields["occurred_at"])
    fields["hash"] = row["hash"]
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def audit_export(
    *,
    out: TextSink,
    context: AuditContext,
    from_seq: int | None = None,
    to_seq: int | None = None,
    chunk_size: int = _CHUNK_SIZE,
) -> ExportResult:
    """Write events from_seq..to_seq (default: all) as JSON Lines to `out`, then audit the export.

    The `audit.exported` event is appended after the export and so is not part of it.
    """
    start = max(from_seq or 1, 1)
    stop = min(to_seq, selectors.audit_head_seq()) if to_seq is not None else selectors.audit_head_seq()
    count, first, last = 0, None, None
    for row in selectors.audit_chain_rows(from_seq=start, to_seq=stop, chunk_size=chunk_size):
        out.write(export_line(row) + "\n")
        count += 1
        first = row["seq"] if first is None else first
        last = row["seq"]
    with transaction.atomic():
        record(
            context=context,
            action="audit.exported",
            after={"from_seq": start, "to_seq": stop, "count": count, "first_seq": first, "last_seq": last},
        )
    return ExportResult(count=count, first_seq=first, last_seq=last)
