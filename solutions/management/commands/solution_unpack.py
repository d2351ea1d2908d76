"""Unpack a solution zip into the folder layout of SolutionPackager (``pac solution unpack``); needs no database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from alm_portal.dataverse.package import PackageError
from alm_portal.dataverse.packager import PackageType, unpack_solution, write_folder

INVALID_INPUT = 2


class Command(BaseCommand):
    help = (
        "Unpack a solution zip into DIR in SolutionPackager's folder layout (Other/Solution.xml, Entities/, ...). "
        "DIR must not exist or be empty. See docs/solution-packager.md."
    )
    # Works on files only: no system checks, no migrations check, no database connection.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("zip", help="the solution zip (unmanaged or managed)")
        parser.add_argument("dir", help="the folder to create")
        parser.add_argument(
            "--package-type",
            choices=[value.value for value in PackageType],
            help="unmanaged, managed or both (default: the flavour the zip carries; both when --managed-zip is given)",
        )
        parser.add_argument("--managed-zip", help="the managed zip of the same version, for --package-type both")

    def handle(self, *args: Any, **options: Any) -> None:
        zip_path = Path(options["zip"])
        managed_zip = Path(options["managed_zip"]) if options["managed_zip"] else None
        package_type = PackageType(options["package_type"]) if options["package_type"] else None
        if managed_zip is not None and package_type is None:
            package_type = PackageType.BOTH
        for given in (zip_path, managed_zip):
            if given is not None and not given.is_file():
                raise CommandError(f"{given}: no such file.", returncode=INVALID_INPUT)
        try:
            unpacked = unpack_solution(zip_path, package_type=package_type, managed_source=managed_zip)
            write_folder(unpacked.files, options["dir"])
        except (PackageError, OSError) as exc:
            raise CommandError(_one_line(exc), returncode=INVALID_INPUT) from exc
        for path in unpacked.managed_differences_not_kept:
            self.stderr.write(f"warning: the managed zip's {path} differs and is not kept by a 'both' folder")
        self.stdout.write(
            f"Unpacked {unpacked.unique_name} {unpacked.version} ({unpacked.package_type.value}) into "
            f"{options['dir']}: {len(unpacked.files)} files."
        )


def _one_line(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, PackageError) else str(exc)
    return " ".join(message.split())
