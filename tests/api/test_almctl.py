"""almctl against the live portal: the same dev → test → prod → rollback story, exit codes CI can act on.

almctl runs in-process (its main()) against the live_server over real HTTP. The worker's part runs
while almctl sleeps between looks (its SLEEP hook), in the test's own thread, so the live server and
the jobs never use the database at the same moment.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alm_portal.cli import almctl
from alm_portal.jobs.choices import ACTIVE_JOB_STATUSES, JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    BASE_TABLES,
    contoso_fixture,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
WITH_EXTRA = (*BASE_TABLES, "ud_testentity9")


def run_due_jobs(_seconds: float = 0) -> None:
    """One pass of a worker: every due job takes its next step."""
    for job_id in Job.objects.filter(status__in=(JobStatus.PENDING, *ACTIVE_JOB_STATUSES)).values_list("pk", flat=True):
        job_run(job_id)


@pytest.fixture
def ctl(live_server, monkeypatch):
    """ctl(token, *args) → (exit code, stdout, stderr)."""
    monkeypatch.setattr(almctl, "SLEEP", run_due_jobs)

    def run(token: str | None, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        base = ["--url", live_server.url, "--poll", "0.05", "--timeout", "120"]
        if token:
            base += ["--token", token]
        code = almctl.main([*base, *args], out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    return run


def test_the_story_through_almctl(contoso, ctl, token_for, tmp_path):
    maker = token_for(contoso.maker, scopes=["read", "request"])
    approvers = [token_for(person, scopes=["read", "approve"]) for person in contoso.approvers]

    def upload(version: str, tables=BASE_TABLES) -> None:
        path = tmp_path / f"Success_{version.replace('.', '_')}_managed.zip"
        path.write_bytes(success_package(version, tables))
        code, out, err = ctl(maker, "upload", str(path), "--home-environment", contoso.environments["dev"].name)
        assert code == 0, err
        assert f"Success {version}: created" in out

    def promote(version: str, stage: str, needed: int) -> dict[str, Any]:
        code, out, err = ctl(maker, "--json", "promote", "Success", "--version", version, "--stage", stage)
        assert code == 0, err
        promotion = json.loads(out)
        assert promotion["status"] == "pending_approval"
        run_due_jobs()  # pre-flight
        for token in approvers[:needed]:
            code, out, err = ctl(token, "approve", str(promotion["id"]), "--comment", "ok")
            assert code == 0, err
        code, out, err = ctl(maker, "status", str(promotion["id"]), "--wait")
        assert code == 0, out + err
        assert ("queued" in out and out.rstrip().endswith("pre-flight passed")) or "succeeded" in out
        assert ": succeeded" in out.splitlines()[-1]
        return promotion

    upload("1.1.0.0")
    promote("1.1.0.0", "test", 1)
    promote("1.1.0.0", "prod", 2)
    upload("1.2.0.0", WITH_EXTRA)
    promote("1.2.0.0", "test", 1)
    latest = promote("1.2.0.0", "prod", 2)
    assert contoso.installed("prod")["version"] == "1.2.0.0"

    code, out, err = ctl(maker, "--json", "rollback", str(latest["id"]), "--strategy", "reversion_update")
    assert code == 0, err
    rollback = json.loads(out)
    assert (rollback["kind"], rollback["rollback_of"]) == ("rollback", latest["id"])
    run_due_jobs()
    for token in approvers:
        assert ctl(token, "approve", str(rollback["id"]))[0] == 0
    code, out, err = ctl(maker, "status", str(rollback["id"]), "--wait")
    assert code == 0, out + err
    assert contoso.installed("prod")["version"] == "1.2.0.1"
    code, out, _ = ctl(maker, "status", str(latest["id"]))
    assert code == 0 and ": rolled_back" in out


def test_exit_codes(contoso, ctl, token_for, tmp_path):
    maker = token_for(contoso.maker, scopes=["read", "request"])
    approver = token_for(contoso.approvers[0], scopes=["read", "approve"])
    path = tmp_path / "Success_1_1_0_0_managed.zip"
    path.write_bytes(success_package("1.1.0.0"))
    assert ctl(maker, "upload", str(path), "--home-environment", contoso.environments["dev"].name)[0] == 0

    assert ctl(None, "status", "1")[0] == 2  # no token
    assert ctl(maker, "promote", "Success", "--version", "1.1.0.0")[0] == 2  # --stage missing
    code, _, err = ctl(maker, "promote", "Success", "--version", "1.1.0.0", "--stage", "staging")
    assert code == 2 and "no stage 'staging' (stages: test, prod)" in err

    gated = ctl(maker, "promote", "Success", "--version", "1.1.0.0", "--stage", "prod")
    assert gated[0] == 1 and "previous_stage_not_succeeded" in gated[2]

    code, out, err = ctl(
        maker, "--timeout", "0.2", "promote", "Success", "--version", "1.1.0.0", "--stage", "test", "--wait"
    )
    assert code == 3 and "timed out" in out
    promotion_id = out.split("requested promotion ")[1].split()[0]
    run_due_jobs()
    code, out, err = ctl(approver, "approve", promotion_id)
    assert code == 0
    code, out, err = ctl(approver, "approve", promotion_id)
    assert code == 1 and "invalid_state" in err  # already approved and queued

    code, out, err = ctl(maker, "export", "Success", "--bump", "revision", "--wait")
    # The dev org of this test has no unmanaged Success to export: the job fails, and so does almctl.
    assert code == 1, out + err
    assert "job" in out and "failed" in out.splitlines()[-1]


def test_source_bind_build_show_and_unbind_through_almctl(
    contoso, ctl, token_for, tmp_path, git_host, settings, monkeypatch
):
    """docs/source-control.md "The API and almctl": the token comes from an environment variable only."""
    from solutions.models import SolutionVersion, VersionCommit

    settings.ALM_GIT_CA_BUNDLE = git_host.ca_bundle
    settings.ALM_GIT_WORK_DIR = tmp_path / "git-work"
    maker = token_for(contoso.maker, scopes=["read", "request"])
    path = tmp_path / "Success_1_1_0_0_managed.zip"
    path.write_bytes(success_package("1.1.0.0"))
    assert ctl(maker, "upload", str(path), "--home-environment", contoso.environments["dev"].name)[0] == 0
    url = git_host.new_repository("almctl")

    code, _, err = ctl(maker, "source", "bind", "Success", "--repository", url, "--token-env", "NO_SUCH_VARIABLE")
    assert code == 2 and "$NO_SUCH_VARIABLE is empty" in err
    monkeypatch.setenv("GIT_TOKEN_FOR_ALMCTL", git_host.token)
    code, out, err = ctl(
        maker,
        "source",
        "bind",
        "Success",
        "--repository",
        url,
        "--username",
        git_host.username,
        "--token-env",
        "GIT_TOKEN_FOR_ALMCTL",
    )
    assert code == 0, err
    assert f"Success → {url} branch main, folder solutions/Success/src/, credential token" in out
    assert git_host.token not in out + err

    # A version registered from now on is committed; this one is managed only, so a build has no source to pack.
    path = tmp_path / "Success_1_2_0_0_managed.zip"
    path.write_bytes(success_package("1.2.0.0"))
    assert ctl(maker, "upload", str(path))[0] == 0
    run_due_jobs()
    assert VersionCommit.objects.get().tag == "Success/1.2.0.0"
    code, out, err = ctl(maker, "source", "build", "--solution", "Success", "--ref", "Success/1.2.0.0", "--wait")
    assert code == 1, out + err
    assert "no_unmanaged_source" in out and "only a managed solution" in out
    assert not SolutionVersion.objects.filter(source_kind="built").exists()

    code, out, err = ctl(maker, "--json", "source", "show", "Success")
    assert code == 0 and json.loads(out)["url"] == url and json.loads(out)["credential_set"] is True
    assert ctl(maker, "source", "unbind", "Success")[0] == 0
    code, _, err = ctl(maker, "source", "show", "Success")
    assert code == 1 and "not bound" in err

    # A whole pipeline: admins only; its solutions without a binding of their own follow it.
    admin = token_for(contoso.admin, scopes=["read", "admin"])
    pipeline = contoso.pipeline.name
    code, _, err = ctl(maker, "source", "bind", "--pipeline", pipeline, "--repository", url)
    assert code == 1 and "403" in err
    code, _, err = ctl(admin, "source", "bind", "Success", "--pipeline", pipeline, "--repository", url)
    assert code == 2 and "not both" in err
    code, out, err = ctl(admin, "source", "bind", "--pipeline", pipeline, "--repository", url)
    assert code == 0, err
    assert f"pipeline {pipeline} → {url} branch main, folder solutions/<UniqueName>/src/" in out
    code, out, err = ctl(maker, "source", "show", "Success")
    assert code == 0 and f"(the binding of pipeline {pipeline})" in out and "folder solutions/Success/src/" in out


def test_almctl_needs_no_django():
    script = str(Path(almctl.__file__))
    probe = "\n".join(
        [
            "import runpy, sys",
            "sys.argv = ['almctl', '--help']",
            "try:",
            f"    runpy.run_path({script!r}, run_name='__main__')",
            "except SystemExit:",
            "    pass",
            "assert not [name for name in sys.modules if name.split('.')[0] == 'django'], 'django imported'",
        ]
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "promote" in result.stdout
