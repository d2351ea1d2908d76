"""The chaos soak's short form (tests/support/chaos.py; the full form is bench/chaos_soak.py): promotions
across several emulator environments on two workers while workers are killed, Redis restarts and
environments throttle; every invariant holds at the end and the counts are printed."""

from __future__ import annotations

import pytest

from tests.support.chaos import FAULT_KINDS, run_soak

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROMOTIONS = 40
ENVIRONMENTS = 5


@pytest.mark.timeout(420)  # above the soak's own bound, which fails with the counts instead
def test_the_short_chaos_soak_ends_within_its_bound_with_every_invariant(emulator, tmp_path, capsys):
    report = run_soak(
        emulator=emulator, workdir=tmp_path, promotions=PROMOTIONS, environments=ENVIRONMENTS, workers=2, seconds=240
    )
    with capsys.disabled():
        print("\n" + report.summary())

    assert report.promotions_requested == PROMOTIONS
    assert sum(report.promotions_by_status.values()) == PROMOTIONS
    assert all(report.faults.get(kind, 0) >= 1 for kind in FAULT_KINDS), report.faults
    succeeded = report.promotions_by_status.get("succeeded", 0)
    assert succeeded >= 1
    assert succeeded <= report.imports_seen <= PROMOTIONS  # one import per promotion at most (per job: invariants)
