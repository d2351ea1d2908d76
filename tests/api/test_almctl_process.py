"""almctl as CI runs it: its own process, over real HTTP, against the live portal and a real worker
(issue 13, item 5).

- a stage that requires a change and a backup reference is reachable with --change-reference and
  --backup-reference, and a 400 prints the API's field messages, not only "not valid";
- `--wait` survives connections reset and refused while it polls (a TCP proxy between almctl and the
  portal misbehaves), and only an outage lasting --outage seconds ends it, with exit code 4;
- global options are accepted after the command too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.cli import almctl
from deployments.models import Promotion
from deployments.services import stage_update
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    contoso_fixture,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)
from tests.e2e.conftest import artifact_storage, module_artifacts, worker  # noqa: F401 - fixtures
from tests.support.fault_proxy import FaultProxy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    # A real Celery worker runs pre-flight and imports while almctl, in its own process, waits.
    pytest.mark.usefixtures("worker"),
]
SCRIPT = str(Path(almctl.__file__))


class Almctl:
    """almctl in a child process (standard library + requests), its output read as it comes."""

    def __init__(self, args: list[str], token: str) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO", "ALM_"))}
        env["ALM_TOKEN"] = token
        self.process = subprocess.Popen(
            [sys.executable, SCRIPT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def wait_for(self, text: str, *, times: int = 1, timeout: float = 60.0) -> None:
        """Until `text` appears `times` times in its output (a guard against hangs, not a measurement)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "".join(self.out + self.err).count(text) >= times:
                return
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the readers drain
                if "".join(self.out + self.err).count(text) >= times:
                    return
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} did not appear {times}×:\n{''.join(self.out)}\n{''.join(self.err)}")

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code, "".join(self.out), "".join(self.err)


def _until(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.1)


def run(args: list[str], token: str) -> tuple[int, str, str]:
    return Almctl(args, token).finish()


@pytest.fixture
def proxy(live_server: Any) -> Iterator[FaultProxy]:
    """A TCP proxy in front of the live server: almctl talks to it, the test makes it misbehave."""
    address = urlsplit(live_server.url)
    with FaultProxy(address.hostname or "127.0.0.1", address.port or 80) as running:
        yield running


def _uploaded(contoso: Any, version: str = "1.0.0.0") -> Any:
    return contoso.upload(success_package(version))


def test_a_stage_requiring_references_is_reachable_and_a_400_names_the_fields(
    contoso: Any, live_server: Any, token_for: Any
) -> None:
    _uploaded(contoso)
    stage_update(
        stage=contoso.stages["test"],
        change_reference_required=True,
        change_reference_pattern=r"CHG\d{7}",
        backup_reference_required=True,
        context=AuditContext.system(),
    )
    token = token_for(contoso.maker, ["read", "request"])
    base = ["--url", live_server.url, "promote", "Success", "--version", "1.0.0.0", "--stage", "test"]

    code, _, err = run(base, token)
    assert code == 1, err
    assert "400 validation_error: The promotion request is not valid." in err
    assert "change_reference: The stage 'test' requires a change reference." in err
    assert "backup_reference: The stage 'test' requires a pre-deployment backup reference." in err

    code, _, err = run([*base, "--change-reference", "CHG42", "--backup-reference", "bk-1"], token)
    assert code == 1 and "change_reference: Must match the pattern CHG\\d{7}." in err, err

    code, out, err = run(
        [*base, "--change-reference", "CHG0012345", "--backup-reference", "snapshot 2026-12-07 02:00", "--json"], token
    )
    assert code == 0, err
    promotion = json.loads(out)
    assert promotion["change_reference"] == "CHG0012345"
    assert promotion["backup_reference"] == "snapshot 2026-12-07 02:00"

    # Sent again (a new run of the same CI step): the portal names the open promotion.
    code, _, err = run([*base, "--change-reference", "CHG0012345", "--backup-reference", "again"], token)
    assert code == 1 and "409 duplicate_request" in err
    assert f"existing: promotion {promotion['id']} (pending_approval)" in err


def test_wait_survives_connections_reset_while_polling(
    contoso: Any, live_server: Any, proxy: FaultProxy, token_for: Any
) -> None:
    _uploaded(contoso)
    token = token_for(contoso.maker, ["read", "request"])
    url = f"http://127.0.0.1:{proxy.port}"
    ctl = Almctl(
        ["promote", "Success", "--version", "1.0.0.0", "--stage", "test", "--wait", "--url", url, "--poll", "0.2"],
        token,
    )
    ctl.wait_for("requested promotion")
    promotion = Promotion.objects.get()
    proxy.drop()  # "Connection reset by peer" for what is open
    proxy.refuse()  # …and the portal is away for a while
    ctl.wait_for("trying again in", times=3)  # its polls fail, one after another, and it keeps going
    _until(lambda: Promotion.objects.get(pk=promotion.pk).preflight_status != "pending")
    contoso.approve(Promotion.objects.get(pk=promotion.pk))  # the worker imports while almctl cannot see
    _until(lambda: Promotion.objects.get(pk=promotion.pk).status == "succeeded")
    proxy.pass_through()

    code, out, err = ctl.finish()
    assert code == 0, out + err
    assert ": succeeded" in out.splitlines()[-1]
    # Reset (a pooled connection) or refused (a new one), depending on where each poll was: retried alike.
    assert err.count("trying again in") >= 3 and "did not answer" in err
    assert Promotion.objects.get().status == "succeeded"


def test_only_a_lasting_outage_ends_the_wait_with_exit_code_4(
    contoso: Any, live_server: Any, proxy: FaultProxy, token_for: Any
) -> None:
    _uploaded(contoso)
    token = token_for(contoso.maker, ["read", "request"])
    url = f"http://127.0.0.1:{proxy.port}"
    args = ["promote", "Success", "--version", "1.0.0.0", "--stage", "test", "--wait"]
    ctl = Almctl([*args, "--url", url, "--poll", "0.2", "--outage", "3"], token)
    ctl.wait_for("requested promotion")
    proxy.refuse()  # and it never comes back

    code, out, err = ctl.finish()
    assert code == almctl.EXIT_UNREACHABLE == 4, out + err
    assert "unreachable" in err and "did not answer for" in err
    assert "almctl status ID" in err
    assert Promotion.objects.get().status == "pending_approval"  # nothing lost: it is still there


def test_global_options_go_before_or_after_the_command(contoso: Any, live_server: Any, token_for: Any) -> None:
    _uploaded(contoso)
    token = token_for(contoso.maker, ["read", "request"])
    code, out, err = run(
        ["promote", "Success", "--version", "1.0.0.0", "--stage", "test", "--json", "--url", live_server.url], token
    )
    assert code == 0, err
    promotion = json.loads(out)
    code, out, err = run(["--url", live_server.url, "status", str(promotion["id"]), "--json", "--poll", "1"], token)
    assert code == 0, err
    assert json.loads(out)["id"] == promotion["id"]
    code, out, err = run(["--json", "status", str(promotion["id"]), "--url", live_server.url], token)
    assert code == 0 and json.loads(out)["status"] == "pending_approval", err
