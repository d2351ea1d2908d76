"""seed_demo lays out the demo's promotion history (docs/demo.md §5) through the workflow, against the emulator."""

from __future__ import annotations

import subprocess

import pytest
from django.core.management import call_command

from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import audit_verify
from deployments.models import Promotion
from environments.models import InventoryInterval
from solutions.models import SolutionVersion, VersionCommit
from tests.support.emulator import start_emulator

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(name="no_broker")
def no_broker_fixture(monkeypatch):
    """Jobs run inline in seed_demo; the after-commit nudge to a worker goes nowhere here."""
    monkeypatch.setattr("alm_portal.celery.publish_best_effort", lambda *args, **kwargs: True)


def test_seed_demo_lays_out_the_history_once(tmp_path, settings, capsys, no_broker):
    settings.DEMO_PASSWORD = "demo-password-for-tests"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALM_GIT_LOCAL_ROOT = str(tmp_path / "git-repositories")
    settings.ALM_GIT_WORK_DIR = tmp_path / "git-work"
    with start_emulator(tmp_path / "emulator", "--seed", "demo") as emulator:
        settings.ALM_DATAVERSE_CA_BUNDLE = str(emulator.ca_file)
        call_command("seed_demo", "--emulator-state", str(emulator.state_file), "--wait", "30")
        first = capsys.readouterr().out
        events = AuditEvent.objects.count()
        call_command("seed_demo", "--emulator-state", str(emulator.state_file), "--wait", "30")
        assert AuditEvent.objects.count() == events  # the second run changes nothing
        counters = emulator.counters()["imports"]

    history = [
        (p.solution.unique_name, p.version.version, p.stage.name, p.status, p.error_code)
        for p in Promotion.objects.select_related("solution", "version", "stage").order_by("pk")
    ]
    assert history == [
        # The published 1.0.0.2 first (issue 13: versions that really differ), then the exported release.
        ("IncidentReporting", "1.0.0.2", "test", "succeeded", ""),
        ("IncidentReporting", "1.0.0.2", "prod", "succeeded", ""),
        ("IncidentReporting", "1.0.0.5", "test", "succeeded", ""),
        ("IncidentReporting", "1.0.0.5", "prod", "succeeded", ""),
        ("PodcastCopilotSolution", "1.0.0.6", "test", "succeeded", ""),
        ("PodcastCopilotSolution", "1.0.0.6", "prod", "pending_approval", ""),
        ("IncidentReporting", "1.0.0.6", "test", "rejected", ""),
        ("UpdateCreatedBy", "1.0.0.2", "test", "failed", "0x8004801D"),
        ("flowexcelgroupbyemailnotificationexample", "1.0.0.8", "test", "scheduled", ""),
        # Derived for the demo (a table removed): waits for approval, its pre-flight warning of data loss.
        ("IncidentReporting", "1.0.1.0", "test", "pending_approval", ""),
    ]
    waiting = Promotion.objects.get(status="pending_approval", stage__name="prod")
    assert list(waiting.approvals.values_list("approver__username", flat=True)) == ["approver"]
    assert not Promotion.objects.filter(status__in=("running", "queued", "approved")).exists()
    # The emulator agrees: one import per succeeded or failed run, and the build from source in contoso-build.
    imports = sorted((row["org"], row["solution"], row["version"]) for row in counters)
    assert imports == [
        ("contoso-build", "IncidentReporting", "1.0.2.0"),
        ("contoso-prod", "IncidentReporting", "1.0.0.2"),
        ("contoso-prod", "IncidentReporting", "1.0.0.5"),
        ("contoso-test", "IncidentReporting", "1.0.0.2"),
        ("contoso-test", "IncidentReporting", "1.0.0.5"),
        ("contoso-test", "PodcastCopilotSolution", "1.0.0.6"),
        ("contoso-test", "UpdateCreatedBy", "1.0.0.2"),
    ]
    assert all(row["count"] == 1 for row in counters)
    installed = {
        (row.environment.name, row.unique_name, row.version)
        for row in InventoryInterval.objects.filter(
            valid_to__isnull=True, environment__name__in=["contoso-test", "contoso-prod"]
        )
    }
    assert installed >= {
        ("contoso-test", "IncidentReporting", "1.0.0.5"),
        ("contoso-test", "PodcastCopilotSolution", "1.0.0.6"),
        ("contoso-prod", "IncidentReporting", "1.0.0.5"),
    }
    assert not any(name == "UpdateCreatedBy" for _, name, _ in installed)
    assert audit_verify().ok
    assert "promotion IncidentReporting 1.0.0.5 → prod: succeeded (approved by both)" in first
    assert "promotion UpdateCreatedBy 1.0.0.2 → test: failed (0x8004801D)" in first
    _assert_history_and_build_in_git(tmp_path / "git-repositories" / "contoso.git", first)


def _git(repository, *args):
    return subprocess.run(
        ["git", "-C", str(repository), *args], capture_output=True, text=True, check=True
    ).stdout.split("\n")


def _assert_history_and_build_in_git(repository, output):
    """Every version of the history is tagged in the demo's repository, and IncidentReporting 1.0.2.0 was built
    from Max Maker's commit on main, its provenance that commit, and committed back like any other version."""
    tags = set(_git(repository, "tag", "--list")) - {""}
    assert tags == {
        "IncidentReporting/1.0.0.2",
        "IncidentReporting/1.0.0.5",
        "IncidentReporting/1.0.0.6",
        "IncidentReporting/1.0.1.0",
        "IncidentReporting/1.0.2.0",
        "PodcastCopilotSolution/1.0.0.6",
        "UpdateCreatedBy/1.0.0.2",
        "flowexcelgroupbyemailnotificationexample/1.0.0.8",
    }
    built = SolutionVersion.objects.get(solution__unique_name="IncidentReporting", version="1.0.2.0")
    assert (built.source_kind, built.source_ref, built.source_folder) == (
        "built",
        "main",
        "solutions/IncidentReporting/src",
    )
    assert built.source_repository_url == str(repository.resolve())
    author, subject = _git(repository, "log", "-1", "--format=%an%n%s", built.source_commit)[:2]
    assert author == "Max Maker" and subject.startswith("IncidentReporting 1.0.2.0")
    # Built managed in contoso-build as well, so it can be promoted; committed with both flavours.
    assert built.flavours == ["managed", "unmanaged"] and built.managed_manifest["managed"] == 1
    committed = VersionCommit.objects.get(version=built)
    assert committed.tag == "IncidentReporting/1.0.2.0" and committed.parent == built.source_commit
    assert committed.flavours == "managed+unmanaged"
    assert _git(repository, "rev-parse", "IncidentReporting/1.0.2.0")[0] == committed.commit
    assert f"build IncidentReporting 1.0.2.0 from main @ {built.source_commit[:12]}" in output
    assert "  source IncidentReporting → " in output
