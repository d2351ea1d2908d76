"""Audit chain verification and export throughput on a scale-seeded database (issue 8).

    .venv/bin/python bench/scale_seed.py --database alm_bench_scale --recreate        # once
    .venv/bin/python bench/bench_audit_throughput.py --database alm_bench_scale [--workers 1 2]
        [--export-events N] [--skip-verify] [--skip-export]

Verification: the product's audit_verify() (what `manage.py verify_audit [--workers N]` runs) over the
whole chain, once per --workers value, checkpoints included; each run appends its `audit.verified`
event and a checkpoint, as in production.

Export: the API's streamed exports (GET /api/v1/audit-events/export/?file_format=jsonl|csv; the same
generators, consumed in this process without HTTP) over the first --export-events events (default:
all), counting events and bytes. JSON Lines is the re-verifiable format; CSV has formula-like cells
neutralised.

Prints events/s (and MB/s for exports). Never pass/fail.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale_seed  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the verification workers); PostgreSQL's
    own backends are not included."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def verify(workers: int) -> tuple[str, int, float, str]:
    from alm_portal.audit.context import AuditContext
    from alm_portal.audit.services import audit_verify

    started, cpu = time.perf_counter(), cpu_seconds()
    result = audit_verify(context=AuditContext.system(), workers=workers)
    elapsed = time.perf_counter() - started
    outcome = "ok" if result.ok else " ".join(result.lines()[1:])
    outcome += f"; {cpu_seconds() - cpu:.0f} CPU s in Python processes"
    return f"verify_audit --workers {workers}", result.checked, elapsed, outcome


def export(file_format: str, to_seq: int) -> tuple[str, int, float, int]:
    from alm_portal.audit import selectors
    from alm_portal.audit.api.exports import csv_stream, jsonl_stream

    stream = csv_stream if file_format == "csv" else jsonl_stream
    events = selectors.audit_events()
    started = time.perf_counter()
    size = lines = 0
    for chunk in stream(events, to_seq=to_seq):
        size += len(chunk.encode("utf-8"))
        lines += chunk.count("\n")
    elapsed = time.perf_counter() - started
    count = lines - 1 if file_format == "csv" else lines  # CSV starts with a header line
    return f"export {file_format}", count, elapsed, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--pg", default=scale_seed.DEFAULT_PG)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="verification runs (default 1 2)")
    parser.add_argument("--export-events", type=int, default=None, help="export seq 1..N (default: all)")
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args()
    scale_seed.configure_django(database=args.database, pg=args.pg)
    from alm_portal.audit import selectors

    head = selectors.audit_head_seq()
    print(f"audit events in {args.database}: {head:,}", flush=True)
    rows: list[str] = []
    if not args.skip_verify:
        for workers in args.workers:
            label, count, elapsed, outcome = verify(workers)
            rows.append(
                f"| {label:<26} | {count:>10,} | {elapsed:8.1f} | {count / elapsed:>9,.0f} | {'':>6} | {outcome} |"
            )
            print(rows[-1], flush=True)
    if not args.skip_export:
        to_seq = min(args.export_events or head, head)
        for file_format in ("jsonl", "csv"):
            label, count, elapsed, size = export(file_format, to_seq)
            mb_s = size / elapsed / 1e6
            rows.append(
                f"| {label:<26} | {count:>10,} | {elapsed:8.1f} | {count / elapsed:>9,.0f} | {mb_s:6.1f} "
                f"| {size / 1e6:,.0f} MB |"
            )
            print(rows[-1], flush=True)
    print()
    print(f"| {'operation':<26} | {'events':>10} | {'seconds':>8} | {'events/s':>9} | {'MB/s':>6} | result |")
    print(f"|{'-' * 28}|{'-' * 12}|{'-' * 10}|{'-' * 11}|{'-' * 8}|--------|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
