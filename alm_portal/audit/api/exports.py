"""Streamed audit exports for the API: JSON Lines (re-verifiable offline) or CSV for spreadsheets.

Rows are read in keyset pages in seq order, so memory stays flat however large the log is. The
export is bounded by the head at the time it was requested: the `audit.exported` event written
for it (before the first byte) is not part of it. CSV cells that a spreadsheet would run as a
formula (starting with = + - @, tab or carriage return) are prefixed with a quote, and every field
is enclosed in double quotes (QUOTE_ALL): a spreadsheet that splits on another separator (`;` in
many locales) then keeps `a;=1+1` as one cell of text instead of starting a new cell with `=1+1`.
Use JSON Lines to verify hashes. A filtered JSON Lines export starts with a header record stating its
filter (export_header), so it verifies offline as a filtered export rather than as a broken chain.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

from alm_portal.audit.canonical import CANONICAL_FIELDS, format_timestamp
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import export_line

COLUMNS: tuple[str, ...] = (*CANONICAL_FIELDS, "hash")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CHUNK = 1000


def neutralise_cell(value: Any) -> str:
    """The text of one CSV cell, made inert for spreadsheets (OWASP CSV injection)."""
    if value is None:
        return ""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _pages(events: QuerySet[AuditEvent], *, to_seq: int) -> Iterator[list[dict[str, Any]]]:
    last = 0
    while True:
        page = list(events.filter(seq__gt=last, seq__lte=to_seq).order_by("seq").values(*COLUMNS)[:_CHUNK])
        if not page:
            return
        yield page
        last = page[-1]["seq"]


# The key of a filtered export's first record (scripts/verify_audit_export.py reads it).
HEADER_KEY = "audit_export"


def export_header(*, filters: dict[str, Any], to_seq: int, exported_at: str) -> str:
    """The first line of a filtered JSON Lines export: which filter chose its rows, and up to which seq.

    A filtered export holds only the matching events, so its seqs have gaps by design; the header says
    so, and the offline verifier then checks each row's own hash and the links between consecutive
    rows instead of reporting the first gap as a break. A whole export has no header (its file is
    what it always was).
    """
    header = {
        "format": "alm-portal-audit-export/1",
        "filtered": True,
        "filters": filters,
        "to_seq": to_seq,
        "exported_at": exported_at,
        "note": "Only the events matching the filters; their seqs have gaps. Each event's hash covers its "
        "prev_hash, so each row verifies on its own, and consecutive rows link.",
    }
    return json.dumps({HEADER_KEY: header}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def jsonl_stream(events: QuerySet[AuditEvent], *, to_seq: int, header: str | None = None) -> Iterator[str]:
    if header is not None:
        yield header + "\n"
    # One chunk per page of rows: a write per row made a million-row export spend most of its time in the server.
    for page in _pages(events, to_seq=to_seq):
        yield "".join(export_line(row) + "\n" for row in page)


def csv_stream(events: QuerySet[AuditEvent], *, to_seq: int) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_ALL)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(COLUMNS)
    yield flush()
    for page in _pages(events, to_seq=to_seq):
        for row in page:
            # The values exactly as hashed: the time as its canonical text, JSON fields as JSON.
            fields = dict(row, occurred_at=format_timestamp(row["occurred_at"]))
            writer.writerow([neutralise_cell(fields[name]) for name in COLUMNS])
        yield flush()
