"""Walking the audit chain for audit_verify(): in one process, or split over seq ranges in several.

Every row's hash depends only on the row itself (its prev_hash is one of its columns), so ranges
can be checked independently: each range checks its rows' hashes, the prev_hash links inside it,
its seqs for gaps and the checkpoints that fall into it, and reports the prev_hash of its first row
and the hash of its last. Stitching the ranges in order then checks the links across range
boundaries. The result is the same as walking the whole chain in one pass: the same first break
(seq and reason), the same count of verified rows before it and the same head.

Ranges run in forked worker processes, each with its own database connection (PostgreSQL only; a
caller inside a transaction, or SQLite, walks in one process, since forked children could not see
uncommitted rows or share a SQLite file lock safely).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from django.db import connection, connections

from alm_portal.audit.canonical import GENESIS_HASH, BreakReason, ChainBreak, ChainWalker
from alm_portal.audit.selectors import audit_chain_rows

# Expected hashes per checkpointed seq: {seq: ((checkpoint file name, signed hash), ...)}.
CheckpointHashes = Mapping[int, Sequence[tuple[str, str]]]
# on_progress(checked, total): a verification job reports progress (and renews its lease) with it.
Progress = Callable[[int, int], None] | None

# Rows per range: big enough that per-range overhead (a process hand-off, one query) is noise,
# small enough that work spreads evenly and a break near the start stops the walk early.
MIN_RANGE_ROWS = 50_000


@dataclass(frozen=True)
class ChainWalk:
    """The verified prefix of the chain and the first break after it (None: the chain is intact)."""

    checked: int
    head_seq: int
    head_hash: str
    found: ChainBreak | None


@dataclass(frozen=True)
class RangeResult:
    from_seq: int
    to_seq: int
    first_prev_hash: str | None  # None when the range's first seq is missing
    checked: int
    head_seq: int
    head_hash: str
    found: ChainBreak | None


def _checkpoint_break(row: Mapping[str, object], expected: CheckpointHashes) -> ChainBreak | None:
    seq = int(row["seq"])  # type: ignore[call-overload]
    for name, signed_hash in expected.get(seq, ()):
        if signed_hash != row["hash"]:
            detail = f"checkpoint {name} signed another hash for seq {seq}"
            return ChainBreak(seq, BreakReason.CHECKPOINT_MISMATCH, detail)
    return None


def _walk(
    rows: Iterator[Mapping[str, object]],
    *,
    walker: ChainWalker,
    expected: CheckpointHashes,
    to_seq: int,
    on_progress: Progress = None,
    every: int = 1,
) -> ChainBreak | None:
    found: ChainBreak | None = None
    for row in rows:
        found = walker.add(row) or _checkpoint_break(row, expected)
        if found is not None:
            return found
        if on_progress is not None and walker.checked % every == 0:
            on_progress(walker.checked, to_seq)
    if walker.head_seq < to_seq:
        return ChainBreak(walker.head_seq + 1, BreakReason.SEQ_GAP, f"seq {walker.head_seq + 1} is missing")
    return None


def walk_serial(*, to_seq: int, expected: CheckpointHashes, chunk_size: int, on_progress: Progress = None) -> ChainWalk:
    """Walk seq 1..to_seq in this process; on_progress after every chunk."""
    walker = ChainWalker()
    rows = audit_chain_rows(from_seq=1, to_seq=to_seq, chunk_size=chunk_size)
    found = _walk(rows, walker=walker, expected=expected, to_seq=to_seq, on_progress=on_progress, every=chunk_size)
    return ChainWalk(checked=walker.checked, head_seq=walker.head_seq, head_hash=walker.head_hash, found=found)


def check_range(*, from_seq: int, to_seq: int, expected: CheckpointHashes, chunk_size: int) -> RangeResult:
    """Check seq from_seq..to_seq on their own; the link to the previous range is left to the caller."""
    rows = audit_chain_rows(from_seq=from_seq, to_seq=to_seq, chunk_size=chunk_size)
    first = next(rows, None)
    if first is None:
        missing = ChainBreak(from_seq, BreakReason.SEQ_GAP, f"seq {from_seq} is missing")
        return RangeResult(from_seq, to_seq, None, 0, from_seq - 1, "", missing)
    first_prev_hash = str(first["prev_hash"]) if first["seq"] == from_seq else None
    # Trust the first row's own prev_hash here; stitching compares it with the previous range's head.
    walker = ChainWalker(start_seq=from_seq, start_prev_hash=str(first["prev_hash"]))

    def all_rows() -> Iterator[Mapping[str, object]]:
        yield first
        yield from rows

    found = _walk(all_rows(), walker=walker, expected=expected, to_seq=to_seq)
    head_hash = walker.head_hash if walker.checked else ""
    return RangeResult(from_seq, to_seq, first_prev_hash, walker.checked, walker.head_seq, head_hash, found)


def _check_range_task(args: tuple[int, int, CheckpointHashes, int]) -> RangeResult:
    from_seq, to_seq, expected, chunk_size = args
    try:
        return check_range(from_seq=from_seq, to_seq=to_seq, expected=expected, chunk_size=chunk_size)
    finally:
        connection.close()


def _forget_inherited_connections() -> None:
    # The parent closed its connections before forking; drop the wrappers' state all the same so
    # that each child opens a connection of its own on first use.
    for alias in connections:
        connections[alias].connection = None


def ranges(*, to_seq: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous seq ranges covering 1..to_seq, about eight per worker, none under MIN_RANGE_ROWS."""
    count = max(1, min(workers * 8, to_seq // MIN_RANGE_ROWS))
    size = -(-to_seq // count)  # ceiling
    return [(start, min(start + size - 1, to_seq)) for start in range(1, to_seq + 1, size)]


def stitch(results: Iterator[RangeResult], *, total: int = 0, on_progress: Progress = None) -> ChainWalk:
    """Combine range results in seq order into the walk a single pass would have made."""
    checked, head_seq, head_hash = 0, 0, GENESIS_HASH
    for result in results:
        if on_progress is not None and checked:
            on_progress(checked, total)
        if result.first_prev_hash is not None and result.first_prev_hash != head_hash:
            found = ChainBreak(
                result.from_seq, BreakReason.PREV_HASH_MISMATCH, "prev_hash is not the previous row's hash"
            )
            return ChainWalk(checked, head_seq, head_hash, found)
        checked += result.checked
        if result.checked:
            head_seq, head_hash = result.head_seq, result.head_hash
        if result.found is not None:
            return ChainWalk(checked, head_seq, head_hash, result.found)
    return ChainWalk(checked, head_seq, head_hash, None)


def can_walk_in_parallel() -> bool:
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def walk_parallel(
    *, to_seq: int, expected: CheckpointHashes, chunk_size: int, workers: int, on_progress: Progress = None
) -> ChainWalk:
    """Walk seq 1..to_seq over `workers` forked processes; falls back to one process where that is unsafe.
    on_progress runs in this process, as ranges finish in order."""
    if workers <= 1 or to_seq < 2 * MIN_RANGE_ROWS or not can_walk_in_parallel():
        return walk_serial(to_seq=to_seq, expected=expected, chunk_size=chunk_size, on_progress=on_progress)
    tasks = [(start, stop, expected, chunk_size) for start, stop in ranges(to_seq=to_seq, workers=workers)]
    connections.close_all()  # children must not share the parent's sockets
    context = multiprocessing.get_context("fork")
    with context.Pool(processes=workers, initializer=_forget_inherited_connections) as pool:
        # Ordered results, so stitching can stop at the first break; leaving the block terminates the rest.
        return stitch(pool.imap(_check_range_task, tasks), total=to_seq, on_progress=on_progress)
