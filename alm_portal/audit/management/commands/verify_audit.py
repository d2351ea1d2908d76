"""`manage.py verify_audit`: recompute the audit chain and check it against the signed checkpoints.

Prints `checked=N head_seq=N head_hash=H`; on a break also
`first_broken_seq=N reason=hash_mismatch|prev_hash_mismatch|seq_gap|checkpoint_mismatch` and exits 1.
`--workers N` checks seq ranges in N processes (same output; see alm_portal/audit/chain_walk.py).
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from alm_portal.audit import checkpoints
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import audit_verify


class Command(BaseCommand):
    help = "Verify the audit hash chain and the signed checkpoints; exit 1 on the first break."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=2000, help="rows read per query (default 2000)")
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="processes checking seq ranges side by side (PostgreSQL; default 1, e.g. the number of cores)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workers"] < 1:
            raise CommandError("--workers must be 1 or more")
        result = audit_verify(
            context=AuditContext.system(), chunk_size=options["chunk_size"], workers=options["workers"]
        )
        for line in result.lines():
            self.stdout.write(line)
        if not result.ok:
            self.stderr.write(result.detail)
            sys.exit(1)
        if result.checkpoint_written:
            self.stderr.write(f"checkpoint written: {checkpoints.chain_folder()}/{result.checkpoint_written}")
