"""`manage.py export_audit`: audit events as JSON Lines, re-verifiable offline.

Each line holds every canonical field exactly as hashed plus `hash`; check a file with
`python3 scripts/verify_audit_export.py FILE` (standard library only).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import audit_export


class Command(BaseCommand):
    help = "Export audit events as JSON Lines (all, or a seq range) to a file or stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", default="-", help="file to write; '-' (default) is stdout")
        parser.add_argument("--from-seq", type=int, default=None, help="first seq to export (default 1)")
        parser.add_argument("--to-seq", type=int, default=None, help="last seq to export (default: the newest)")

    def handle(self, *args: Any, **options: Any) -> None:
        from_seq, to_seq = options["from_seq"], options["to_seq"]
        if from_seq is not None and from_seq < 1:
            raise CommandError("--from-seq must be 1 or more")
        if from_seq is not None and to_seq is not None and to_seq < from_seq:
            raise CommandError("--to-seq must not be below --from-seq")
        context = AuditContext.system()
        if options["output"] == "-":
            result = audit_export(out=self.stdout, context=context, from_seq=from_seq, to_seq=to_seq)
        else:
            with open(options["output"], "w", encoding="utf-8", newline="\n") as out:
                result = audit_export(out=out, context=context, from_seq=from_seq, to_seq=to_seq)
        self.stderr.write(f"exported {result.count} events (seq {result.first_seq}..{result.last_seq})")
