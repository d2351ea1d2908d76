"""`manage.py verify_audit`: recompute the audit chain and check it against the signed checkpoints.

Prints `checked=N head_seq=N head_hash=H`; on a break also
`first_broken_seq=N reason=hash_mismatch|prev_hash_mismatch|seq_gap|checkpoint_mismatch` and exits 1.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import audit_verify


class Command(BaseCommand):
    help = "Verify the audit hash chain and the signed checkpoints; exit 1 on the first break."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=2000, help="rows read per query (default 2000)")

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit_verify(context=AuditContext.system(), chunk_size=options["chunk_size"])
        for line in result.lines():
            self.stdout.write(line)
        if not result.ok:
            self.stderr.write(result.detail)
            sys.exit(1)
        if result.checkpoint_written:
            self.stderr.write(f"checkpoint written: {result.checkpoint_written}")
