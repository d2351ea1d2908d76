"""`manage.py demo_ready`: wait until every process of `make run` answers, then say how to sign in.

`make run` starts the emulator, web (which seeds the demo before it serves), a Celery worker and beat at
once, and their start-up lines interleave for about a minute. This process waits for all of them and
prints the URL, the demo users and their password as the last lines, then stays up: honcho stops every
process as soon as one of them ends. If something never answers, it names it and ends, which stops the
demo with the reason on screen instead of a portal that half works.
"""

from __future__ import annotations

import json
import os
import time
from argparse import BooleanOptionalAction
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from alm_portal.accounts.demo import DEMO_PEOPLE, demo_password, demo_people_lines
from alm_portal.accounts.models import User

PROGRESS_EVERY_SECONDS = 15.0


def _answers(url: str, *, verify: str | bool = True, want_status: int | None = None) -> bool:
    try:
        response = requests.get(url, timeout=3, verify=verify, allow_redirects=False)
    except requests.RequestException:
        return False
    return want_status is None or response.status_code == want_status


class Command(BaseCommand):
    help = "Wait for the demo's web server, emulator, worker and beat, then print the URL, users and password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--timeout", type=float, default=600.0, help="Seconds to wait in all (default 600).")
        parser.add_argument("--stay", action=BooleanOptionalAction, default=True, help="Stay up after printing.")

    def handle(self, *args: Any, **options: Any) -> None:
        port = os.environ.get("ALM_PORT") or os.environ.get("PORT") or "8000"
        emulator_port = os.environ.get("ALM_EMULATOR_PORT") or "8443"
        portal = f"http://127.0.0.1:{port}/"
        emulator = f"https://127.0.0.1:{emulator_port}/"
        ca_bundle = settings.ALM_DATAVERSE_CA_BUNDLE or True
        run_dir = Path(settings.VAR_DIR) / "run"
        checks = {
            "web (it seeds the demo first; see its progress on the web.1 lines)": lambda: _answers(
                f"{portal}readyz", want_status=200
            ),
            "Dataverse emulator": lambda: _answers(emulator, verify=ca_bundle),
            "Celery worker": (run_dir / "worker.ready").exists,
            "Celery beat": (run_dir / "beat.ready").exists,
        }
        deadline = time.monotonic() + options["timeout"]
        next_progress = time.monotonic() + PROGRESS_EVERY_SECONDS
        while waiting := [name for name, check in checks.items() if not check()]:
            if time.monotonic() > deadline:
                raise CommandError(f"The demo did not come up within {options['timeout']:.0f} s: {', '.join(waiting)}")
            if time.monotonic() > next_progress:
                self.stdout.write(f"Starting the demo; waiting for: {', '.join(waiting)}")
                next_progress = time.monotonic() + PROGRESS_EVERY_SECONDS
            time.sleep(0.5)

        sign_in_page = emulator
        if settings.ALM_SSO_DEMO_CREDENTIALS and Path(settings.ALM_SSO_DEMO_CREDENTIALS).exists():
            # The identity provider answers on a port of its own, as login.microsoftonline.com is a host of its own.
            sign_in_page = json.loads(Path(settings.ALM_SSO_DEMO_CREDENTIALS).read_text()).get("idp_url", emulator)
        usernames = [person.username for person in DEMO_PEOPLE]
        users = sorted(User.objects.filter(username__in=usernames), key=lambda user: usernames.index(user.username))
        rule = "─" * 78
        for line in (
            rule,
            f"ALM Portal is ready: {portal}",
            *demo_people_lines(users, demo_password()),
            f'"Sign in with Microsoft Entra ID" opens the emulator\'s sign-in page on {sign_in_page}: its',
            "certificate comes from the emulator's own authority, so the browser warns once unless you trust",
            f"{Path(settings.VAR_DIR) / 'dataverse-emulator' / 'ca.pem'} (docs/demo.md says how).",
            "Ctrl-C stops everything.",
            rule,
        ):
            self.stdout.write(line)
        self.stdout.flush()
        while options["stay"]:
            time.sleep(3600)
