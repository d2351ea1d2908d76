#!/usr/bin/env python3
"""Re-verify an ALM Portal audit export offline: `python3 verify_audit_export.py FILE` (or - for stdin).

Standard library only, one file, so an auditor can run it anywhere. FILE is what
`manage.py export_audit` or the API's export (`GET /api/v1/audit-events/export/`) writes: one JSON
object per line with the fields below plus `hash`. The hash (README "Audit hash format"):

    canonical = json.dumps(every field except hash, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    hash      = sha256((prev_hash + canonical).encode("utf-8")).hexdigest(); the first prev_hash is 64 zeros

Whole exports: the output is that of `manage.py verify_audit`, `checked=N head_seq=N head_hash=H`, and
on a break `first_broken_seq=N reason=hash_mismatch|prev_hash_mismatch|seq_gap` with exit status 1.
An export that starts at seq K > 1 cannot be linked to rows it does not contain: the first row's
prev_hash is taken as given, and a `note=` line says so.

Filtered exports (the API's export with any filter) start with a header record
`{"audit_export": {"filtered": true, "filters": {...}, "to_seq": N, ...}}` and hold only the matching
rows, so their seqs have gaps by design. They are verified as what they are: the first line of output
states the filter (`filter={...}`); every row's own hash is checked, rows must come in rising seq
order, and a row's prev_hash is checked against the row before it wherever their seqs are consecutive
(and against genesis for seq 1). Output: `checked=N links_checked=L unlinked=U head_seq=N head_hash=H`;
a break is `first_broken_seq=N reason=hash_mismatch|prev_hash_mismatch|seq_order` with exit status 1.
A filtered export cannot show that rows outside the filter are intact or that none was removed
between two unlinked rows: verify a whole export (or `manage.py verify_audit`) for that.
`--filtered` verifies a file without the header (an export made before it existed) the same way.

Exit status: 0 verified, 1 broken, 2 the file could not be read (or bad arguments).
"""

import argparse
import hashlib
import json
import sys

# Same list as alm_portal/audit/canonical.py CANONICAL_FIELDS (a test keeps them equal).
FIELDS = (
    "seq", "occurred_at", "actor_id", "actor_display", "actor_kind", "auth_method", "action",
    "object_type", "object_id", "object_repr", "related_type", "related_id", "related_repr",
    "before", "after", "outcome", "message", "request_id", "client_ip", "user_agent", "prev_hash",
)  # fmt: skip
GENESIS = "0" * 64
# The key of a filtered export's first record (alm_portal/audit/api/exports.py writes it).
HEADER_KEY = "audit_export"


