"""Pack a SolutionPackager folder into a solution zip (``pac solution pack``); needs no database."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from alm_portal.dataverse.package import PackageError
from alm_portal.dataverse.packager import PackageType, pack_folder, write_file

from .solution_unpack import INVALID_INPUT, _one_line


class Command(BaseCommand):
    help = (
        "Pack DIR (SolutionPackager's folder layout) into a solution zip; ZIP is replaced if it exists. "
        "See docs/solution-packager.md."
    )
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dir", help="the unpacked solution folder (holding Other/Solution.xml)")
        parser.add_argument("zip", help="the zip to write")
        parser.add_argument(
            "--package-type",
            choices=[PackageType.UNMANAGED.value, PackageType.MANAGED.value],
            help="unmanaged or managed (default: the flavour the folder holds; unmanaged when it holds both)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        folder = Path(options["dir"])
        if not folder.is_dir():
            raise CommandError(f"{folder}: no such folder.", returncode=INVALID_INPUT)
        package_type = PackageType(options["package_type"]) if options["package_type"] else None
        try:
            packed = pack_folder(folder, package_type=package_type)
            write_file(packed.data, options["zip"])
        except (PackageError, OSError) as exc:
            raise CommandError(_one_line(exc), returncode=INVALID_INPUT) from exc
        manifest = packed.manifest
        self.stdout.write(
            f"Packed {manifest.unique_name} {manifest.version.text} ({packed.package_type.value}) into "
            f"{options['zip']}: {len(manifest.files)} entries, sha256 {hashlib.sha256(packed.data).hexdigest()}."
        )
