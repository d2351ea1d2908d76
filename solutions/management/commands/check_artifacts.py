"""Check that every stored artifact exists and still has the SHA-256 and size it was registered with."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from solutions import selectors


class Command(BaseCommand):
    help = "Verify every stored solution artifact (exists, SHA-256, size). Exits 1 on any problem."

    def handle(self, *args: Any, **options: Any) -> None:
        report = selectors.artifacts_check()
        for problem in report.problems:
            line = (
                f"{problem.reason} version={problem.version_id} solution={problem.unique_name} "
                f"version_key={problem.version_key} flavour={problem.flavour} path={problem.path} {problem.detail}"
            )
            self.stdout.write(line.rstrip())
        self.stdout.write(
            f"checked={report.checked} ok={report.ok} missing={report.missing} mismatched={report.mismatched}"
        )
        if report.problems:
            raise CommandError(f"{len(report.problems)} artifact problem(s) found", returncode=1)
