#!/usr/bin/env python3
"""Re-verify an ALM Portal audit export offline: `python3 verify_audit_export.py FILE` (or - for stdin).

Standard library only, one file, so an auditor can run it anywhere. FILE is what
`manage.py export_audit` writes: one JSON object per line with the fields below plus `hash`.
The hash (docs/audit.md §2 and §7 in the ALM Portal repository):

    canonical = json.dumps(every field except hash, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    hash      = sha256((prev_hash + canonical).encode("utf-8")).hexdigest(); the first prev_hash is 64 zeros

Output as `manage.py verify_audit`: `checked=N head_seq=N head_hash=H`, and on a break
`first_broken_seq=N reason=hash_mismatch|prev_hash_mismatch|seq_gap` with exit status 1.
Exit status 2: no FILE, or FILE cannot be read. `-h` / `--help` prints this text.
An export that starts at seq K > 1 cannot be linked to rows it does not contain: the first row's
prev_hash is taken as given, and a `note=` line says so.
"""

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


def event_hash(row):
    canonical = json.dumps({k: row[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((row["prev_hash"] + canonical).encode("utf-8")).hexdigest()


def verify(lines, out):
    checked, head_seq, head_hash, expected = 0, 0, GENESIS, None
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            complete = (
                isinstance(row, dict)
                and set(row) == {*FIELDS, "hash"}
                and isinstance(row["seq"], int)
                and isinstance(row["prev_hash"], str)
                and isinstance(row["hash"], str)
            )
        except ValueError:
            complete = False
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


def main(argv):
    if len(argv) == 2 and argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    if argv[1] == "-":
        return verify(sys.stdin.buffer.read().decode("utf-8").splitlines(), sys.stdout)
    try:
        with open(argv[1], encoding="utf-8") as lines:
            return verify(lines, sys.stdout)
    except OSError as error:  # missing or unreadable: one line, like a usage error, not a traceback
        print(f"cannot read {argv[1]}: {error.strerror or error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
