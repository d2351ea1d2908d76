"""The benchmark tooling works at a tiny scale: the seeder leaves a chain verify_audit accepts, and
the load driver reads wrk's summary. The benchmarks themselves print numbers and are not tests."""

from __future__ import annotations

import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_load  # noqa: E402
import scale_seed  # noqa: E402

TINY = {"environments": 10, "solutions": 6, "versions": 12, "promotions": 20, "audit_events": 300}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_scale_seed_writes_a_chain_that_verify_audit_accepts(settings: Any, capsys: Any) -> None:
    from alm_portal.audit.models import AuditEvent
    from alm_portal.audit.services import record
    from alm_portal.jobs.models import Job
    from deployments.models import Approval, Promotion
    from solutions.models import SolutionVersion

    settings.ALM_AUDIT_CHECKPOINT_KEY = "test-checkpoint-key"
    # An event before the seed: the COPY must continue the existing chain, not restart it.
    from django.db import transaction

    from alm_portal.audit.context import AuditContext

    with transaction.atomic():
        record(context=AuditContext.system(), action="test.before_seed")
    world, timings = scale_seed.seed(counts=TINY)

    assert AuditEvent.objects.count() == 1 + TINY["audit_events"]
    assert SolutionVersion.objects.count() == TINY["versions"]
    assert Promotion.objects.count() == TINY["promotions"] == len(world.promotions)
    assert Approval.objects.exists() and Job.objects.exists()
    statuses = set(Promotion.objects.values_list("status", flat=True))
    assert {"succeeded", "failed", "pending_approval", "rejected"} <= statuses
    assert any(label.startswith("audit events") for label, _, _ in timings.parts)

    out = StringIO()
    call_command("verify_audit", stdout=out, stderr=StringIO())  # exits 1 (SystemExit) on a break
    head = AuditEvent.objects.filter(seq=1 + TINY["audit_events"]).values_list("hash", flat=True).get()
    assert out.getvalue().splitlines() == [
        f"checked={1 + TINY['audit_events']} head_seq={1 + TINY['audit_events']} head_hash={head}"
    ]
    # Secondary indexes were rebuilt after the load, under their own names.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_auditevent'")
        assert cursor.fetchone()[0] >= 7


def test_the_load_driver_reads_the_summary_line_of_wrk() -> None:
    output = (
        "Running 5s test @ http://127.0.0.1:8790\n  1 threads and 8 connections\n"
        'WRKJSON {"requests":500,"duration_us":5000000,"bytes":123,"status_errors":2,"connect_errors":0,'
        '"read_errors":1,"write_errors":0,"timeouts":0,"p50_us":12000,"p95_us":80500,"p99_us":150000,'
        '"max_us":200000,"mean_us":15000.5}\n'
    )
    result = bench_load.parse_wrk_output(output)
    assert result.rps == 100.0
    assert (result.p50_ms, result.p95_ms, result.p99_ms, result.max_ms) == (12.0, 80.5, 150.0, 200.0)
    assert result.errors == 3
    with pytest.raises(ValueError, match="no WRKJSON"):
        bench_load.parse_wrk_output("wrk: connection refused\n")


def test_scaled_counts_keep_the_proportions_of_the_issue() -> None:
    counts = scale_seed.scaled_counts(0.01)
    assert counts == {
        "environments": 10,
        "solutions": 200,
        "versions": 2000,
        "promotions": 500,
        "audit_events": 50_000,
    }
    assert scale_seed.scaled_counts(1.0)["audit_events"] == 5_000_000
