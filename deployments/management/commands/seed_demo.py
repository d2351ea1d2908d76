import json
import os
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from alm_portal.accounts.demo import demo_people_lines, directory_names, seed_demo_people
from deployments.demo import (
    seed_demo_derived_version,
    seed_demo_environments,
    seed_demo_history,
    seed_demo_pipelines,
)
from deployments.demo_source import demo_repository, seed_demo_source


def _wait_for_emulator(state_file: Path, timeout: float) -> dict[str, Any]:
    """The emulator writes demo-credentials.json next to its state once its demo seed is laid out."""
    credentials = state_file.parent / "demo-credentials.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if credentials.exists():
            try:
                return json.loads(credentials.read_text())
            except json.JSONDecodeError:
                pass  # being written right now
        time.sleep(0.25)
    raise CommandError(f"The Dataverse emulator did not write {credentials} within {timeout:.0f} s.")


class Command(BaseCommand):
    help = "Lay out the demo (idempotent): teams, users and, with the emulator, environments and history."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--emulator-state",
            type=Path,
            default=None,
            help="State file of a running `python -m dataverse_emulator --seed demo`; its demo orgs are registered.",
        )
        parser.add_argument("--wait", type=float, default=60.0, help="Seconds to wait for the emulator (default 60).")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("seed_demo is refused in production mode (ALM_MODE=production).")
        self.stdout.write("Seeding the demo: people and teams")
        emulator = None
        if options["emulator_state"] is not None:
            self.stdout.write("Seeding the demo: waiting for the Dataverse emulator's demo organisations")
            emulator = _wait_for_emulator(options["emulator_state"], options["wait"])
        # With the emulator, its directory names the people: the sign-in page and the portal agree.
        users, password = seed_demo_people(
            directory=directory_names(emulator.get("identities") or []) if emulator else None
        )
        if emulator is not None:
            self.stdout.write(f"Dataverse emulator: {emulator['base_url']} (tenant {emulator['tenant_id']})")
            for environment in seed_demo_environments(emulator):
                self.stdout.write(f"  environment {environment.name:<13} {environment.url}")
            for pipeline in seed_demo_pipelines():
                stages = " → ".join(
                    [pipeline.development_environment.name, *pipeline.stages.values_list("name", flat=True)]
                )
                self.stdout.write(f"  pipeline {pipeline.name}: {stages}")
            self.stdout.write(
                "Seeding the demo: promotion history, the first time only (about a minute: each export, "
                "pre-flight and import runs against the emulator)"
            )
            stories = seed_demo_history(emulator)
            derived = seed_demo_derived_version()
            for story in [*stories, *([derived] if derived else [])]:
                self.stdout.write(
                    f"  promotion {story.solution} {story.version} → {story.stage}: {story.status} ({story.note})"
                )
            if demo_repository() is not None:
                self.stdout.write("Seeding the demo: the versions in Git, and a version built from a maker's commit")
            for line in seed_demo_source():
                self.stdout.write(line)
        self.stdout.write("Seeding the demo: done")
        port = os.environ.get("ALM_PORT") or os.environ.get("PORT")
        if port:
            self.stdout.write(f"ALM Portal: http://127.0.0.1:{port}/")
        for line in demo_people_lines(users, password):
            self.stdout.write(line)