def event_hash(row):
    canonical = json.dumps({k: row[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((row["prev_hash"] + canonical).encode("utf-8")).hexdigest()


def _parse(line):
    """(row, complete): the decoded line and whether it is a whole event."""
    try:
        row = json.loads(line)
    except ValueError:
        return None, False
    complete = (
        isinstance(row, dict)
        and set(row) == {*FIELDS, "hash"}
        and isinstance(row["seq"], int)
        and isinstance(row["prev_hash"], str)
        and isinstance(row["hash"], str)
    )
    return row, complete


def _header(line):
    """The header record of a filtered export, or None when the line is not one."""
    row, _ = _parse(line)
    if isinstance(row, dict) and set(row) == {HEADER_KEY} and isinstance(row[HEADER_KEY], dict):
        return row[HEADER_KEY]
    return None


def verify(lines, out):
    """A whole export (or a contiguous seq range): every row links to the one before it."""
    checked, head_seq, head_hash, expected = 0, 0, GENESIS, None
    for line in lines:
        if not line.strip():
            continue
        row, complete = _parse(line)
        if expected is None:  # first row: seq 1 links to genesis; a later start is taken as given
            if complete and row["seq"] != 1:
                print(f"note=export starts at seq {row['seq']}: its prev_hash is taken as given", file=out)
                head_seq, head_hash = row["seq"] - 1, row["prev_hash"]
            expected = head_seq + 1
        broken = None
        if not complete:
            broken = (expected, "hash_mismatch")  # an unreadable or incomplete line cannot hash correctly
        elif row["seq"] != expected:
            broken = (expected, "seq_gap")
        elif row["prev_hash"] != head_hash:
            broken = (row["seq"], "prev_hash_mismatch")
        elif event_hash(row) != row["hash"]:
            broken = (row["seq"], "hash_mismatch")
        if broken:
            print(f"checked={checked} head_seq={head_seq} head_hash={head_hash}", file=out)
            print(f"first_broken_seq={broken[0]} reason={broken[1]}", file=out)
            return 1
        checked, head_seq, head_hash, expected = checked + 1, row["seq"], row["hash"], row["seq"] + 1
    print(f"checked={checked} head_seq={head_seq} head_hash={head_hash}", file=out)
    return 0


def _filtered_summary(checked, links, unlinked, head_seq, head_hash):
    return f"checked={checked} links_checked={links} unlinked={unlinked} head_seq={head_seq} head_hash={head_hash}"


def verify_filtered(lines, out, filters):
    """A filtered export: each row's own hash, rising seqs, links where seqs are consecutive."""
    stated = "unknown (--filtered)" if filters is None else json.dumps(filters, sort_keys=True, ensure_ascii=False)
    print(f"filter={stated}", file=out)
    checked = links = unlinked = 0
    head_seq, head_hash = 0, GENESIS
    for line in lines:
        if not line.strip():
            continue
        row, complete = _parse(line)
        broken = None
        if not complete:
            broken = (head_seq + 1, "hash_mismatch")
        elif row["seq"] <= head_seq:
            broken = (row["seq"], "seq_order")
        elif event_hash(row) != row["hash"]:
            broken = (row["seq"], "hash_mismatch")
        elif row["seq"] == head_seq + 1 and row["prev_hash"] != head_hash:
            broken = (row["seq"], "prev_hash_mismatch")
        if broken:
            print(_filtered_summary(checked, links, unlinked, head_seq, head_hash), file=out)
            print(f"first_broken_seq={broken[0]} reason={broken[1]}", file=out)
            return 1
        if row["seq"] == head_seq + 1:
            links += 1
        else:
            unlinked += 1
        checked, head_seq, head_hash = checked + 1, row["seq"], row["hash"]
    print(_filtered_summary(checked, links, unlinked, head_seq, head_hash), file=out)
    print(
        "note=filtered export: each row's own hash is checked and rows are linked where their seqs are "
        "consecutive; rows outside the filter are not in it (verify a whole export for those)",
        file=out,
    )
    return 0


def verify_export(lines, out, *, filtered=False):
    """Verify an export read as lines: a filtered one (header record, or `filtered`) or a whole one."""
    lines = iter(lines)
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        return verify([], out)
    header = _header(first)
    if header is not None:
        if header.get("filtered") or filtered:
            return verify_filtered(lines, out, header.get("filters", {}))
        return verify(lines, out)
    rest = _chain([first], lines)
    return verify_filtered(rest, out, None) if filtered else verify(rest, out)


def _chain(head, tail):
    yield from head
    yield from tail


def _arguments(argv):
    parser = argparse.ArgumentParser(
        prog="verify_audit_export.py",
        description=__doc__.strip().splitlines()[0],
        epilog="Whole exports verify as a chain; filtered exports (with their header record) row by row, "
        "with links where seqs are consecutive. Exit status: 0 verified, 1 broken, 2 unreadable.",
    )
    parser.add_argument("file", metavar="FILE", help="the JSON Lines export, or - for standard input")
    parser.add_argument(
        "--filtered",
        action="store_true",
        help="verify as a filtered export even without its header record (exports made before it existed)",
    )
    return parser.parse_args(argv[1:])


def main(argv):
    arguments = _arguments(argv)
    try:
        if arguments.file == "-":
            lines = sys.stdin.buffer.read().decode("utf-8").splitlines()
            return verify_export(lines, sys.stdout, filtered=arguments.filtered)
        with open(arguments.file, encoding="utf-8") as lines:
            return verify_export(lines, sys.stdout, filtered=arguments.filtered)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error=cannot read {arguments.file}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
