"""An export re-verifies offline with the standard library alone; tampering with it is found."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import record

from .support import write_events

pytestmark = pytest.mark.django_db

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "verify_audit_export.py"


def export(tmp_path: Path, *args: str) -> Path:
    target = tmp_path / "audit.jsonl"
    call_command("export_audit", "--output", str(target), *args, stderr=StringIO())
    return target


def verify_offline(path: Path) -> subprocess.CompletedProcess[str]:
    # -I -S: isolated, no site-packages; proves the script needs nothing but the standard library.
    return subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_an_export_verifies_offline(tmp_path):
    write_events(4)
    path = export(tmp_path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [row["seq"] for row in rows] == [1, 2, 3, 4]
    head = AuditEvent.objects.get(seq=4)
    assert rows[-1]["hash"] == head.hash
    assert rows[0]["occurred_at"].endswith("Z")

    result = verify_offline(path)
    assert (result.returncode, result.stdout) == (0, f"checked=4 head_seq=4 head_hash={head.hash}\n")
    # The export itself is audited, after the exported range.
    assert AuditEvent.objects.get(seq=5).action == "audit.exported"


def test_an_edited_export_is_detected(tmp_path):
    write_events(4)
    path = export(tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[2])
    row["after"] = {"number": 99}
    lines[2] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = verify_offline(path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "first_broken_seq=3 reason=hash_mismatch"


def test_a_line_removed_from_an_export_is_a_gap(tmp_path):
    write_events(4)
    path = export(tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    del lines[1]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = verify_offline(path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "first_broken_seq=2 reason=seq_gap"


def test_a_partial_export_takes_its_first_prev_hash_as_given(tmp_path):
    write_events(6)
    path = export(tmp_path, "--from-seq", "3", "--to-seq", "5")
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [3, 4, 5]

    result = verify_offline(path)
    assert result.returncode == 0
    note, summary = result.stdout.splitlines()
    assert note == "note=export starts at seq 3: its prev_hash is taken as given"
    assert summary == f"checked=3 head_seq=5 head_hash={AuditEvent.objects.get(seq=5).hash}"


def test_export_to_stdout_keeps_non_ascii_text():
    with transaction.atomic():
        record(context=AuditContext.system(), action="test.unicode", after={"name": "Zoë 東京"})
    out = StringIO()
    call_command("export_audit", stdout=out, stderr=StringIO())
    assert json.loads(out.getvalue())["after"] == {"name": "Zoë 東京"}


def test_the_offline_verifier_prints_its_contract_for_help():
    for flag in ("--help", "-h"):
        result = verify_offline(Path(flag))
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        # The hash, the output lines and the exit statuses, and where the full contract is.
        assert "sha256((prev_hash + canonical)" in result.stdout
        assert "first_broken_seq=N" in result.stdout
        assert "2 the file could not be read" in result.stdout
        assert "docs/audit.md" in result.stdout


def test_the_offline_verifier_says_in_one_line_that_it_cannot_read_a_file(tmp_path):
    result = verify_offline(tmp_path / "missing.jsonl")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("cannot read ") and result.stderr.count("\n") == 1
