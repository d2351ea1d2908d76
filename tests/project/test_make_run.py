"""`make run` as a newcomer meets it: on its embedded defaults (SQLite, the filesystem broker, the emulator,
demo data), it says what it is doing while the demo is seeded, prints the URL, the demo users and their
password as the last lines once every process answers, and serves the product's own pages (DEBUG off: no
technical 404 listing the URL patterns, static files still served).

It runs the real `make run` (honcho, gunicorn, a Celery worker, beat, the emulator) on free ports with a
temporary var/ folder, outside the test database and without DATABASE_URL or REDIS_URL, as on a fresh clone.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
STAMP = ".venv/.installed-stamp"
# A bound on "it starts at all", not a speed check: about 1.5 minutes on an idle 2-core machine, under three on a
# busy CI machine.
START_TIMEOUT = 420.0
DEMO_USERNAMES = ("admin", "maker", "approver", "approver2", "auditor", "maker2")
# honcho's prefix: "16:13:51 ready.1    | text"
PREFIXED = re.compile(r"^\d\d:\d\d:\d\d (\S+)\s*\| ?(.*)$")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _embedded_defaults_environment(var_dir: Path) -> dict[str, str]:
    """The caller's environment without what points the product at servers or at test mode."""
    dropped = ("DATABASE_URL", "REDIS_URL", "ALM_MODE", "DJANGO_SETTINGS_MODULE", "DEMO_PASSWORD", "DEBUG")
    environment = {
        key: value for key, value in os.environ.items() if key not in dropped and not key.startswith(("PYTEST", "ALM_"))
    }
    return {**environment, "ALM_VAR_DIR": str(var_dir)}


@contextlib.contextmanager
def _make_run(var_dir: Path, port: int, emulator_port: int) -> Iterator[subprocess.Popen[bytes]]:
    command = ["make", "-C", str(ROOT), "-o", STAMP, "run", f"PORT={port}", f"EMULATOR_PORT={emulator_port}"]
    command.append(f"VAR={var_dir}")
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_embedded_defaults_environment(var_dir),
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _read_until_banner(process: subprocess.Popen[bytes]) -> list[str]:
    """Every line up to the banner's closing rule (honcho's prefix included).

    It reads the pipe's file descriptor itself: a buffered readline may pull the whole banner into Python's buffer
    in one read, after which select() sees nothing more on the descriptor and would wait for output that never
    comes once the product is quiet.
    """
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(descriptor, selectors.EVENT_READ)
    lines: list[str] = []
    pending = b""
    rules = 0
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not selector.select(timeout=1.0):
            if process.poll() is not None:
                break
            continue
        chunk = os.read(descriptor, 65536)
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            lines.append(line)
            if line.rstrip().endswith("─" * 20):
                rules += 1
                if rules == 2:
                    return lines
    pytest.fail("make run printed no banner within the time limit; its output ended with:\n" + "\n".join(lines[-60:]))


@pytest.mark.slow
@pytest.mark.timeout(START_TIMEOUT + 120)
def test_make_run_says_what_it_does_then_prints_url_users_and_password_last(tmp_path: Path) -> None:
    if not (ROOT / STAMP).exists():
        pytest.skip("the project is not installed (make install)")
    port, emulator_port = _free_port(), _free_port()
    var_dir = tmp_path / "var"

    with _make_run(var_dir, port, emulator_port) as process:
        output = _read_until_banner(process)
        parsed = [match.groups() for line in output if (match := PREFIXED.match(line))]
        texts = [text for _, text in parsed]
        banner_start = max(i for i, text in enumerate(texts) if text.startswith("ALM Portal is ready:"))
        banner = parsed[banner_start - 1 :]

        # What happens while the demo is seeded is said as it happens, before the banner.
        assert "Seeding the demo: promotion history" in "\n".join(texts[:banner_start])
        assert "Seeding the demo: done" in texts[:banner_start]
        # make run allows local repositories under var/: the history is in the demo's repository, with a
        # version built from a maker's commit (docs/demo.md §7).
        seeding = "\n".join(texts[:banner_start])
        assert f"  source IncidentReporting → {var_dir / 'git-repositories' / 'contoso.git'}: " in seeding
        assert re.search(r"^  build IncidentReporting 1\.0\.2\.0 from main @ [0-9a-f]{12} ", seeding, re.MULTILINE)
        # The banner comes last, in one piece, from the process that waited for every other one.
        assert {name for name, _ in banner} == {"ready.1"}, banner
        banner_text = "\n".join(text for _, text in banner)
        assert f"ALM Portal is ready: http://127.0.0.1:{port}/" in banner_text
        password = (var_dir / "demo-password").read_text().strip()
        assert f"password for all: {password}" in banner_text
        for username in DEMO_USERNAMES:
            assert re.search(rf"^  {username} ", banner_text, re.MULTILINE), username
        assert str(var_dir / "dataverse-emulator" / "ca.pem") in banner_text

        # The product's own 404 page, not Django's technical one listing every URL pattern.
        missing = requests.get(f"http://127.0.0.1:{port}/no-such-page/", timeout=10)
        assert missing.status_code == 404
        assert "Nothing here" in missing.text
        assert "URLconf" not in missing.text and "DEBUG" not in missing.text
        # Static files are served with DEBUG off.
        stylesheet = requests.get(f"http://127.0.0.1:{port}/static/css/portal.css", timeout=10)
        assert stylesheet.status_code == 200
        assert stylesheet.headers["Content-Type"].startswith("text/css")
        # And the password printed signs in.
        session = requests.Session()
        login = session.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
        assert token, login.text[:500]
        signed_in = session.post(
            f"http://127.0.0.1:{port}/accounts/login/",
            data={"username": "maker", "password": password, "csrfmiddlewaretoken": token.group(1)},
            headers={"Referer": f"http://127.0.0.1:{port}/accounts/login/"},
            timeout=10,
        )
        assert signed_in.status_code == 200
        assert "Max Maker" in signed_in.text or "maker" in signed_in.text
        assert "/accounts/login/" not in signed_in.url
