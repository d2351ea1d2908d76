"""check_artifacts: every stored artifact exists and matches its SHA-256; exit 1 on any problem."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.solutions.conftest import INCIDENT_102_MANAGED, INCIDENT_102_UNMANAGED, INCIDENT_104_UNMANAGED

pytestmark = pytest.mark.django_db


def _run() -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("check_artifacts", stdout=out)
    except CommandError as failure:
        return out.getvalue(), failure.returncode
    return out.getvalue(), 0


def test_all_artifacts_intact(maker, upload):
    upload(maker, INCIDENT_102_UNMANAGED)
    upload(maker, INCIDENT_102_MANAGED)

    output, code = _run()

    assert code == 0
    assert output.strip() == "checked=2 ok=2 missing=0 mismatched=0"


def test_finds_a_tampered_and_a_missing_artifact(maker, upload):
    intact = upload(maker, INCIDENT_102_UNMANAGED).version
    tampered = upload(maker, INCIDENT_102_MANAGED).version
    missing = upload(maker, INCIDENT_104_UNMANAGED).version
    storage = storages["artifacts"]
    with open(storage.path(tampered.managed_path), "r+b") as handle:
        handle.seek(100)
        handle.write(b"tampered")
    storage.delete(missing.unmanaged_path)

    output, code = _run()

    assert code == 1
    lines = output.strip().splitlines()
    assert lines[-1] == "checked=3 ok=1 missing=1 mismatched=1"
    assert any(
        line.startswith(f"sha256_mismatch version={tampered.pk} ") and "flavour=managed" in line for line in lines
    )
    assert any(line.startswith(f"missing version={missing.pk} ") and missing.unmanaged_path in line for line in lines)
    assert not any(f"version={intact.pk} " in line and "flavour=unmanaged" in line for line in lines[:-1])


def test_empty_registry_is_fine(db):
    output, code = _run()
    assert (output.strip(), code) == ("checked=0 ok=0 missing=0 mismatched=0", 0)
